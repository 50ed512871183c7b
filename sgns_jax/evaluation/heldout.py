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


def heldout_objective(loss_name: str, params: dict, pairs: dict[str, np.ndarray],
                      counts: np.ndarray | None = None, batch: int = 2048) -> float:
    """Mean −log p(c | w) over ``pairs`` under the model's own normalised distribution."""
    layer = HierarchicalSoftmax(np.asarray(counts)) if loss_name == "hs" else FullSoftmax(chunk=4096)
    fn = jax.jit(lambda p, b: layer.loss(p, b, None)[1]["sum"])
    n = pairs["input"].size
    total = 0.0
    for s in range(0, n, batch):
        b = {k: v[s:s + batch] for k, v in pairs.items()}
        pad = batch - b["input"].size
        b = {k: np.pad(v, (0, pad)) for k, v in b.items()}  # mask 0 on padding
        total += float(fn(params, {k: jnp.asarray(v) for k, v in b.items()}))
    return total / max(n, 1)
