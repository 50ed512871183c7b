"""Negative sampling (SGNS): −log σ(u_c·h) − Σ_k log σ(−u_{n_k}·h), noise from counts^0.75.

Three ways to draw the noise, an experimental axis (same objective in expectation, see tests),
each its own small layer registered under ``negative_mode``:

* ``pair`` — word2vec C: K fresh negatives for every (input, target) pair.
* ``window`` — pWord2Vec (Ji et al. 2016): skip-gram over the windows layout in word2vec's
  orientation (the context words are the inputs, the centre is the target); the ≤ 2·window
  contexts of one centre share one set of K negatives, so a window is one small
  [contexts × D]·[D × (1+K)] product. Each pair still sees K negatives of weight 1.
* ``batch`` — one set of S noise words for the whole batch; each pair's noise term is
  (K/S)·Σ_s log σ(−u_s·h), whose expectation equals K negatives per pair. The logits are one
  [B × S] product.

In every mode a negative equal to the pair's target is skipped, as word2vec and gensim do.
As a language model, SGNS's dot products estimate log p(c|w) − log q(c) − log K (Levy &
Goldberg 2014): its implied conditional is softmax(u·h + log q).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import jax.numpy as jnp
import numpy as np

from sgns_jax.errors import ConfigError
from sgns_jax.losses.base import Array, Batch, Lookup, log_sigmoid, matmul, window_logits
from sgns_jax.losses.noise import NoiseLayer, PerExampleNoise, SharedNoise, noise_sampler
from sgns_jax.losses.registry import MatmulOptions, NoiseOptions, option, register


class NegativeSampling(NoiseLayer):
    """What the three modes share: the implied conditional's bias and the description."""

    def conditional_log_bias(self) -> Array:
        return self.sampler.log_q

    def describe(self) -> str:
        mode = next(name for name, m in NEGATIVE_MODES.items() if m.layer is type(self))
        return f"negative sampling (K={self.negatives}, {mode} negatives)"


@dataclass(frozen=True, eq=False)
class PairNegativeSampling(PerExampleNoise, NegativeSampling):
    """K fresh negatives per (input, target) pair: word2vec's sampling."""

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        h_BxD = self.input_vectors(rows, batch)
        _, weight_B = self.targets(batch)
        ids_BxK1 = lookups["out"].ids
        logits_BxK1 = jnp.einsum("bkd,bd->bk", rows["out"], h_BxD)
        skip_BxK = ids_BxK1[:, 1:] == ids_BxK1[:, :1]
        neg_B = jnp.sum(jnp.where(skip_BxK, 0.0, log_sigmoid(-logits_BxK1[:, 1:])), -1)
        return -(log_sigmoid(logits_BxK1[:, 0]) + neg_B), weight_B


@dataclass(frozen=True, eq=False)
class WindowNegativeSampling(PerExampleNoise, NegativeSampling):
    """The contexts of one centre share its K negatives (skip-gram, windows layout): an example
    is a window, its noise drawn as any example's."""

    layout = "windows"

    def lookups(self, batch: Batch, noise: Array) -> dict[str, Lookup]:
        centre_B = batch["centre"]
        return {"input": Lookup("w_in", batch["context"]),
                "out": Lookup("w_out", jnp.concatenate([centre_B[:, None], noise], 1))}

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        # Inputs: the contexts [B, C, D]; outputs: centre + K negatives [B, 1+K, D].
        ids_BxK1 = lookups["out"].ids
        logits_BxCxK1 = window_logits(rows["input"], rows["out"])
        skip_BxK = ids_BxK1[:, 1:] == ids_BxK1[:, :1]
        neg_BxC = jnp.sum(jnp.where(skip_BxK[:, None, :], 0.0,
                                    log_sigmoid(-logits_BxCxK1[..., 1:])), -1)
        return -(log_sigmoid(logits_BxCxK1[..., 0]) + neg_BxC), batch["mask"]


@dataclass(frozen=True, eq=False)
class BatchNegativeSampling(SharedNoise, NegativeSampling):
    """S negatives shared by the whole batch, each weighted K/S."""

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        h_BxD = self.input_vectors(rows, batch)
        target_B, weight_B = self.targets(batch)
        pos_B = jnp.sum(rows["out"] * h_BxD, -1)
        logits_BxS = matmul(h_BxD, rows["shared"].T, self.matmul_dtype)
        skip_BxS = lookups["shared"].ids[None, :] == target_B[:, None]
        neg_B = jnp.sum(jnp.where(skip_BxS, 0.0, log_sigmoid(-logits_BxS)), -1)
        return -(log_sigmoid(pos_B) + (self.negatives / self.samples) * neg_B), weight_B


@dataclass(frozen=True)
class NegativeMode:
    layer: type[NegativeSampling]
    default_batch_size: int       # on the CPU
    accelerator_batch_size: int   # on a GPU or TPU (config.py: default_batch_size)
    skip_gram_only: bool = False


# Default batch sizes inside the stable ranges measured on the development machine (summed
# per-pair updates diverge when a batch stacks too many updates on the same rows; the ranges are
# in the README's Performance section). Window batches are small on the CPU so a step's gathered
# rows stay in cache; an accelerator takes the widest batches whose quality matched
# (docs/bench_accelerator_batches.json). Batch mode sums the whole batch's gradients on its S
# shared rows, so it keeps its CPU batch everywhere.
NEGATIVE_MODES = {
    "pair": NegativeMode(PairNegativeSampling, 1024, 4096),
    "window": NegativeMode(WindowNegativeSampling, 64, 512, skip_gram_only=True),
    "batch": NegativeMode(BatchNegativeSampling, 1024, 1024),
}


@register
@dataclass(frozen=True)
class NegativeSamplingOptions(NoiseOptions, MatmulOptions):
    name: str = "ns"
    negative: int = option(5, "K noise words per example")
    negative_mode: str | None = option(
        None, "how the noise is drawn: pair (word2vec), window (a centre's contexts share it) or "
              "batch (S words shared by the batch); default window for skip-gram, pair for CBOW",
        choices=list(NEGATIVE_MODES))
    shared_samples: int = option(64, "S noise words shared by a batch (batch mode)")

    summary: ClassVar[str] = "negative sampling (SGNS): K noise words from counts^0.75"
    test_variants: ClassVar[tuple[dict, ...]] = (
        {"negative_mode": "pair"}, {"negative_mode": "window"},
        {"negative_mode": "batch", "shared_samples": 7}, {"cbow": True})

    def check(self, cbow: bool) -> None:
        super().check(cbow)
        mode = self.resolve(cbow).negative_mode
        if self.matmul_dtype != "float32" and mode != "batch":
            raise ConfigError(f"matmul_dtype {self.matmul_dtype} needs negative_mode batch (the "
                              "other modes' products are per-example, not matrix products)")
        if cbow and NEGATIVE_MODES[mode].skip_gram_only:
            raise ConfigError(f"negative mode {mode!r} is for skip-gram; CBOW takes "
                              + " or ".join(repr(m) for m, s in NEGATIVE_MODES.items() if not s.skip_gram_only))

    def resolve(self, cbow: bool) -> "NegativeSamplingOptions":
        """The default mode: window-shared for skip-gram (the fastest at gensim's quality), pair
        (word2vec's) for CBOW, where windows are not defined."""
        if self.negative_mode is not None:
            return self
        return self.replace(negative_mode="pair" if cbow else "window")

    def batch_size(self, cbow: bool, backend: str = "cpu") -> int:
        if cbow:
            return 256
        mode = NEGATIVE_MODES[self.resolve(cbow).negative_mode]
        return mode.default_batch_size if backend == "cpu" else mode.accelerator_batch_size

    def build(self, counts: np.ndarray, cbow: bool) -> NegativeSampling:
        return NEGATIVE_MODES[self.negative_mode].layer(
            noise_sampler(counts, self.ns_exponent), negatives=self.negative,
            samples=self.shared_samples, cbow=cbow, matmul_dtype=self.matmul_dtype)
