"""What every output layer shares: row lookups, the input vector (skip-gram or CBOW), the mean.

An output layer is split in two pure halves so the trainer can update only the rows it touched:

* ``sample_noise(key, rows) -> noise`` — the step's random noise words for a batch of ``rows``
  examples (None for full and hierarchical softmax). ``noise_per_row`` says whether its leading
  axis follows the batch (K words per example) or is shared by the whole batch (S words); a
  data-parallel step draws the global batch's noise and gives each device its part, so results
  do not depend on the device count;
* ``lookups(batch, noise) -> {role: Lookup(table, ids)}`` — which rows of which table the batch
  needs (ids of any shape; ``ids=None`` means the whole table, as full softmax does);
* ``example_losses(rows, lookups, batch) -> (losses, weights)`` — the loss of each example
  from the gathered rows ``rows[role] = params[table][ids]`` (the lookups' ids are passed too,
  for layers that compare sampled ids with targets).

``loss(params, batch, key)`` composes them and returns the weighted mean, so it is an ordinary
pure function for ``jit``/``grad``/``vmap``; the sparse trainer instead differentiates
``example_losses`` with respect to ``rows`` and scatter-adds the row gradients.

Batch layouts (see ``sgns_jax.data.batches``): skip-gram pairs ``{input [B], output [B],
mask [B]}``; windows ``{centre [B], context [B, C], mask [B, C]}``. For CBOW the input vector is
the masked mean of the context vectors and the target is the centre; its backward pass is
word2vec's update (:func:`cbow_mean`), not the mean's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from math import prod
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Batch = Mapping[str, Array]
Params = Mapping[str, Array]


class Lookup(NamedTuple):
    table: str          # a leaf of the parameter tree ("w_in", or one the layer declares)
    ids: Array | None   # int32 [...]; None: the whole leaf


@dataclass(frozen=True)
class ParamSpec:
    """One leaf of the parameter tree: its shape, how it starts, and how it is read.

    ``row_indexed`` leaves hold one row per word (or tree node) and are read by ids: the update
    rules change only the rows a step looked up, worker streams merge only those rows, and a
    vocabulary-sharded run splits them by rows. Other leaves (a projection matrix) are read
    whole and updated whole.
    """

    shape: tuple[int, ...]
    init: str = "zeros"        # "zeros", or "uniform" in ±scale
    scale: float = 0.0
    row_indexed: bool = True

    @property
    def nbytes(self) -> int:
        return 4 * prod(self.shape)  # float32


# Names the output files and checkpoints use beside the parameter leaves.
RESERVED_NAMES = frozenset({"w_in", "words", "counts", "config", "step", "meta"})


@jax.custom_jvp
def log_sigmoid(x: Array) -> Array:
    """log σ(x) = −softplus(−x), with a hand-written derivative σ(−x).

    The derivative does not use the primal value, so when only gradients are needed XLA drops
    the forward log/exp entirely.
    """
    return -jax.nn.softplus(-x)


@log_sigmoid.defjvp
def _log_sigmoid_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return log_sigmoid(x), jax.nn.sigmoid(-x) * dx


MAX_EXP = 6.0  # where word2vec's sigmoid table ends


@jax.custom_jvp
def log_sigmoid_unsaturated(x: Array) -> Array:
    """log σ(x), whose derivative is σ(−x) for |x| < 6 and 0 beyond: word2vec.c and gensim skip
    a hierarchical-softmax node's update when its logit is outside their sigmoid table's ±6
    (``if (f <= -MAX_EXP) continue; else if (f >= MAX_EXP) continue;``), so a node already
    decided — rightly or wrongly — does not move. The value is the exact log σ(x)."""
    return -jax.nn.softplus(-x)


@log_sigmoid_unsaturated.defjvp
def _log_sigmoid_unsaturated_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return log_sigmoid_unsaturated(x), jnp.where(jnp.abs(x) < MAX_EXP, jax.nn.sigmoid(-x), 0.0) * dx


@jax.custom_vjp
def cbow_mean(x_BxCxD: Array, mask_BxC: Array) -> Array:
    """[B, D]: the masked mean of the context vectors, with word2vec's CBOW backward pass.

    word2vec.c and gensim (``cbow_mean=1``) average the contexts for the forward pass but add
    the *whole* error ``neu1e`` to every context row, not 1/|C| of it as the mean's gradient
    would; this VJP does the same, so CBOW trains at word2vec's step sizes (its default lr is
    0.05). The w_out gradients are exact; the w_in "gradient" is |C| times the true one.
    """
    return jnp.einsum("bcd,bc->bd", x_BxCxD, mask_BxC) / jnp.maximum(mask_BxC.sum(-1), 1.0)[:, None]


def _cbow_mean_fwd(x, mask):
    return cbow_mean(x, mask), mask


def _cbow_mean_bwd(mask_BxC, g_BxD):
    return g_BxD[:, None, :] * mask_BxC[..., None], jnp.zeros_like(mask_BxC)


cbow_mean.defvjp(_cbow_mean_fwd, _cbow_mean_bwd)


@jax.custom_vjp
def window_logits(x_BxCxD: Array, y_BxKxD: Array) -> Array:
    """logits[b, c, k] = x[b, c] · y[b, k], with hand-laid-out gradients.

    XLA:CPU runs small batched contractions several times slower when the contracted axis is
    not the last of both operands (docs/performance_notes.md); autodiff would contract over K
    and C (middle axes). The backward pass here transposes first so every contraction runs over
    the last axis.
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


def matmul(a_MxK: Array, b_KxN: Array, dtype: str = "float32") -> Array:
    """``a @ b`` [M, N] in float32. With ``dtype`` bfloat16 the operands are rounded to bfloat16
    and the products accumulate in float32 (``preferred_element_type``), and so do the two
    products of its gradient (a custom VJP: autodiff would pair a float32 cotangent with a
    bfloat16 operand and round the gradient itself to bfloat16). On a GPU or TPU this halves
    the bytes the matrix units read and runs at their bfloat16 rate; tables, gradients and every
    other op stay float32. Meant for accelerators; not measured for speed anywhere yet."""
    if dtype == "float32":
        return a_MxK @ b_KxN
    return _low_precision_matmul(a_MxK, b_KxN, dtype)


def _mixed(a: Array, b: Array, dtype: str) -> Array:
    dt = jnp.dtype(dtype)
    return jnp.matmul(a.astype(dt), b.astype(dt), preferred_element_type=jnp.float32)


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _low_precision_matmul(a_MxK: Array, b_KxN: Array, dtype: str) -> Array:
    return _mixed(a_MxK, b_KxN, dtype)


def _low_precision_matmul_fwd(a_MxK, b_KxN, dtype):
    dt = jnp.dtype(dtype)
    a_MxK, b_KxN = a_MxK.astype(dt), b_KxN.astype(dt)  # rounded once, kept for the backward
    return _mixed(a_MxK, b_KxN, dtype), (a_MxK, b_KxN)


def _low_precision_matmul_bwd(dtype, res, g_MxN):
    a_MxK, b_KxN = res
    return _mixed(g_MxN, b_KxN.T, dtype), _mixed(a_MxK.T, g_MxN, dtype)


_low_precision_matmul.defvjp(_low_precision_matmul_fwd, _low_precision_matmul_bwd)


def rounded_like_matmul(x: Array, dtype: str) -> Array:
    """``x`` rounded to ``dtype`` as :func:`matmul` rounds its operands (the value only; the
    gradient passes through), so a product written elementwise agrees with the matrix ones."""
    if dtype == "float32":
        return x
    return x + jax.lax.stop_gradient(x.astype(jnp.dtype(dtype)).astype(x.dtype) - x)


def gather_rows(params: Params, lookups: Mapping[str, Lookup]) -> dict[str, Array]:
    """``rows[role] = params[table][ids]`` (the whole table where ``ids`` is None).

    Ids must be in ``[0, rows)`` — the trainer's are by construction — and the gather clamps
    them (``mode="clip"``, a clamp of the ids) rather than filling out-of-range rows (the
    default: a select over every gathered float, which XLA:CPU ran as its own pass over the
    rows). An out-of-range id therefore reads the nearest valid row instead of NaN.
    """
    return {role: params[l.table] if l.ids is None else
            jnp.take(params[l.table], l.ids, axis=0, mode="clip")
            for role, l in lookups.items()}


class OutputLayer:
    """Base class: subclasses implement ``lookups`` and ``example_losses``.

    ``cbow``: the input vector is the mean of the context vectors (windows layout) instead of
    the centre's vector (pairs layout).
    """

    cbow: bool = False

    @property
    def layout(self) -> str:
        """The batch layout this layer consumes: ``windows`` for CBOW, else ``pairs``."""
        return "windows" if self.cbow else "pairs"

    def param_specs(self, vocab_size: int, dim: int) -> dict[str, ParamSpec]:
        """The layer's own parameter leaves by name; the model adds the input embeddings
        ``w_in [V, D]`` (:func:`sgns_jax.engine.step.param_specs`). Names must not be one of
        ``RESERVED_NAMES``."""
        raise NotImplementedError

    # -- the input side, shared by every layer ----------------------------------------------
    def input_lookup(self, batch: Batch) -> Lookup:
        return Lookup("w_in", batch["context"] if self.cbow else batch["input"])

    def targets(self, batch: Batch) -> tuple[Array, Array]:
        """Target word ids [B] and example weights [B]."""
        if self.cbow:
            return batch["centre"], (batch["mask"].sum(-1) > 0).astype(jnp.float32)
        return batch["output"], batch["mask"]

    def input_vectors(self, rows: Mapping[str, Array], batch: Batch) -> Array:
        """[B, D]: the centre's vector, or (CBOW) the masked mean of the context vectors."""
        return cbow_mean(rows["input"], batch["mask"]) if self.cbow else rows["input"]

    def batch_examples(self, batch: Batch) -> int:
        return batch["mask"].shape[0]

    # -- as a language model ------------------------------------------------------------------
    # ``normalised``: the loss is already the exact −log p(c | w) (full softmax, the tree).
    # Otherwise the model's conditional is softmax(u_c·h + conditional_log_bias()[c]).
    normalised: bool = False

    def conditional_log_bias(self) -> Array | None:
        """b(c) such that the model's conditional is softmax(u_c·h + b(c)); None: no bias."""
        return None

    def heldout_nll(self, params: Params, pairs: Batch, raw: bool = False) -> Array:
        """Σ mask · −log p(output | input) over a pairs batch, under the model's normalised
        conditional (the yardstick of ``evaluation/heldout.py``); ``raw``: without the
        implied bias. A normalised layer's own loss is that already."""
        if not self.normalised:
            raise NotImplementedError(f"{type(self).__name__} defines no normalised conditional")
        return self.loss(params, pairs, None)[1]["sum"]

    def describe(self) -> str:
        """A few words for the run summary, e.g. ``ns (K=5, window negatives)``."""
        return type(self).__name__

    # -- noise: none by default -------------------------------------------------------------
    noise_per_row: bool = True

    def sample_noise(self, key: Array, rows: int) -> Array | None:
        return None

    # -- to implement ---------------------------------------------------------------------
    def lookups(self, batch: Batch, noise: Array | None) -> dict[str, Lookup]:
        raise NotImplementedError

    def example_losses(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                       batch: Batch) -> tuple[Array, Array]:
        raise NotImplementedError

    # -- the pure loss ----------------------------------------------------------------------
    def summed_loss(self, rows: Mapping[str, Array], lookups: Mapping[str, Lookup],
                    batch: Batch) -> tuple[Array, Array]:
        """(Σ weight·loss, Σ weight) over the batch: what the trainer differentiates."""
        losses, weights = self.example_losses(rows, lookups, batch)
        return jnp.sum(losses * weights), jnp.sum(weights)

    def loss(self, params: Params, batch: Batch, key: Array) -> tuple[Array, dict[str, Any]]:
        """The pure loss.

        Args:
          params: ``{"w_in": [V, D], ...}`` and the leaves of ``param_specs``.
          batch: a pairs batch ``{input [B], output [B], mask [B]}`` or a windows batch
            ``{centre [B], context [B, C], mask [B, C]}`` (``layout`` says which).
          key: the PRNG key of the step's noise (unused by full and hierarchical softmax).
        Returns:
          (mean loss over the unmasked examples, ``{"sum": Σ weight·loss, "count": Σ weight}``).
        """
        lookups = self.lookups(batch, self.sample_noise(key, self.batch_examples(batch)))
        total, count = self.summed_loss(gather_rows(params, lookups), lookups, batch)
        return total / jnp.maximum(count, 1.0), {"sum": total, "count": count}

    __call__ = loss


class OutputTableLayer(OutputLayer):
    """A layer with one output vector per word, ``w_out [V, D]``, zero at the start (word2vec's
    ``syn1neg``), whose logits are u_c·h: negative sampling, NCE, sampled softmax, BlackOut
    and the full softmax."""

    def param_specs(self, vocab_size: int, dim: int) -> dict[str, ParamSpec]:
        return {"w_out": ParamSpec((vocab_size, dim))}

    def heldout_nll(self, params: Params, pairs: Batch, raw: bool = False) -> Array:
        """softmax(u_c·h + b(c)) over the whole vocabulary, b the implied bias (none if raw)."""
        if self.normalised and not raw:
            return super().heldout_nll(params, pairs)
        h_BxD = jnp.take(params["w_in"], pairs["input"], axis=0)
        logits_BxV = h_BxD @ params["w_out"].T
        bias_V = None if raw else self.conditional_log_bias()
        if bias_V is not None:
            logits_BxV = logits_BxV + bias_V[None, :]
        target_B = jnp.take_along_axis(logits_BxV, pairs["output"][:, None], axis=1)[:, 0]
        return jnp.sum((jax.nn.logsumexp(logits_BxV, axis=1) - target_B) * pairs["mask"])
