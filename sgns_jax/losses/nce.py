"""Noise-contrastive estimation (Gutmann & Hyvärinen 2010; Mnih & Teh 2012).

Like negative sampling but a proper density estimator: each logit is corrected by the log of
K times the noise probability, Δ(w) = u_w·h − log(K·q(w)), and the loss is
−log σ(Δ(c)) − Σ_k log σ(−Δ(n_k)) with K fresh noise words per pair (shared sampler). At the
optimum exp(u_c·h) is the self-normalised p(c | h).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import jax.numpy as jnp

import numpy as np

from sgns_jax.losses.base import Array, Batch, Lookup, log_sigmoid
from sgns_jax.losses.noise import PerExampleNoise, noise_sampler
from sgns_jax.losses.registry import NoiseOptions, option, register


@dataclass(frozen=True, eq=False)
class NoiseContrastiveEstimation(PerExampleNoise):
    """K fresh noise words per pair (``noise.PerExampleNoise``), logits corrected by log K·q."""

    def describe(self) -> str:
        return f"NCE (K={self.negatives})"

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        h_BxD = self.input_vectors(rows, batch)
        _, weight_B = self.targets(batch)
        ids_BxK1 = lookups["out"].ids
        log_kq_BxK1 = jnp.log(float(self.negatives)) + jnp.take(self.sampler.log_q, ids_BxK1)
        delta_BxK1 = jnp.einsum("bkd,bd->bk", rows["out"], h_BxD) - log_kq_BxK1
        loss_B = -(log_sigmoid(delta_BxK1[:, 0]) + jnp.sum(log_sigmoid(-delta_BxK1[:, 1:]), -1))
        return loss_B, weight_B


@register
@dataclass(frozen=True)
class NoiseContrastiveEstimationOptions(NoiseOptions):
    name: str = "nce"
    negative: int = option(5, "K noise words per example")

    summary: ClassVar[str] = "noise-contrastive estimation: logits corrected by log K·q"
    test_variants: ClassVar[tuple[dict, ...]] = ({}, {"cbow": True})

    def build(self, counts: np.ndarray, cbow: bool):
        return NoiseContrastiveEstimation(noise_sampler(counts, self.ns_exponent),
                                          negatives=self.negative, cbow=cbow)
