"""The yardstick shared by every strategy: the model's normalised −log p(c | w) on held-out text.

Each strategy's own training loss is not comparable across strategies (NS is a classifier
loss, NCE and sampled softmax are estimators), so every model is scored by the conditional
distribution it implies, normalised over the whole vocabulary:

* full softmax and hierarchical softmax: their own loss, already the exact normalised
  −log p(c | w) (``OutputLayer.normalised``; the tree's leaf probabilities sum to one);
* NCE, sampled softmax: softmax(u_c·h) — their logits estimate log p(c | w) up to a per-input
  constant (they put the log(K·q) correction in the loss, not in u·h);
* negative sampling: softmax(u_c·h + log q(c)), q its noise distribution
  (``conditional_log_bias``). At the SGNS optimum u_c·h = log p(c | w) − log q(c) − log K
  (Levy & Goldberg 2014); the −log K cancels in the softmax, the log q(c) does not. Scoring NS
  by softmax(u_c·h) alone — reported beside it as the "raw" score — penalises it for not
  learning a term it never had to learn.

The held-out pairs are drawn the way training draws them (the training split's subsampling,
dynamic window, sentence cut and orientation), so a model is scored on the distribution it was
trained on; the context-free baseline is the unigram distribution of the words the training
pairs predict, counts × keep probability.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sgns_jax.data.batches import BatchSpec, epoch_examples
from sgns_jax.data.corpus import Corpus
from sgns_jax.data.pairs import keep_probabilities
from sgns_jax.losses import OutputLayer


def heldout_pairs(corpus: Corpus, window: int = 5, sample: float = 0.0, max_pairs: int = 20000,
                  seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed sample of at most ``max_pairs`` (input, output) pairs of ``corpus``, made as
    training makes them: subsampled with ``sample`` and the keep probabilities of
    ``corpus.vocab.counts`` (share the training split's vocabulary to use its counts)."""
    # The block size fixes how the subsampling draws interleave with the window draws; it is
    # pinned here so the held-out sample does not move with the pipeline's default (a memory
    # setting): the comparison's cells trained across that change score the same pairs.
    spec = BatchSpec(layout="pairs", window=window, sample=sample, seed=seed, block_tokens=1 << 20)
    blocks = list(epoch_examples(corpus, spec, 0))
    inp = np.concatenate([b["input"] for b in blocks])
    out = np.concatenate([b["output"] for b in blocks])
    if inp.size > max_pairs:
        pick = np.sort(np.random.default_rng(seed).choice(inp.size, size=max_pairs, replace=False))
        inp, out = inp[pick], out[pick]
    return {"input": inp, "output": out, "mask": np.ones(inp.size, np.float32)}


def unigram_log_probs(counts: np.ndarray, sample: float) -> np.ndarray:
    """log q(w) of the context-free baseline: the distribution of the words that training pairs
    predict, ∝ count × keep probability (float64 [V])."""
    weights = np.asarray(counts, np.float64) * keep_probabilities(counts, sample)
    return np.log(weights / weights.sum())


class HeldoutObjective:
    """Mean −log p(c | w) over fixed held-out ``pairs`` under a layer's normalised conditional
    (``OutputLayer.heldout_nll``: its own loss where that is normalised, else softmax(u_c·h +
    its implied bias), or without the bias when ``raw``). Built once per model kind and reused
    at every evaluation (one compilation)."""

    def __init__(self, layer: OutputLayer, pairs: dict[str, np.ndarray], *, raw: bool = False,
                 batch: int = 512):
        self._losses = jax.jit(lambda params, b: layer.heldout_nll(params, b, raw))
        n = pairs["input"].size
        self.count = n
        # Fixed-shape batches (mask 0 on the padding), so the sum compiles once.
        padded = {k: np.pad(v, (0, -n % batch)) for k, v in pairs.items()}
        self._batches = [{k: jnp.asarray(v[s:s + batch]) for k, v in padded.items()}
                         for s in range(0, max(n, 1), batch)]

    def __call__(self, params: dict) -> float:
        params = {k: jnp.asarray(v) for k, v in params.items()}
        return sum(float(self._losses(params, b)) for b in self._batches) / max(self.count, 1)


def unigram_objective(pairs: dict[str, np.ndarray], counts: np.ndarray, sample: float) -> float:
    """The context-free baseline's mean −log q(c) on ``pairs``."""
    return float(-np.mean(unigram_log_probs(counts, sample)[pairs["output"]]))
