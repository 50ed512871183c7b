"""The pure training step, and a chunk of them fused with ``lax.scan``.

``train_step(state, batch, key, lr, layer=, rule=)`` is a pure function: the step's noise, the
rows its batch looks up, the gradient of the summed loss with respect to those rows (or the
whole tables, for the dense reference rule), and the rule's update (``engine/updates.py``).
``chunk_steps`` runs ``[T, ...]`` batches through it — step 0 with the loss value, the rest
without — and the runners (``engine/runners.py``) jit it, on one device or under ``shard_map``.
Step ``t``'s key is ``fold_in(root_key, global_step)``.

The gradient is that of the **sum** of the per-example losses, so the learning rate is per pair
as in word2vec: a batch of B pairs applies B word2vec updates at once. Large batches therefore
stack many updates on frequent rows in one step; see the README for the stable ranges.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from sgns_jax.errors import ConfigError
from sgns_jax.losses.base import RESERVED_NAMES, OutputLayer, ParamSpec, gather_rows

Array = jax.Array
Params = dict[str, Array]


class TrainState(NamedTuple):
    params: Params      # {"w_in": [V, D], **the output layer's leaves} (param_specs)
    opt_state: Any      # the update rule's state
    step: Array         # int32 scalar, global step count
    # {table: bool [rows]}: rows any update since it was cleared has touched; None: not kept.
    # Worker streams (engine/workers.py) merge only these rows.
    touched: Any = None


def param_specs(layer: OutputLayer, vocab_size: int, dim: int, init_scale: float = 1.0
                ) -> dict[str, ParamSpec]:
    """The model's parameter tree: the input embeddings ``w_in [V, D]``, common to every
    strategy, and the leaves the output layer declares."""
    own = layer.param_specs(vocab_size, dim)
    clash = RESERVED_NAMES & set(own)
    if clash:
        raise ConfigError(f"{type(layer).__name__} declares reserved parameter name(s) {sorted(clash)}")
    return {"w_in": ParamSpec((vocab_size, dim), "uniform", init_scale / dim), **own}


def init_params(layer: OutputLayer, vocab_size: int, dim: int, key: Array,
                init_scale: float = 1.0) -> Params:
    """w_in uniform in (−init_scale/D, init_scale/D), the layer's leaves as they declare (output
    vectors zero: word2vec's syn1neg and syn1). ``init_scale`` 1 is gensim's range, 0.5
    word2vec.c's (see ModelConfig). Row r of w_in depends on (key, r) only; the other leaves
    draw from keys split off ``key``, one per leaf in declaration order."""
    specs = param_specs(layer, vocab_size, dim, init_scale)
    w_in = specs.pop("w_in")
    v = w_in.shape[0]
    # A table of up to 4M floats is filled in one block: the loop costs more to compile than
    # to run there (docs/performance_notes.md).
    params = {"w_in": uniform_rows(key, v, dim, w_in.scale, v if v * dim <= 1 << 22 else 8192)}
    leaf_key = jax.random.split(key)[1]
    for i, (name, spec) in enumerate(specs.items()):
        if spec.init == "zeros":
            params[name] = jnp.zeros(spec.shape, jnp.float32)
        elif spec.init == "uniform":
            params[name] = jax.random.uniform(jax.random.fold_in(leaf_key, i), spec.shape,
                                              jnp.float32, -spec.scale, spec.scale)
        else:
            raise ValueError(f"unknown initialiser {spec.init!r} for {name}")
    return params


@partial(jax.jit, static_argnums=(1, 2, 4))
def uniform_rows(key: Array, rows: int, dim: int, bound: float = 1.0, block: int = 8192) -> Array:
    """[rows, dim] uniform in [−bound, bound); row r is ``(2·uniform(fold_in(key, r), (dim,)) − 1)
    · bound``, so a row's values depend on the seed and its index only, not on the vocabulary's
    size.

    Filled block by block in place: one ``uniform`` over a large table holds several table-
    sized temporaries (its 64-bit counters, then the affine map's) and is several times slower
    (docs/performance_notes.md); this holds nothing beyond the table. The last block is clamped
    to end at ``rows`` and recomputes the rows it overlaps, identically.
    """
    block = min(block, rows)
    if block == 0:
        return jnp.zeros((0, dim), jnp.float32)

    def block_rows(start):
        keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(start + jnp.arange(block))
        vals_BxD = jax.vmap(lambda k: jax.random.uniform(k, (dim,), jnp.float32))(keys) * 2 - 1
        return vals_BxD * bound

    if block == rows:  # one block: no loop (cheaper to compile)
        return block_rows(0)

    def fill(b, out_RxD):
        start = jnp.minimum(b * block, rows - block)
        return jax.lax.dynamic_update_slice(out_RxD, block_rows(start), (start, 0))

    return jax.lax.fori_loop(0, -(-rows // block), fill, jnp.zeros((rows, dim), jnp.float32))


def init_state(params: Params, rule) -> TrainState:
    return TrainState(params, rule.init(params), jnp.zeros((), jnp.int32))


def mark_touched(touched: Any, table: str, ids: Array | None) -> Any:
    """``touched`` with ``ids`` of ``table`` (all its rows when ``ids`` is None) set."""
    if touched is None:
        return None
    rows = touched[table]
    rows = jnp.ones_like(rows) if ids is None else rows.at[ids.reshape(-1)].set(True, mode="drop")
    return {**touched, table: rows}


def step_noise(layer: OutputLayer, key: Array, local_rows: int, axis_name: str | None) -> Array | None:
    """The step's noise for the *global* batch, and this device's part of it.

    Every device draws the same global noise from the same key and keeps its rows, so a
    data-parallel step sees exactly the noise of the single-device step.
    """
    n = 1 if axis_name is None else jax.lax.axis_size(axis_name)
    noise = layer.sample_noise(key, local_rows * n)
    if noise is None or n == 1 or not layer.noise_per_row:
        return noise
    start = jax.lax.axis_index(axis_name) * local_rows
    return jax.lax.dynamic_slice_in_dim(noise, start, local_rows, axis=0)


def _loss_and_grads(total: Callable, rows: Any, report: bool):
    """(loss sum, count) and the gradient of the loss sum with respect to ``rows``.

    The loss value is computed only where ``report`` is true (zeros elsewhere): its forward
    log-sigmoids cost about as much as the rest of the arithmetic, and the gradient never needs
    them (the log-sigmoid's custom JVP uses σ only), so a chunk reports its first step's loss.
    """
    if report:
        return jax.value_and_grad(total, has_aux=True)(rows)
    zero = jnp.zeros((), jnp.float32)
    return (zero, zero), jax.grad(lambda r: total(r)[0])(rows)


def train_step(state: TrainState, batch: Mapping[str, Array], key: Array, lr: Array, *,
               layer: OutputLayer, rule, axis_name: str | None = None,
               report_loss: bool = True) -> tuple[TrainState, Array, Array]:
    """One update. Returns the new state, the batch's loss sum and its example count (both
    zero unless ``report_loss``; the loss is that of the parameters before the update).

    With ``axis_name`` (inside ``shard_map``), ``batch`` is this device's shard of a data-
    parallel batch (the rule reduces the gradients), or — for a vocabulary-sharded rule — the
    whole batch with the tables' rows split over the axis.
    """
    batch_axis = axis_name if rule.splits_batch else None  # data parallel: the batch is split
    noise = step_noise(layer, key, layer.batch_examples(batch), batch_axis)
    lookups = layer.lookups(batch, noise)

    def total(rows):
        return layer.summed_loss(rows, lookups, batch)

    if rule.table_gradients:
        (loss_sum, count), grads = _loss_and_grads(
            lambda p: total(gather_rows(p, lookups)), state.params, report_loss)
    else:
        (loss_sum, count), grads = _loss_and_grads(
            total, rule.gather(state.params, lookups, axis_name), report_loss)
    params, opt_state = rule.apply(state.params, state.opt_state, lookups, grads, lr, axis_name)
    touched = state.touched
    for look in lookups.values():
        touched = mark_touched(touched, look.table, look.ids)
    if rule.table_gradients:
        for table in params:
            touched = mark_touched(touched, table, None)
    if batch_axis is not None:
        loss_sum, count = jax.lax.psum(loss_sum, batch_axis), jax.lax.psum(count, batch_axis)
    return TrainState(params, opt_state, state.step + 1, touched), loss_sum, count


def chunk_steps(layer: OutputLayer, rule, schedule: Callable[[Array], Array],
                axis_name: str | None = None) -> Callable:
    """``chunk(state, arrays, root_key_data) -> (state, loss_sum, count)``: the steps of one
    chunk, not yet jitted. ``arrays`` holds ``[T, ...]`` batches plus ``words`` [T] (words read
    before each step, for the schedule); ``root_key_data`` is ``jax.random.key_data(root)``
    (plain uint32, placeable on any mesh). ``loss_sum`` and ``count`` are the chunk's first
    step's (a 1-in-T sample: every step's loss value would cost a noticeable share of each step,
    docs/performance_notes.md)."""

    def chunk(state: TrainState, arrays: Mapping[str, Array], root_key_data: Array):
        root_key = jax.random.wrap_key_data(root_key_data)

        def step(state, xs, report):
            batch = {k: v for k, v in xs.items() if k != "words"}
            key = jax.random.fold_in(root_key, state.step)
            return train_step(state, batch, key, schedule(xs["words"]), layer=layer, rule=rule,
                              axis_name=axis_name, report_loss=report)

        # Step 0 with the loss value (a chunk's padding is at its end, so step 0 always has
        # examples), then steps 1..T-1 without it. A static split: a lax.cond inside the scan
        # body serialised the step's small ops on the CPU.
        state, loss_sum, count = step(state, jax.tree.map(lambda x: x[0], arrays), True)
        state, _ = jax.lax.scan(lambda s, xs: (step(s, xs, False)[0], None), state,
                                jax.tree.map(lambda x: x[1:], arrays))
        return state, loss_sum, count

    return chunk
