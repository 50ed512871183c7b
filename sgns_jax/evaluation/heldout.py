"""The yardstick shared by every strategy: the model's normalised −log p(c | w) on held-out text.

Each strategy's own training loss is not comparable across strategies (NS is a classifier
loss, NCE and sampled softmax are estimators). Here every model is scored by the exact,
normalised probability it defines: softmax(W_out · v_w) over the whole vocabulary for full,
ns, nce and sampled (their output vectors define that softmax), and the Huffman-tree product
for hierarchical softmax (whose leaf probabilities sum to one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sgns_jax.data.corpus import Corpus
from sgns_jax.data.pairs import skipgram_pairs
from sgns_jax.losses import FullSoftmax, HierarchicalSoftmax


def heldout_pairs(corpus: Corpus, window: int = 5, max_pairs: int = 20000, seed: int = 0
                  ) -> dict[str, np.ndarray]:
    """A fixed sample of (centre, context) pairs of the held-out corpus (no subsampling)."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(corpus.ids)
    reduced = rng.integers(1, window + 1, size=ids.size)
    inp, out, _ = skipgram_pairs(ids, corpus.sentence_ids(), reduced, window)
    if inp.size > max_pairs:
        pick = np.sort(rng.choice(inp.size, size=max_pairs, replace=False))
        inp, out = inp[pick], out[pick]
    return {"input": inp, "output": out, "mask": np.ones(inp.size, np.float32)}


class HeldoutObjective:
    """Mean −log p(c | w) over fixed held-out ``pairs`` under a model's own normalised
    distribution. Built once per model kind: the layer (HS's Huffman tree) and the jitted
    batch sum are reused at every evaluation."""

    def __init__(self, loss_name: str, pairs: dict[str, np.ndarray],
                 counts: np.ndarray | None = None, batch: int = 2048):
        layer = HierarchicalSoftmax(np.asarray(counts)) if loss_name == "hs" else FullSoftmax(chunk=4096)
        self._sum = jax.jit(lambda p, b: layer.loss(p, b, None)[1]["sum"])
        n = pairs["input"].size
        self.count = n
        # Fixed-shape batches (mask 0 on the padding), so the sum compiles once.
        padded = {k: np.pad(v, (0, -n % batch)) for k, v in pairs.items()}
        self._batches = [{k: jnp.asarray(v[s:s + batch]) for k, v in padded.items()}
                         for s in range(0, max(n, 1), batch)]

    def __call__(self, params: dict) -> float:
        return sum(float(self._sum(params, b)) for b in self._batches) / max(self.count, 1)
