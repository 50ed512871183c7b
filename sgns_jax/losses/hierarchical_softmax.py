"""Hierarchical softmax over word2vec's Huffman tree: O(log V) sigmoid decisions per example.

p(c | h) = Π_j σ((1 − 2·code_j) · u_{point_j} · h) along c's root→leaf path; the probabilities
of all leaves sum to one by construction. Params: ``w_in [V, D]`` and the inner-node vectors
``w_out [max(V−1, 1), D]`` (zero-initialised, as word2vec's ``syn1``).

Two layouts of the same objective (``hs_paths``):

* ``pair`` — one path per (input, target) pair (pairs layout; CBOW's windows are one example);
* ``window`` — skip-gram over the windows layout: word2vec's skip-gram predicts the centre from
  each of its contexts, so the ≤ 2·window pairs of a window walk the *same* root→leaf path. The
  path's L node rows are gathered once per window and receive one summed gradient, and the
  logits are one [contexts × D]·[D × L] product. The pairs, their losses and (for SGD) the
  update are those of the pairs layout; only the grouping of pairs into steps differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import jax.numpy as jnp
import numpy as np

from sgns_jax.errors import ConfigError
from sgns_jax.losses.base import (Array, Batch, Lookup, OutputLayer, ParamSpec, gather_rows, log_sigmoid,
                                  log_sigmoid_unsaturated, window_logits)
from sgns_jax.losses.huffman import HuffmanTree, huffman_codes
from sgns_jax.losses.registry import LossOptions, option, register


@dataclass(frozen=True, eq=False)
class HierarchicalSoftmax(OutputLayer):
    counts: np.ndarray
    cbow: bool = False
    tree: HuffmanTree = field(init=False, repr=False)
    normalised = True  # the leaf probabilities of the tree sum to one

    def describe(self) -> str:
        return "hierarchical softmax"

    def __post_init__(self) -> None:
        tree = huffman_codes(self.counts)
        object.__setattr__(self, "tree", tree)
        # Device copies, embedded in the jitted computation as constants.
        object.__setattr__(self, "_points", jnp.asarray(tree.points))
        object.__setattr__(self, "_signs", jnp.asarray(1.0 - 2.0 * tree.codes, dtype=jnp.float32))
        object.__setattr__(self, "_mask", jnp.asarray(tree.mask, dtype=jnp.float32))

    def param_specs(self, vocab_size: int, dim: int) -> dict[str, ParamSpec]:
        # The V − 1 inner nodes' vectors (word2vec's syn1), zero at the start.
        return {"w_out": ParamSpec((max(vocab_size - 1, 1), dim))}

    def lookups(self, batch: Batch, noise: Array | None) -> dict[str, Lookup]:
        target_B, _ = self.targets(batch)
        return {"input": self.input_lookup(batch),
                "nodes": Lookup("w_out", jnp.take(self._points, target_B, axis=0))}

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        h_BxD = self.input_vectors(rows, batch)
        target_B, weight_B = self.targets(batch)
        logits_BxL = jnp.einsum("bld,bd->bl", rows["nodes"], h_BxD)
        signs_BxL = jnp.take(self._signs, target_B, axis=0)
        mask_BxL = jnp.take(self._mask, target_B, axis=0)
        return -jnp.sum(log_sigmoid_unsaturated(signs_BxL * logits_BxL) * mask_BxL, axis=-1), weight_B

    def log_prob_all(self, node_vectors: Array, h_D: Array) -> Array:
        """log p(w | h) for every word w (float [V]); for tests and evaluation."""
        logits_VxL = jnp.take(node_vectors, self._points, axis=0) @ h_D
        return jnp.sum(log_sigmoid(self._signs * logits_VxL) * self._mask, axis=-1)


@dataclass(frozen=True, eq=False)
class WindowHierarchicalSoftmax(HierarchicalSoftmax):
    """Skip-gram HS over the windows layout: the contexts of a centre share its path."""

    layout = "windows"

    def describe(self) -> str:
        return "hierarchical softmax (a path per window)"

    def heldout_nll(self, params, pairs: Batch, raw: bool = False) -> Array:
        """Held-out pairs come in the pairs layout: each scored along its own path (the same
        tree and probabilities as training's windows)."""
        lookups = HierarchicalSoftmax.lookups(self, pairs, None)
        losses_B, weight_B = HierarchicalSoftmax.example_losses(self, gather_rows(params, lookups),
                                                                lookups, pairs)
        return jnp.sum(losses_B * weight_B)

    def lookups(self, batch: Batch, noise: Array | None) -> dict[str, Lookup]:
        return {"input": Lookup("w_in", batch["context"]),
                "nodes": Lookup("w_out", jnp.take(self._points, batch["centre"], axis=0))}

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        # Inputs: the contexts [B, C, D]; outputs: the centre's path nodes [B, L, D].
        centre_B = batch["centre"]
        logits_BxCxL = window_logits(rows["input"], rows["nodes"])
        signs_BxL = jnp.take(self._signs, centre_B, axis=0)
        mask_BxL = jnp.take(self._mask, centre_B, axis=0)
        losses_BxC = -jnp.sum(log_sigmoid_unsaturated(signs_BxL[:, None, :] * logits_BxCxL)
                              * mask_BxL[:, None, :], -1)
        return losses_BxC, batch["mask"]


@register
@dataclass(frozen=True)
class HierarchicalSoftmaxOptions(LossOptions):
    name: str = "hs"
    hs_paths: str | None = option(
        None, "'window' (the contexts of a centre share its path; skip-gram default) or 'pair' "
              "(a path per pair; CBOW)", choices=["window", "pair"])

    summary: ClassVar[str] = "hierarchical softmax over word2vec's Huffman tree, O(log V) per pair"
    test_variants: ClassVar[tuple[dict, ...]] = (
        {"hs_paths": "window"}, {"hs_paths": "pair"}, {"cbow": True})

    def check(self, cbow: bool) -> None:
        if cbow and self.hs_paths == "window":
            raise ConfigError("hs_paths 'window' is for skip-gram; CBOW's windows are one example each")

    def resolve(self, cbow: bool) -> "HierarchicalSoftmaxOptions":
        if self.hs_paths is not None:
            return self
        return self.replace(hs_paths="pair" if cbow else "window")

    def batch_size(self, cbow: bool, backend: str = "cpu") -> int:
        # Every pair updates the root and the top nodes, so a batch sums all their gradients
        # there: it diverges at ~1.5–4k pairs a step. 256 pairs (or CBOW windows) is inside the
        # stable range; so are 64 skip-gram windows (~380 pairs), small enough for a step's rows
        # to stay in cache, as window-shared NS's. On a GPU or TPU, twice as many windows (~770
        # pairs): still inside the stable range, and level in quality
        # (docs/bench_accelerator_batches.json). Paths per pair stay at 256.
        if self.resolve(cbow).hs_paths != "window":
            return 256
        return 64 if backend == "cpu" else 128

    def build(self, counts: np.ndarray, cbow: bool) -> HierarchicalSoftmax:
        layer = WindowHierarchicalSoftmax if self.hs_paths == "window" else HierarchicalSoftmax
        return layer(counts, cbow=cbow)
