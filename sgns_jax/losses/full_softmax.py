"""Full softmax: the exact objective −log softmax(W_out · h)[c], O(V) per example.

The normaliser is a running logsumexp over vocabulary chunks, and the chunk loop is
rematerialised (``jax.checkpoint``), so forward and backward memory is O(B × chunk), not
O(B × V); the work is one [B, D] × [D, chunk] matrix product per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import jax
import jax.numpy as jnp

from sgns_jax.losses.base import Array, Batch, Lookup, OutputLayer


def chunked_logsumexp(h_BxD: Array, w_out_VxD: Array, chunk: int) -> Array:
    """logsumexp_v (w_out[v] · h[b]) for each b, scanning ``chunk`` rows of w_out at a time."""
    v, d = w_out_VxD.shape
    chunk = max(1, min(chunk, v))
    n = -(-v // chunk)
    pad = n * chunk - v
    w_NxCxD = jnp.pad(w_out_VxD, ((0, pad), (0, 0))).reshape(n, chunk, d)
    valid_NxC = (jnp.arange(n * chunk) < v).reshape(n, chunk)

    @jax.checkpoint
    def body(carry, xs):
        m_B, s_B = carry
        w_CxD, valid_C = xs
        logits_BxC = jnp.where(valid_C[None, :], h_BxD @ w_CxD.T, -jnp.inf)
        m_new = jnp.maximum(m_B, logits_BxC.max(axis=1))
        s_new = s_B * jnp.exp(m_B - m_new) + jnp.exp(logits_BxC - m_new[:, None]).sum(axis=1)
        return (m_new, s_new), None

    b = h_BxD.shape[0]
    init = (jnp.full((b,), -jnp.inf, h_BxD.dtype), jnp.zeros((b,), h_BxD.dtype))
    (m_B, s_B), _ = jax.lax.scan(body, init, (w_NxCxD, valid_NxC))
    return m_B + jnp.log(s_B)


@dataclass(frozen=True, eq=False)
class FullSoftmax(OutputLayer):
    """−log p(c | w) with p the softmax over the whole vocabulary (the exact reference).

    Params: ``w_in [V, D]``, ``w_out [V, D]``. The gradient w.r.t. ``w_out`` is dense.
    """

    chunk: int = 4096
    cbow: bool = False

    @property
    def layout(self) -> str:
        return "windows" if self.cbow else "pairs"

    def lookups(self, batch: Batch, noise: Array | None) -> dict[str, Lookup]:
        return {"input": self.input_lookup(batch), "out_all": Lookup("w_out", None)}

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        h_BxD = self.input_vectors(rows, batch)
        target_B, weight_B = self.targets(batch)
        w_out = rows["out_all"]
        target_logit_B = jnp.sum(jnp.take(w_out, target_B, axis=0) * h_BxD, axis=-1)
        return chunked_logsumexp(h_BxD, w_out, self.chunk) - target_logit_B, weight_B
