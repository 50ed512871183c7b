"""Hierarchical softmax over word2vec's Huffman tree: O(log V) sigmoid decisions per example.

p(c | h) = Π_j σ((1 − 2·code_j) · u_{point_j} · h) along c's root→leaf path; the probabilities
of all leaves sum to one by construction. Params: ``w_in [V, D]`` and the inner-node vectors
``w_out [max(V−1, 1), D]`` (zero-initialised, as word2vec's ``syn1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import jax.numpy as jnp
import numpy as np

from sgns_jax.losses.base import Array, Batch, Lookup, OutputLayer, log_sigmoid
from sgns_jax.losses.huffman import HuffmanTree, huffman_codes
from sgns_jax.losses.registry import LossSpec, register


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

    def table_rows(self, vocab_size: int) -> dict[str, int]:
        return {"w_in": vocab_size, "w_out": max(vocab_size - 1, 1)}

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
        return -jnp.sum(log_sigmoid(signs_BxL * logits_BxL) * mask_BxL, axis=-1), weight_B

    def log_prob_all(self, node_vectors: Array, h_D: Array) -> Array:
        """log p(w | h) for every word w (float [V]); for tests and evaluation."""
        logits_VxL = jnp.take(node_vectors, self._points, axis=0) @ h_D
        return jnp.sum(log_sigmoid(self._signs * logits_VxL) * self._mask, axis=-1)


@register
def _spec() -> LossSpec:
    # Every pair updates the root and the top nodes, so a batch sums all their gradients there:
    # it diverges at ~1.5–4k pairs a step; 256 is inside the stable range.
    return LossSpec(
        "hs", "hierarchical softmax over word2vec's Huffman tree, O(log V) per pair",
        lambda counts, options, cbow: HierarchicalSoftmax(counts, cbow=cbow),
        default_batch_size=lambda options, cbow: 256,
        test_variants=({}, {"cbow": True}))
