"""Full softmax: the exact objective −log softmax(W_out · h)[c], O(V) per example.

When V > ``block``, the normaliser is a running logsumexp over vocabulary blocks and the block
loop is rematerialised (``jax.checkpoint``), so forward and backward memory is O(B × block),
not O(B × V), at the price of recomputing the logits (four [B × D]·[D × block] products per
block). When the whole vocabulary fits one block, the logits are one matrix product kept for
the backward pass, whose gradient is written by hand (three products in all, ~25% less work).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Mapping

import jax
import jax.numpy as jnp

from sgns_jax.losses.base import (Array, Batch, Lookup, OutputTableLayer, ParamSpec, matmul,
                                  rounded_like_matmul)
from sgns_jax.losses.registry import MatmulOptions, option, register


def blocked_logsumexp(h_BxD: Array, w_out_VxD: Array, block: int, dtype: str = "float32") -> Array:
    """logsumexp_v (w_out[v] · h[b]) for each b, scanning ``block`` rows of w_out at a time
    (the products' operands in ``dtype``, see :func:`~sgns_jax.losses.base.matmul`)."""
    v, d = w_out_VxD.shape
    block = max(1, min(block, v))
    n = -(-v // block)
    pad = n * block - v
    w_NxCxD = jnp.pad(w_out_VxD, ((0, pad), (0, 0))).reshape(n, block, d)
    valid_NxC = (jnp.arange(n * block) < v).reshape(n, block)

    @jax.checkpoint
    def body(carry, xs):
        m_B, s_B = carry
        w_CxD, valid_C = xs
        logits_BxC = jnp.where(valid_C[None, :], matmul(h_BxD, w_CxD.T, dtype), -jnp.inf)
        m_new = jnp.maximum(m_B, logits_BxC.max(axis=1))
        s_new = s_B * jnp.exp(m_B - m_new) + jnp.exp(logits_BxC - m_new[:, None]).sum(axis=1)
        return (m_new, s_new), None

    b = h_BxD.shape[0]
    init = (jnp.full((b,), -jnp.inf, h_BxD.dtype), jnp.zeros((b,), h_BxD.dtype))
    (m_B, s_B), _ = jax.lax.scan(body, init, (w_NxCxD, valid_NxC))
    return m_B + jnp.log(s_B)


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def softmax_nll(h_BxD: Array, w_out_VxD: Array, target_B: Array, dtype: str = "float32") -> Array:
    """−log softmax(w_out · h)[target] per example, in one block (memory O(B × V)); the three
    matrix products' operands in ``dtype`` (:func:`~sgns_jax.losses.base.matmul`)."""
    logits_BxV = matmul(h_BxD, w_out_VxD.T, dtype)
    return jax.nn.logsumexp(logits_BxV, axis=1) - jnp.take_along_axis(
        logits_BxV, target_B[:, None], axis=1)[:, 0]


def _softmax_nll_fwd(h_BxD, w_out_VxD, target_B, dtype):
    logits_BxV = matmul(h_BxD, w_out_VxD.T, dtype)
    lse_B = jax.nn.logsumexp(logits_BxV, axis=1)
    nll = lse_B - jnp.take_along_axis(logits_BxV, target_B[:, None], axis=1)[:, 0]
    return nll, (h_BxD, w_out_VxD, target_B, logits_BxV, lse_B)


def _softmax_nll_bwd(dtype, res, g_B):
    h_BxD, w_out_VxD, target_B, logits_BxV, lse_B = res
    probs_BxV = jnp.exp(logits_BxV - lse_B[:, None])
    onehot_BxV = jax.nn.one_hot(target_B, w_out_VxD.shape[0], dtype=probs_BxV.dtype)
    d_logits_BxV = (probs_BxV - onehot_BxV) * g_B[:, None]
    target_ct = jnp.zeros(target_B.shape, jax.dtypes.float0)
    return (matmul(d_logits_BxV, w_out_VxD, dtype), matmul(d_logits_BxV.T, h_BxD, dtype),
            target_ct)


softmax_nll.defvjp(_softmax_nll_fwd, _softmax_nll_bwd)


def exact_nll(h_BxD: Array, w_VxD: Array, target_B: Array, block: int,
              dtype: str = "float32") -> Array:
    """−log softmax(w · h)[target] per example [B], over all V rows of ``w``: in one block with
    the hand-written backward pass when V ≤ ``block``, else a running logsumexp over blocks of
    ``block`` rows (memory O(B × block)). Any softmax over a table of rows can use it (the full
    softmax's, a cluster's of a hierarchical one)."""
    if w_VxD.shape[0] <= block:
        return softmax_nll(h_BxD, w_VxD, target_B, dtype)
    # rounded as the normaliser's products round their operands, so the two agree
    w_target_BxD = rounded_like_matmul(jnp.take(w_VxD, target_B, axis=0), dtype)
    target_logit_B = jnp.sum(w_target_BxD * rounded_like_matmul(h_BxD, dtype), axis=-1)
    return blocked_logsumexp(h_BxD, w_VxD, block, dtype) - target_logit_B


@dataclass(frozen=True, eq=False)
class FullSoftmax(OutputTableLayer):
    """−log p(c | w) with p the softmax over the whole vocabulary (the exact reference).

    Params: ``w_in [V, D]``, ``w_out [V, D]`` (read whole: its gradient is dense).
    """

    block: int = 65536  # vocabulary rows per block of the normaliser
    cbow: bool = False
    matmul_dtype: str = "float32"  # the logits' products (base.matmul)
    normalised = True

    def describe(self) -> str:
        return "full softmax"

    def param_specs(self, vocab_size: int, dim: int) -> dict[str, ParamSpec]:
        return {"w_out": ParamSpec((vocab_size, dim), row_indexed=False)}

    def lookups(self, batch: Batch, noise: Array | None) -> dict[str, Lookup]:
        return {"input": self.input_lookup(batch), "out_all": Lookup("w_out", None)}

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        h_BxD = self.input_vectors(rows, batch)
        target_B, weight_B = self.targets(batch)
        return exact_nll(h_BxD, rows["out_all"], target_B, self.block, self.matmul_dtype), weight_B


@register
@dataclass(frozen=True)
class FullSoftmaxOptions(MatmulOptions):
    name: str = "full"
    # One block while its logits stay small (256 × 65,536 floats: 64 MB): the blocked path
    # recomputes the logits and was twice as slow at 40k words (docs/performance_notes.md).
    softmax_block: int = option(65536, "vocabulary rows per block of the normaliser")

    summary: ClassVar[str] = "the exact softmax over the whole vocabulary (the reference), O(V) per pair"
    test_variants: ClassVar[tuple[dict, ...]] = ({}, {"cbow": True}, {"softmax_block": 64})

    def batch_size(self, cbow: bool, backend: str = "cpu") -> int:
        # Summed per-pair updates of the dense output table: 256 rows a step stay stable.
        return 256

    def build(self, counts, cbow: bool) -> FullSoftmax:
        return FullSoftmax(block=self.softmax_block, cbow=cbow, matmul_dtype=self.matmul_dtype)
