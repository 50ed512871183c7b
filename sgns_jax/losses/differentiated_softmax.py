"""Differentiated softmax (Chen, Grangier & Auli 2016, "Strategies for Training Large
Vocabulary Neural Language Models"): an exact softmax whose output vectors are narrower for
rarer words.

Words are sorted by frequency (ids are ranks) and cut into bands at ``cutoffs``
c_0 < … < c_{n−1} (band j holds the words [c_{j−1}, c_j), with c_{−1} = 0 and c_n = V). Band j
has output vectors of width d_j (``widths``, Σ d_j = D) and sees only its own slice of the
input vector: with h split into consecutive slices h_0 | h_1 | … of widths d_0, d_1, …,

    logit(w) = u_w · h_j   for w in band j,        p(w | h) = softmax over all V logits,

so the output matrix is block diagonal, the frequent words get the most capacity, and a
logit costs d_j instead of D multiply-adds. One normaliser over the whole vocabulary: the
conditional is exact and normalised (held-out scoring uses it as is). Defaults: the bands of
the adaptive softmax (the frequency ranks covering 80% and 95% of the tokens) and widths
halving from band to band, the last band taking the rest (D/2, D/4, D/4 for three bands);
``cutoffs = ()`` is one band of width D, the full softmax.

Every band's table is read whole each step (its gradient is dense, as the full softmax's);
``w_in`` stays sparse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from sgns_jax.errors import ConfigError
from sgns_jax.losses.adaptive_softmax import coverage_cutoffs
from sgns_jax.losses.base import (Array, Batch, Lookup, OutputLayer, ParamSpec, matmul,
                                  rounded_like_matmul)
from sgns_jax.losses.full_softmax import blocked_logsumexp
from sgns_jax.losses.registry import MatmulOptions, option, register


def halving_widths(dim: int, bands: int) -> tuple[int, ...]:
    """D/2, D/4, … for all bands but the last, which takes what is left (Σ = D)."""
    widths = [dim >> (j + 1) for j in range(bands - 1)]
    return (*widths, dim - sum(widths))


@dataclass(frozen=True, eq=False)
class DifferentiatedSoftmax(OutputLayer):
    cutoffs: tuple[int, ...]            # band boundaries c_0 < … < c_{n−1}, inside (0, V)
    vocab_size: int
    widths: tuple[int, ...] | None = None  # d_j per band (None: halving_widths)
    block: int = 32768                  # rows per block of a band's normaliser
    cbow: bool = False
    matmul_dtype: str = "float32"
    normalised = True

    def __post_init__(self) -> None:
        c = self.cutoffs
        if any(b <= a for a, b in zip(c, c[1:])) or (c and (c[0] < 1 or c[-1] >= self.vocab_size)):
            raise ConfigError(f"dsoftmax cutoffs must increase strictly inside (0, V = "
                              f"{self.vocab_size}), got {list(c)}")
        if self.widths is not None and len(self.widths) != len(c) + 1:
            raise ConfigError(f"dsoftmax needs one width per band: {len(c) + 1} bands, got widths "
                              f"{list(self.widths)}")

    @property
    def bounds(self) -> list[tuple[int, int]]:
        edges = [0, *self.cutoffs, self.vocab_size]
        return list(zip(edges[:-1], edges[1:]))

    def band_widths(self, dim: int) -> tuple[int, ...]:
        widths = self.widths or halving_widths(dim, len(self.bounds))
        if sum(widths) != dim or min(widths) < 1:
            raise ConfigError(f"dsoftmax widths must be >= 1 and sum to the dimension {dim}, got "
                              f"{list(widths)}")
        return tuple(widths)

    def describe(self) -> str:
        widths = list(self.widths) if self.widths else "halving"
        return f"differentiated softmax (cutoffs {list(self.cutoffs)}, widths {widths})"

    def param_specs(self, vocab_size: int, dim: int) -> dict[str, ParamSpec]:
        return {f"band{j}": ParamSpec((hi - lo, d), row_indexed=False)
                for j, ((lo, hi), d) in enumerate(zip(self.bounds, self.band_widths(dim)))}

    def lookups(self, batch: Batch, noise: Array | None) -> dict[str, Lookup]:
        return {"input": self.input_lookup(batch),
                **{f"band{j}": Lookup(f"band{j}", None) for j in range(len(self.bounds))}}

    def _slices(self, h_BxD: Array) -> list[Array]:
        offsets = np.cumsum([0, *self.band_widths(h_BxD.shape[-1])])
        return [h_BxD[:, a:b] for a, b in zip(offsets[:-1], offsets[1:])]

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        h_BxD = self.input_vectors(rows, batch)
        target_B, weight_B = self.targets(batch)
        lse_parts, target_logit_B = [], jnp.zeros(target_B.shape, h_BxD.dtype)
        for j, ((lo, hi), h_BxDj) in enumerate(zip(self.bounds, self._slices(h_BxD))):
            band_NxDj = rows[f"band{j}"]
            if hi - lo <= self.block:
                lse_parts.append(jax.nn.logsumexp(matmul(h_BxDj, band_NxDj.T, self.matmul_dtype), axis=1))
            else:
                lse_parts.append(blocked_logsumexp(h_BxDj, band_NxDj, self.block, self.matmul_dtype))
            # the target's own logit, rounded as the normaliser's products round their operands
            row_BxDj = jnp.take(band_NxDj, jnp.clip(target_B - lo, 0, hi - lo - 1), axis=0)
            logit_B = jnp.sum(rounded_like_matmul(row_BxDj, self.matmul_dtype)
                              * rounded_like_matmul(h_BxDj, self.matmul_dtype), axis=-1)
            target_logit_B = target_logit_B + jnp.where((target_B >= lo) & (target_B < hi), logit_B, 0.0)
        log_z_B = jax.nn.logsumexp(jnp.stack(lse_parts, axis=1), axis=1)
        return log_z_B - target_logit_B, weight_B

    def log_probs(self, params: Mapping[str, Array], h_BxD: Array) -> Array:
        """log p(w | h) for every word [B, V] (tests and evaluation)."""
        logits = [h_BxDj @ params[f"band{j}"].T for j, h_BxDj in enumerate(self._slices(h_BxD))]
        return jax.nn.log_softmax(jnp.concatenate(logits, axis=1), axis=1)


@register
@dataclass(frozen=True)
class DifferentiatedSoftmaxOptions(MatmulOptions):
    name: str = "dsoftmax"
    cutoffs: tuple[int, ...] | None = option(
        None, "frequency ranks where each band ends (default: the ranks covering 80% and 95% of "
              "the tokens)")
    widths: tuple[int, ...] | None = option(
        None, "output width of each band, summing to the dimension (default: D/2, D/4, …, the "
              "last band the rest)")
    softmax_block: int = option(32768, "vocabulary rows per block of the normaliser")

    summary: ClassVar[str] = ("differentiated softmax (Chen et al. 2016): exact, narrower output "
                              "vectors for rarer frequency bands")
    test_variants: ClassVar[tuple[dict, ...]] = (
        {}, {"cutoffs": (2, 5), "softmax_block": 3}, {"cutoffs": (4,)}, {"cbow": True})

    def check(self, cbow: bool) -> None:
        super().check(cbow)
        c = self.cutoffs or ()
        if any(b <= a for a, b in zip(c, c[1:])) or any(x < 1 for x in c):
            raise ConfigError(f"cutoffs must be positive and strictly increasing, got {list(c)}")
        if self.widths is not None and self.cutoffs is None:
            raise ConfigError("dsoftmax widths need their bands: give cutoffs too")

    def batch_size(self, cbow: bool, backend: str = "cpu") -> int:
        # Its tables are updated densely, as the full softmax's: 256 rows a step stay stable.
        return 256

    def build(self, counts: np.ndarray, cbow: bool) -> DifferentiatedSoftmax:
        cutoffs = coverage_cutoffs(counts) if self.cutoffs is None else tuple(self.cutoffs)
        return DifferentiatedSoftmax(cutoffs, len(counts), self.widths, self.softmax_block,
                                     cbow=cbow, matmul_dtype=self.matmul_dtype)
