"""Noise words, drawn and looked up once for every strategy that uses them.

Two ways, each a base layer (both over an output table ``w_out [V, D]``):

* :class:`PerExampleNoise` — K fresh words per example (word2vec's negative sampling, NCE): the
  ``out`` lookup is ``[target, n_1, …, n_K]`` per example;
* :class:`SharedNoise` — S words shared by the whole batch (sampled softmax, BlackOut, batch-
  shared negative sampling): ``out`` is the targets, ``shared`` the S samples, so the noise
  logits are one [B × S] matrix product. A data-parallel step draws the global batch's noise
  on every device (``noise_per_row`` False: nothing to split).

The noise distribution is counts^ns_exponent, sampled from an alias table
(:class:`~sgns_jax.losses.sampler.AliasSampler`): O(1) a draw, one uint32 each.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from sgns_jax.data.vocab import noise_distribution
from sgns_jax.losses.base import Array, Batch, Lookup, OutputTableLayer
from sgns_jax.losses.sampler import AliasSampler


def noise_sampler(counts: np.ndarray, ns_exponent: float) -> AliasSampler:
    """The sampler of counts^ns_exponent (normalised)."""
    return AliasSampler.from_probs(noise_distribution(counts, ns_exponent))


@dataclass(frozen=True, eq=False)
class NoiseLayer(OutputTableLayer):
    """What the noise-drawing layers hold: the sampler, K per example, S per batch."""

    sampler: AliasSampler
    negatives: int = 5              # K, per example
    samples: int = 64               # S, per batch
    cbow: bool = False
    matmul_dtype: str = "float32"   # the [B × S] products of shared noise (base.matmul)


class PerExampleNoise(NoiseLayer):
    """K fresh noise words for every example, looked up with its target."""

    def sample_noise(self, key: Array, rows: int) -> Array:
        return self.sampler.sample(key, (rows, self.negatives))  # [rows, K]

    def lookups(self, batch: Batch, noise: Array) -> dict[str, Lookup]:
        target_B, _ = self.targets(batch)
        return {"input": self.input_lookup(batch),
                "out": Lookup("w_out", jnp.concatenate([target_B[:, None], noise], 1))}


class SharedNoise(NoiseLayer):
    """S noise words shared by the whole batch."""

    noise_per_row = False

    def sample_noise(self, key: Array, rows: int) -> Array:
        return self.sampler.sample(key, (self.samples,))  # [S]

    def lookups(self, batch: Batch, noise: Array) -> dict[str, Lookup]:
        target_B, _ = self.targets(batch)
        return {"input": self.input_lookup(batch), "out": Lookup("w_out", target_B),
                "shared": Lookup("w_out", noise)}
