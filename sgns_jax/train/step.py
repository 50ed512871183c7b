"""The pure training step and the fused, jitted chunk of steps.

``train_step(state, batch, key, lr)`` is a pure function. ``make_train_chunk`` fuses
``steps_per_chunk`` of them with ``lax.scan`` into one jitted call over a ``[T, ...]`` chunk,
with the state donated; step t's key is ``fold_in(root_key, global_step)``.

Two update paths:

* ``sparse`` (default): gradients with respect to the *gathered rows* only, applied with one
  scatter-add per table per step (all of a table's row gradients are concatenated first: two
  chained scatters into one donated table make XLA copy the whole table). Exact SGD. For a
  stateful optax transform (adagrad, adam, ...) this is the row-wise **lazy** variant: the
  touched rows' gradients are summed per unique row, their optimizer-state rows are gathered,
  updated by the optax transform, and scattered back; rows not in the batch keep stale state
  (as TensorFlow's LazyAdam / PyTorch's SparseAdam do).
* ``dense`` (reference): ``jax.grad`` over the whole tables and a plain optax update; any
  optax transform, exact, O(V·D) per step — for small vocabularies and experiments.

The gradient is that of the **sum** of the per-example losses, so the learning rate is per pair
as in word2vec: a batch of B pairs applies B word2vec updates at once. Large batches therefore
stack many updates on frequent rows in one step; see the README for the stable ranges.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sgns_jax.losses.base import Lookup, OutputLayer, gather_rows
from sgns_jax.train.parallel import DATA_AXIS

Array = jax.Array
Params = dict[str, Array]


class TrainState(NamedTuple):
    params: Params      # {"w_in": [V, D], "w_out": [V or V-1, D]}
    opt_state: Any      # {table: optax state} (sparse) or optax state of the params (dense)
    step: Array         # int32 scalar, global step count


def init_params(layer: OutputLayer, vocab_size: int, dim: int, key: Array,
                init_scale: float = 1.0) -> Params:
    """w_in uniform in (−init_scale/D, init_scale/D), output vectors zero (word2vec's syn1neg
    and syn1). ``init_scale`` 1 is gensim's range, 0.5 word2vec.c's (see ModelConfig)."""
    rows = layer.table_rows(vocab_size)
    w_in = (jax.random.uniform(key, (rows["w_in"], dim), jnp.float32) * 2 - 1) * (init_scale / dim)
    return {"w_in": w_in, "w_out": jnp.zeros((rows["w_out"], dim), jnp.float32)}


def init_state(params: Params, transform: optax.GradientTransformation, path: str) -> TrainState:
    if path == "dense":
        opt_state = transform.init(params)
    else:
        opt_state = {name: transform.init(table) for name, table in params.items()}
    return TrainState(params, opt_state, jnp.zeros((), jnp.int32))


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
    them (the log-sigmoid's custom JVP uses σ only), so ``make_train_chunk`` reports the loss of
    each chunk's first step only.
    """
    if report:
        return jax.value_and_grad(total, has_aux=True)(rows)
    zero = jnp.zeros((), jnp.float32)
    return (zero, zero), jax.grad(lambda r: total(r)[0])(rows)


def _group_by_table(lookups, grads, params):
    """Per table: (ids [N], row grads [N, D]) concatenated over roles, and any dense grad."""
    sparse: dict[str, tuple[list, list]] = {}
    dense: dict[str, Array] = {}
    for role, look in lookups.items():
        g = grads[role]
        if look.ids is None:
            dense[look.table] = dense.get(look.table, 0) + g
        else:
            d = params[look.table].shape[1]
            ids, gs = sparse.setdefault(look.table, ([], []))
            ids.append(look.ids.reshape(-1))
            gs.append(g.reshape(-1, d))
    return ({t: (jnp.concatenate(i), jnp.concatenate(g)) for t, (i, g) in sparse.items()}, dense)


def _lazy_update(transform, table, table_state, ids, grads, lr):
    """Optax on the unique touched rows only; state rows gathered, updated, scattered back."""
    v = table.shape[0]
    n = ids.shape[0]
    uids, inverse = jnp.unique(ids, size=n, fill_value=v, return_inverse=True)
    g_rows = jax.ops.segment_sum(grads, inverse.reshape(-1), num_segments=n)

    def is_rows(x):
        return hasattr(x, "ndim") and x.ndim >= 1 and x.shape[0] == v

    state_rows = jax.tree.map(lambda x: jnp.take(x, uids, axis=0, mode="clip") if is_rows(x) else x,
                              table_state)
    p_rows = jnp.take(table, uids, axis=0, mode="clip")
    updates, new_rows = transform.update(g_rows, state_rows, p_rows)
    new_state = jax.tree.map(
        lambda full, rows: full.at[uids].set(rows, mode="drop") if is_rows(full) else rows,
        table_state, new_rows)
    return table.at[uids].add(-lr * updates, mode="drop"), new_state


def sharded_gather(params: Params, lookups: Mapping[str, Lookup], axis: str) -> dict[str, Array]:
    """Rows of vocabulary-sharded tables: each device holds rows [i·n, (i+1)·n) of every table,
    looks up the ids it owns (zeros elsewhere), and a ``psum`` hands every device the full rows
    (traffic ∝ the rows looked up, not V·D)."""
    out = {}
    for role, look in lookups.items():
        table = params[look.table]
        rows = jnp.take(table, owned_ids(look.ids, table.shape[0], axis), axis=0, mode="fill",
                        fill_value=0.0)
        out[role] = jax.lax.psum(rows, axis)
    return out


def owned_ids(ids: Array, shard_rows: int, axis: str) -> Array:
    """Global ids → rows of this device's shard; ids another device owns become ``shard_rows``
    (out of range: gathers fill zeros, scatters drop them)."""
    local = ids - jax.lax.axis_index(axis) * shard_rows
    return jnp.where((local >= 0) & (local < shard_rows), local, shard_rows)


def vocab_sharded_step(state: TrainState, batch: Mapping[str, Array], key: Array, lr: Array, *,
                       layer: OutputLayer, axis_name: str, report_loss: bool = True
                       ) -> tuple[TrainState, Array, Array]:
    """SGD step with the tables' rows partitioned over ``axis_name`` (model parallelism).

    Every device sees the whole batch and the same noise, computes the same row gradients from
    the psum-gathered rows, and scatter-adds those of the rows it owns into its shard (ids it
    does not own fall out of range and are dropped). Memory per device: V·D / devices.
    """
    noise = layer.sample_noise(key, layer.batch_rows(batch))
    lookups = layer.lookups(batch, noise)
    (loss_sum, count), grads = _loss_and_grads(
        lambda rows: layer.summed_loss(rows, lookups, batch),
        sharded_gather(state.params, lookups, axis_name), report_loss)
    sparse, _ = _group_by_table(lookups, grads, state.params)
    new_params = dict(state.params)
    for table, (ids, g) in sparse.items():
        local = owned_ids(ids, new_params[table].shape[0], axis_name)
        new_params[table] = new_params[table].at[local].add(-lr * g, mode="drop")
    return TrainState(new_params, state.opt_state, state.step + 1), loss_sum, count


def train_step(state: TrainState, batch: Mapping[str, Array], key: Array, lr: Array, *,
               layer: OutputLayer, transform: optax.GradientTransformation, path: str = "sparse",
               stateless: bool = True, axis_name: str | None = None,
               report_loss: bool = True) -> tuple[TrainState, Array, Array]:
    """One update. Returns the new state, the batch's loss sum and its example count (both
    zero unless ``report_loss``; the loss is that of the parameters before the update).

    ``transform`` scales gradients without the learning rate (``optax.identity()`` for SGD,
    ``optax.scale_by_adam()``, ...); ``lr`` is applied here, from the word-driven schedule.
    ``stateless`` marks transforms whose update is linear and stateless (SGD), for which the
    sparse path scatter-adds the raw row gradients, duplicates included — exact SGD.

    With ``axis_name`` (inside ``shard_map`` over a data axis, ``check_vma=False``), ``batch`` is
    this device's shard: the sparse path all-gathers (ids, row gradients) — traffic proportional
    to the batch — and every replica applies the same scatter-add; dense gradients are summed
    with ``psum``. Gradients here are local sums, never pre-reduced, so nothing is counted twice.
    """
    params = state.params
    noise = step_noise(layer, key, layer.batch_rows(batch), axis_name)
    lookups = layer.lookups(batch, noise)

    def total(rows):
        return layer.summed_loss(rows, lookups, batch)

    def reduce(x):
        return x if axis_name is None else jax.lax.psum(x, axis_name)

    if path == "dense":
        (loss_sum, count), grads = _loss_and_grads(
            lambda p: total(gather_rows(p, lookups)), params, report_loss)
        grads = jax.tree.map(reduce, grads)
        updates, opt_state = transform.update(grads, state.opt_state, params)
        params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
        return TrainState(params, opt_state, state.step + 1), reduce(loss_sum), reduce(count)

    (loss_sum, count), grads = _loss_and_grads(total, gather_rows(params, lookups), report_loss)
    sparse, dense = _group_by_table(lookups, grads, params)
    new_params, new_opt = dict(params), dict(state.opt_state)
    for table, g in dense.items():
        g = reduce(g)
        updates, new_opt[table] = transform.update(g, state.opt_state[table], params[table])
        new_params[table] = new_params[table] - lr * updates
    for table, (ids, g) in sparse.items():
        if axis_name is not None:
            ids = jax.lax.all_gather(ids, axis_name, tiled=True)
            g = jax.lax.all_gather(g, axis_name, tiled=True)
        if stateless:
            new_params[table] = new_params[table].at[ids].add(-lr * g)
        else:
            new_params[table], new_opt[table] = _lazy_update(
                transform, new_params[table], new_opt[table], ids, g, lr)
    return TrainState(new_params, new_opt, state.step + 1), reduce(loss_sum), reduce(count)


def make_train_chunk(layer: OutputLayer, transform: optax.GradientTransformation,
                     schedule: Callable[[Array], Array], *, path: str = "sparse",
                     stateless: bool = True, mesh: jax.sharding.Mesh | None = None,
                     shard_vocab: bool = False) -> Callable:
    """``chunk(state, arrays, root_key_data) -> (state, loss_sum, count)``, jitted, state donated.

    ``loss_sum`` and ``count`` are those of the chunk's **first** step only (a 1-in-T sample
    of the batches; computing every step's loss value costs up to 20% of the step).

    ``root_key_data`` is ``jax.random.key_data(root_key)`` (plain uint32, so it can be placed
    on a multi-process mesh like any array).

    ``arrays`` holds ``[T, ...]`` batches plus ``words`` [T] (words read before each step),
    from which ``schedule`` gives each step's learning rate. With a ``mesh`` of more than one
    device the batches are split over its ``data`` axis (axis 1 of every batch array) with
    ``jax.shard_map``; the state stays replicated. With ``shard_vocab`` the tables' rows are
    split over the mesh instead and every device sees the whole batch (SGD on the sparse path
    only; each table needs a multiple of the device count rows, see ``pad_rows``).
    """
    axis_name = DATA_AXIS if mesh is not None and mesh.size > 1 and not shard_vocab else None

    def chunk(state: TrainState, arrays: Mapping[str, Array], root_key_data: Array):
        root_key = jax.random.wrap_key_data(root_key_data)

        def step(state, xs, report):
            batch = {k: v for k, v in xs.items() if k != "words"}
            key = jax.random.fold_in(root_key, state.step)
            if shard_vocab:
                return vocab_sharded_step(state, batch, key, schedule(xs["words"]), layer=layer,
                                          axis_name=DATA_AXIS, report_loss=report)
            return train_step(state, batch, key, schedule(xs["words"]), layer=layer,
                              transform=transform, path=path, stateless=stateless,
                              axis_name=axis_name, report_loss=report)

        # Step 0 with the loss value (a chunk's padding is at its end, so step 0 always has
        # examples), then steps 1..T-1 without it. A static split: a lax.cond inside the scan
        # body serialised the step's small ops on the CPU.
        state, loss_sum, count = step(state, jax.tree.map(lambda x: x[0], arrays), True)
        state, _ = jax.lax.scan(lambda s, xs: (step(s, xs, False)[0], None), state,
                                jax.tree.map(lambda x: x[1:], arrays))
        return state, loss_sum, count

    if shard_vocab and mesh is None:
        raise ValueError("shard_vocab needs a mesh")
    if axis_name is None and not shard_vocab:
        return jax.jit(chunk, donate_argnums=(0,))

    P = jax.sharding.PartitionSpec

    if shard_vocab:
        def vocab_sharded(state, arrays, root_key):
            state_spec = TrainState({k: P(DATA_AXIS) for k in state.params},
                                    jax.tree.map(lambda _: P(), state.opt_state), P())
            f = jax.shard_map(chunk, mesh=mesh, in_specs=(state_spec, P(), P()),
                              out_specs=(state_spec, P(), P()), check_vma=False)
            return f(state, arrays, root_key)

        return jax.jit(vocab_sharded, donate_argnums=(0,))

    def sharded(state, arrays, root_key):
        specs = {k: P() if k == "words" else P(None, DATA_AXIS) for k in arrays}
        # check_vma=False: gradients of replicated values come back as local (unsummed)
        # contributions, and train_step reduces each exactly once.
        f = jax.shard_map(chunk, mesh=mesh, in_specs=(P(), specs, P()), out_specs=(P(), P(), P()),
                          check_vma=False)
        return f(state, arrays, root_key)

    return jax.jit(sharded, donate_argnums=(0,))

