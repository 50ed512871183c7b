"""BlackOut (Ji, Vishwanathan, Satish, Anderson & Dubey, ICLR 2016): weighted sampling with a
discriminative loss.

S noise words are shared by the batch (as sampled softmax draws them), each weighted by 1/q.
Over the target c and the samples, p̃(i) = exp(u_i·h − log q(i)) / Σ_j exp(u_j·h − log q(j)),
and the loss asks the target to be likely *and* every sample unlikely:

    −log p̃(c) − Σ_s log(1 − p̃(s))

A sample equal to the example's target is removed from its sum (an accidental hit). Like
sampled softmax its logits estimate log p(c | w) up to a per-input constant, so its conditional
is softmax(u·h); unlike it, the second term pushes sampled words down individually, as NCE's
noise term does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from sgns_jax.losses.base import Array, Batch, Lookup, matmul
from sgns_jax.losses.noise import SharedNoise, noise_sampler
from sgns_jax.losses.registry import MatmulOptions, NoiseOptions, option, register


@dataclass(frozen=True, eq=False)
class BlackOut(SharedNoise):
    """S samples shared by the batch (``noise.SharedNoise``), weighted 1/q."""

    def describe(self) -> str:
        return f"BlackOut (S={self.samples})"

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        h_BxD = self.input_vectors(rows, batch)
        target_B, weight_B = self.targets(batch)
        sample_S = lookups["shared"].ids
        pos_B = jnp.sum(rows["out"] * h_BxD, -1) - jnp.take(self.sampler.log_q, target_B)
        neg_BxS = matmul(h_BxD, rows["shared"].T, self.matmul_dtype) - jnp.take(self.sampler.log_q, sample_S)[None, :]
        hit_BxS = sample_S[None, :] == target_B[:, None]
        neg_BxS = jnp.where(hit_BxS, -jnp.inf, neg_BxS)
        log_z_B = jax.nn.logsumexp(jnp.concatenate([pos_B[:, None], neg_BxS], axis=1), axis=1)
        log_p_neg_BxS = neg_BxS - log_z_B[:, None]
        # log(1 − p̃) = log(−expm1(log p̃)), 0 for a removed hit (p̃ = 0).
        log_not_BxS = jnp.where(hit_BxS, 0.0, jnp.log(-jnp.expm1(jnp.minimum(log_p_neg_BxS, -1e-7))))
        return -(pos_B - log_z_B) - jnp.sum(log_not_BxS, axis=1), weight_B


@register
@dataclass(frozen=True)
class BlackOutOptions(NoiseOptions, MatmulOptions):
    name: str = "blackout"
    shared_samples: int = option(64, "S noise words shared by a batch")

    summary: ClassVar[str] = "BlackOut: S shared samples weighted 1/q, the target up and each sample down"
    test_variants: ClassVar[tuple[dict, ...]] = ({"shared_samples": 9}, {"shared_samples": 9, "cbow": True})

    def build(self, counts: np.ndarray, cbow: bool):
        return BlackOut(noise_sampler(counts, self.ns_exponent), samples=self.shared_samples,
                        cbow=cbow, matmul_dtype=self.matmul_dtype)
