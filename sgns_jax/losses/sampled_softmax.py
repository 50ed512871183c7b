"""Sampled softmax (Jean et al. 2015), with the log-q correction.

One set of S noise words per batch (shared sampler, as TensorFlow's ``sampled_softmax_loss``).
Each example's logits are its target and the S samples, each corrected by −log(S·q(w)), and the
loss is the cross-entropy of the target among them. With ``remove_accidental_hits`` a sample
equal to the example's target is removed from its softmax.
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
class SampledSoftmax(SharedNoise):
    """S samples shared by the batch (``noise.SharedNoise``), logits corrected by log S·q."""

    remove_accidental_hits: bool = True

    def describe(self) -> str:
        return f"sampled softmax (S={self.samples})"

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        h_BxD = self.input_vectors(rows, batch)
        target_B, weight_B = self.targets(batch)
        sample_S = lookups["shared"].ids
        log_s = jnp.log(float(self.samples))
        pos_B = jnp.sum(rows["out"] * h_BxD, -1) - (log_s + jnp.take(self.sampler.log_q, target_B))
        neg_BxS = matmul(h_BxD, rows["shared"].T, self.matmul_dtype) - (log_s + jnp.take(self.sampler.log_q, sample_S))[None, :]
        if self.remove_accidental_hits:
            neg_BxS = jnp.where(sample_S[None, :] == target_B[:, None], -jnp.inf, neg_BxS)
        logits_BxS1 = jnp.concatenate([pos_B[:, None], neg_BxS], axis=1)
        return jax.nn.logsumexp(logits_BxS1, axis=1) - pos_B, weight_B


@register
@dataclass(frozen=True)
class SampledSoftmaxOptions(NoiseOptions, MatmulOptions):
    name: str = "sampled"
    shared_samples: int = option(64, "S noise words shared by a batch")

    summary: ClassVar[str] = "sampled softmax: S shared samples, logits corrected by log S·q"
    test_variants: ClassVar[tuple[dict, ...]] = ({"shared_samples": 9}, {"shared_samples": 9, "cbow": True})

    def build(self, counts: np.ndarray, cbow: bool):
        return SampledSoftmax(noise_sampler(counts, self.ns_exponent), samples=self.shared_samples,
                              cbow=cbow, matmul_dtype=self.matmul_dtype)
