"""Noise sampling in O(1) per draw: a power-of-two alias table, one uint32 per draw.

Walker/Vose alias method over ``M = 2^k >= V`` columns (the columns past V have probability 0
and always alias to a real word). One 32-bit random number per draw: its top ``k`` bits pick a
column, the low ``32 - k`` bits are the coin that decides between the column's word and its
alias. The coin thresholds are rounded to ``2^-(32-k)``, so each word's probability is exact up
to ``(columns holding it) · 2^-(32-k) / M`` — below 1e-7 relative for V ≤ 2^16, and about 2e-4
relative at V = 2^20. Never a categorical/Gumbel draw over V.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


def alias_table(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias table for ``probs`` (float [V], sums to 1) on ``M = 2^k`` columns.

    Returns ``accept`` float64 [M] (probability of keeping the column's own index) and ``alias``
    int32 [M].
    """
    probs = np.asarray(probs, dtype=np.float64)
    v = probs.size
    m = 1 << max(1, int(np.ceil(np.log2(max(v, 2)))))
    scaled = np.zeros(m)
    scaled[:v] = probs / probs.sum() * m
    accept = np.ones(m)
    alias = np.arange(m, dtype=np.int32)
    small = [i for i in range(m) if scaled[i] < 1.0]
    large = [i for i in range(m) if scaled[i] >= 1.0]
    while small and large:
        s, l = small.pop(), large.pop()
        accept[s] = scaled[s]
        alias[s] = l
        scaled[l] -= 1.0 - scaled[s]
        (small if scaled[l] < 1.0 else large).append(l)
    for i in small + large:  # numerical leftovers: keep themselves
        accept[i] = 1.0 if scaled[i] > 0.5 or i < v else 0.0
        if i >= v:  # a padding column must never return itself
            alias[i] = int(np.argmax(probs))
    return accept, alias


@dataclass(frozen=True, eq=False)
class AliasSampler:
    """Draws word ids from a fixed distribution. Build on the host, draw inside ``jit``."""

    threshold: jax.Array  # uint32 [M]: keep the column if coin < threshold
    alias: jax.Array      # int32 [M]
    log_q: jax.Array      # float32 [V]: log of the sampled distribution (for NCE / sampled)
    bits: int             # k = log2(M)

    @classmethod
    def from_probs(cls, probs: np.ndarray) -> "AliasSampler":
        probs = np.asarray(probs, dtype=np.float64)
        probs = probs / probs.sum()
        accept, alias = alias_table(probs)
        k = int(np.log2(accept.size))
        scale = float(1 << (32 - k))
        # k >= 1, so the coin has at most 31 bits and a threshold of 2^(32-k) (always keep)
        # still fits a uint32.
        threshold = np.clip(np.round(accept * scale), 0, scale).astype(np.uint32)
        with np.errstate(divide="ignore"):
            log_q = np.log(probs)
        return cls(jnp.asarray(threshold), jnp.asarray(alias),
                   jnp.asarray(log_q, dtype=jnp.float32), k)

    def sample(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """int32 ids of the given shape, i.i.d. from the distribution."""
        bits = jax.random.bits(key, shape, dtype=jnp.uint32)
        column = (bits >> (32 - self.bits)).astype(jnp.int32)
        coin = bits & jnp.uint32((1 << (32 - self.bits)) - 1)
        keep = coin < self.threshold[column]
        return jnp.where(keep, column, self.alias[column])

    def probabilities(self) -> np.ndarray:
        """The exact distribution this table samples (after threshold rounding), float64 [M]."""
        m = self.alias.shape[0]
        scale = float(1 << (32 - self.bits))
        keep = np.minimum(np.asarray(self.threshold, dtype=np.float64) / scale, 1.0)
        p = keep / m
        np.add.at(p, np.asarray(self.alias), (1 - keep) / m)
        return p
