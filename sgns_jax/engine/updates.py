"""Update rules: how a step's gradients change the tables, in optax's shape.

Each rule is a pair of pure functions plus what it needs from the step:

* ``init(params) -> opt_state``;
* ``gather(params, lookups, axis_name) -> rows``: the rows the loss reads
  (``rows[role] = params[table][ids]``);
* ``apply(params, opt_state, lookups, grads, lr, axis_name) -> (params, opt_state)``: the
  update, from the gradients of the summed loss with respect to the gathered rows (or, with
  ``table_gradients``, to the whole tables).

Rules: :class:`SparseSGD` (word2vec's update: one scatter-add per table, exact SGD),
:class:`LazyOptax` (adagrad/adam on the touched rows only), :class:`DenseOptax` (any optax
transform on whole tables, the O(V·D) reference) and :class:`VocabShardedSGD` (tables split by
rows over a mesh axis). With ``axis_name`` (inside ``shard_map`` over a data axis,
``check_vma=False``) gradients are this device's local sums: sparse row gradients are
all-gathered with their ids — traffic proportional to the batch — and dense ones summed with
``psum``, each exactly once.

The learning rate is applied here, from the word-driven schedule; ``lr`` multiplies the
gradient of the *sum* of per-example losses, so it is word2vec's per-pair rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax

from sgns_jax.losses.base import Lookup, gather_rows

Array = jax.Array
Params = dict[str, Array]


def _psum(x: Any, axis_name: str | None) -> Any:
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def group_by_table(lookups: Mapping[str, Lookup], grads: Mapping[str, Array], params: Params
                   ) -> tuple[dict[str, tuple[Array, Array]], dict[str, Array]]:
    """Per table: (ids [N], row grads [N, D]) concatenated over roles — one scatter per table
    (two chained scatters into one donated table made XLA copy the whole table) — and the
    gradients of tables looked up whole (``ids=None``)."""
    sparse: dict[str, tuple[list, list]] = {}
    dense: dict[str, Array] = {}
    for role, look in lookups.items():
        g = grads[role]
        if look.ids is None:
            dense[look.table] = dense.get(look.table, 0) + g
        else:
            row_shape = params[look.table].shape[1:]
            ids, gs = sparse.setdefault(look.table, ([], []))
            ids.append(look.ids.reshape(-1))
            gs.append(g.reshape(-1, *row_shape))
    return ({t: (jnp.concatenate(i), jnp.concatenate(g)) for t, (i, g) in sparse.items()}, dense)


def _all_gather(ids: Array, g: Array, axis_name: str | None) -> tuple[Array, Array]:
    if axis_name is None:
        return ids, g
    return (jax.lax.all_gather(ids, axis_name, tiled=True),
            jax.lax.all_gather(g, axis_name, tiled=True))


@dataclass(frozen=True)
class SparseSGD:
    """word2vec's update: every row gradient scatter-added at −lr, duplicates included."""

    table_gradients = False
    splits_batch = True  # under a data axis, each device holds a shard of the batch

    def init(self, params: Params) -> dict:
        return {name: () for name in params}

    def gather(self, params: Params, lookups: Mapping[str, Lookup], axis_name: str | None) -> dict:
        return gather_rows(params, lookups)

    def apply(self, params, opt_state, lookups, grads, lr, axis_name=None):
        sparse, dense = group_by_table(lookups, grads, params)
        new = dict(params)
        for table, g in dense.items():
            new[table] = new[table] - lr * _psum(g, axis_name)
        for table, (ids, g) in sparse.items():
            ids, g = _all_gather(ids, g, axis_name)
            new[table] = new[table].at[ids].add(-lr * g)
        return new, opt_state


@dataclass(frozen=True)
class LazyOptax:
    """A stateful optax transform on the touched rows only: their gradients summed per unique
    row, their state rows gathered, updated and scattered back; untouched rows keep stale state
    (TensorFlow's LazyAdam, PyTorch's SparseAdam). Tables looked up whole get the plain update."""

    transform: optax.GradientTransformation
    table_gradients = False
    splits_batch = True

    def init(self, params: Params) -> dict:
        return {name: self.transform.init(table) for name, table in params.items()}

    def gather(self, params, lookups, axis_name):
        return gather_rows(params, lookups)

    def apply(self, params, opt_state, lookups, grads, lr, axis_name=None):
        sparse, dense = group_by_table(lookups, grads, params)
        new, new_opt = dict(params), dict(opt_state)
        for table, g in dense.items():
            updates, new_opt[table] = self.transform.update(_psum(g, axis_name), opt_state[table],
                                                            params[table])
            new[table] = new[table] - lr * updates
        for table, (ids, g) in sparse.items():
            ids, g = _all_gather(ids, g, axis_name)
            new[table], new_opt[table] = self._rows(new[table], new_opt[table], ids, g, lr)
        return new, new_opt

    def _rows(self, table, table_state, ids, grads, lr):
        v, n = table.shape[0], ids.shape[0]
        uids, inverse = jnp.unique(ids, size=n, fill_value=v, return_inverse=True)
        g_rows = jax.ops.segment_sum(grads, inverse.reshape(-1), num_segments=n)

        def is_rows(x):
            return hasattr(x, "ndim") and x.ndim >= 1 and x.shape[0] == v

        state_rows = jax.tree.map(lambda x: jnp.take(x, uids, axis=0, mode="clip") if is_rows(x) else x,
                                  table_state)
        p_rows = jnp.take(table, uids, axis=0, mode="clip")
        updates, new_rows = self.transform.update(g_rows, state_rows, p_rows)
        new_state = jax.tree.map(
            lambda full, rows: full.at[uids].set(rows, mode="drop") if is_rows(full) else rows,
            table_state, new_rows)
        return table.at[uids].add(-lr * updates, mode="drop"), new_state


@dataclass(frozen=True)
class DenseOptax:
    """Any optax transform on the whole tables (``jax.grad`` through the gathers): exact for
    every optimizer, O(V·D) per step — the reference the sparse rules are tested against."""

    transform: optax.GradientTransformation
    table_gradients = True
    splits_batch = True

    def init(self, params: Params) -> Any:
        return self.transform.init(params)

    def gather(self, params, lookups, axis_name):
        return gather_rows(params, lookups)

    def apply(self, params, opt_state, lookups, grads, lr, axis_name=None):
        grads = jax.tree.map(lambda g: _psum(g, axis_name), grads)
        updates, opt_state = self.transform.update(grads, opt_state, params)
        return jax.tree.map(lambda p, u: p - lr * u, params, updates), opt_state


def owned_ids(ids: Array, shard_rows: int, axis: str) -> Array:
    """Global ids → rows of this device's shard; ids another device owns become ``shard_rows``
    (out of range: gathers fill zeros, scatters drop them)."""
    local = ids - jax.lax.axis_index(axis) * shard_rows
    return jnp.where((local >= 0) & (local < shard_rows), local, shard_rows)


@dataclass(frozen=True)
class VocabShardedSGD:
    """SGD with the tables' rows partitioned over ``axis_name`` (model parallelism): each device
    holds rows [i·n, (i+1)·n) of every table, looks up the ids it owns (zeros elsewhere), a
    ``psum`` hands every device the full rows (traffic ∝ the rows looked up, not V·D), and each
    device scatter-adds the gradients of the rows it owns. Every device sees the whole batch."""

    table_gradients = False
    splits_batch = False

    def init(self, params: Params) -> dict:
        return {name: () for name in params}

    def gather(self, params, lookups, axis_name):
        out = {}
        for role, look in lookups.items():
            table = params[look.table]
            rows = jnp.take(table, owned_ids(look.ids, table.shape[0], axis_name), axis=0,
                            mode="fill", fill_value=0.0)
            out[role] = jax.lax.psum(rows, axis_name)
        return out

    def apply(self, params, opt_state, lookups, grads, lr, axis_name=None):
        sparse, _ = group_by_table(lookups, grads, params)
        new = dict(params)
        for table, (ids, g) in sparse.items():
            local = owned_ids(ids, new[table].shape[0], axis_name)
            new[table] = new[table].at[local].add(-lr * g, mode="drop")
        return new, opt_state


TRANSFORMS = {"adagrad": lambda: optax.scale_by_rss(initial_accumulator_value=0.1),
              "adam": optax.scale_by_adam}


def make_update_rule(optimizer: str, update: str):
    """The rule for ``optimizer`` (sgd, adagrad, adam) and ``update`` (sparse, dense) on
    replicated tables (a runner that splits them picks its own: ``Runner.update_rule``)."""
    transform = optax.identity() if optimizer == "sgd" else TRANSFORMS[optimizer]()
    if update == "dense":
        return DenseOptax(transform)
    return SparseSGD() if optimizer == "sgd" else LazyOptax(transform)
