"""Negative sampling (SGNS): −log σ(u_c·h) − Σ_k log σ(−u_{n_k}·h), noise from counts^0.75.

Three ways to draw the noise, an experimental axis (same objective in expectation, see tests):

* ``pair`` — word2vec C: K fresh negatives for every (input, target) pair.
* ``window`` — pWord2Vec (Ji et al. 2016): skip-gram over the windows layout in word2vec's
  orientation (the context words are the inputs, the centre is the target); the ≤ 2·window
  contexts of one centre share one set of K negatives, so a window is one small
  [contexts × D]·[D × (1+K)] product. Each pair still sees K negatives of weight 1.
* ``batch`` — one set of S noise words for the whole batch; each pair's noise term is
  (K/S)·Σ_s log σ(−u_s·h), whose expectation equals K negatives per pair. The logits are one
  [B × S] product.

In every mode a negative equal to the pair's target is skipped, as word2vec and gensim do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

import jax
import jax.numpy as jnp

from sgns_jax.losses.base import Array, Batch, Lookup, OutputLayer, log_sigmoid
from sgns_jax.losses.sampler import AliasSampler

NegativeMode = Literal["pair", "window", "batch"]


@jax.custom_vjp
def window_logits(x_BxCxD: Array, y_BxKxD: Array) -> Array:
    """logits[b, c, k] = x[b, c] · y[b, k], with hand-laid-out gradients.

    XLA:CPU runs small batched contractions 4–6× slower when the contracted axis is not the
    last of both operands; autodiff would contract over K and C (middle axes). The backward
    pass here transposes first so every contraction runs over the last axis.
    """
    return jnp.einsum("bcd,bkd->bck", x_BxCxD, y_BxKxD)


def _window_logits_fwd(x, y):
    return window_logits(x, y), (x, y)


def _window_logits_bwd(res, g_BxCxK):
    x_BxCxD, y_BxKxD = res
    dx = jnp.einsum("bck,bkd->bcd", g_BxCxK, y_BxKxD)
    gT = jax.lax.optimization_barrier(jnp.swapaxes(g_BxCxK, 1, 2))
    dy = jnp.einsum("bkc,bcd->bkd", gT, x_BxCxD)
    return dx, dy


window_logits.defvjp(_window_logits_fwd, _window_logits_bwd)


@dataclass(frozen=True, eq=False)
class NegativeSampling(OutputLayer):
    sampler: AliasSampler
    negatives: int = 5
    mode: NegativeMode = "pair"
    shared_samples: int = 64  # S, for mode="batch"
    cbow: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("pair", "window", "batch"):
            raise ValueError(f"unknown negative sampling mode {self.mode!r}")
        if self.mode == "window" and self.cbow:
            raise ValueError("window-shared negatives are a skip-gram mode; use mode='pair' "
                             "or 'batch' with CBOW")

    @property
    def layout(self) -> str:
        return "windows" if (self.cbow or self.mode == "window") else "pairs"

    @property
    def noise_per_row(self) -> bool:
        return self.mode != "batch"

    def sample_noise(self, key: Array, rows: int) -> Array:
        """int32 [rows, K] (pair, window) or [S] (batch)."""
        if self.mode == "batch":
            return self.sampler.sample(key, (self.shared_samples,))
        return self.sampler.sample(key, (rows, self.negatives))

    def lookups(self, batch: Batch, noise: Array) -> dict[str, Lookup]:
        if self.mode == "window":
            centre_B = batch["centre"]
            return {"input": Lookup("w_in", batch["context"]),
                    "out": Lookup("w_out", jnp.concatenate([centre_B[:, None], noise], 1))}
        target_B, _ = self.targets(batch)
        if self.mode == "pair":
            return {"input": self.input_lookup(batch),
                    "out": Lookup("w_out", jnp.concatenate([target_B[:, None], noise], 1))}
        return {"input": self.input_lookup(batch), "out": Lookup("w_out", target_B),
                "shared": Lookup("w_out", noise)}

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        if self.mode == "window":
            # Inputs: the contexts [B, C, D]; outputs: centre + K negatives [B, 1+K, D].
            ids_BxK1 = lookups["out"].ids
            logits_BxCxK1 = window_logits(rows["input"], rows["out"])
            skip_BxK = ids_BxK1[:, 1:] == ids_BxK1[:, :1]
            neg_BxC = jnp.sum(jnp.where(skip_BxK[:, None, :], 0.0,
                                        log_sigmoid(-logits_BxCxK1[..., 1:])), -1)
            return -(log_sigmoid(logits_BxCxK1[..., 0]) + neg_BxC), batch["mask"]
        h_BxD = self.input_vectors(rows, batch)
        target_B, weight_B = self.targets(batch)
        if self.mode == "pair":
            ids_BxK1 = lookups["out"].ids
            logits_BxK1 = jnp.einsum("bkd,bd->bk", rows["out"], h_BxD)
            skip_BxK = ids_BxK1[:, 1:] == ids_BxK1[:, :1]
            neg_B = jnp.sum(jnp.where(skip_BxK, 0.0, log_sigmoid(-logits_BxK1[:, 1:])), -1)
            return -(log_sigmoid(logits_BxK1[:, 0]) + neg_B), weight_B
        pos_B = jnp.sum(rows["out"] * h_BxD, -1)
        logits_BxS = h_BxD @ rows["shared"].T
        skip_BxS = lookups["shared"].ids[None, :] == target_B[:, None]
        neg_B = jnp.sum(jnp.where(skip_BxS, 0.0, log_sigmoid(-logits_BxS)), -1)
        return -(log_sigmoid(pos_B) + (self.negatives / self.shared_samples) * neg_B), weight_B
