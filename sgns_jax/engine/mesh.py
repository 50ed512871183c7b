"""Data parallelism: a 1-D ``data`` mesh, and placing host chunks and state on it.

The ``jax.shard_map`` over this mesh (the successor of ``jax.pmap``) is in ``runners.py``
(``ShardMapped``). Several processes (``jax.distributed``) form one mesh: each process feeds its
slice of every global batch (``jax.make_array_from_process_local_data``) and holds a replica
of the tables (``data``), or the rows of the tables its devices own (``vocab``).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from sgns_jax.errors import ConfigError

DATA_AXIS = "data"


def data_mesh(devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh over ``devices`` devices (default: all, across processes), axis ``data``."""
    n = jax.device_count() if devices is None else devices
    if n < 1 or n > jax.device_count():
        raise ConfigError(f"asked for {n} devices, {jax.device_count()} available")
    if jax.process_count() > 1 and n != jax.device_count():
        raise ConfigError("with several processes, train on all their devices (omit --devices)")
    return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Explicit,),
                         devices=jax.devices()[:n])


def _sharding(mesh, spec):
    return jax.sharding.NamedSharding(mesh, spec)


def shard_chunk(arrays: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh | None) -> dict[str, Any]:
    """Place a host chunk: batch arrays split along axis 1 (the batch), ``words`` replicated.

    With several processes, every process builds the same global chunk (the pipeline is
    deterministic) and contributes only its own slice of the batch axis.
    """
    if mesh is None:
        return dict(arrays)
    P = jax.sharding.PartitionSpec
    out = {}
    procs, me = jax.process_count(), jax.process_index()
    for k, v in arrays.items():
        spec = P() if k == "words" else P(None, DATA_AXIS)
        if procs == 1:
            out[k] = jax.device_put(v, _sharding(mesh, spec))
        else:
            if k != "words":
                per = v.shape[1] // procs
                v = v[:, me * per:(me + 1) * per]
            out[k] = jax.make_array_from_process_local_data(_sharding(mesh, spec), v)
    return out


def replicate(tree: Any, mesh: jax.sharding.Mesh | None) -> Any:
    """Put every leaf on every device of the mesh (identical values on every process)."""
    if mesh is None:
        return tree
    sharding = _sharding(mesh, jax.sharding.PartitionSpec())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def fetch(x: Any) -> np.ndarray:
    """A replicated (or single-device) array as numpy, on any process."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_shards[0].data)
    return np.asarray(x)


def split_across_processes(x: Any) -> bool:
    """Whether ``x`` is an array whose parts live on several processes (not a replica)."""
    return isinstance(x, jax.Array) and not x.is_fully_addressable and not x.sharding.is_fully_replicated


def fetch_whole(x: Any) -> np.ndarray:
    """The whole of an array as numpy on every process: a table whose rows are split across
    processes is gathered (the run's final vectors; checkpoints write each process's rows
    instead, ``train/checkpoint.py``)."""
    if split_across_processes(x):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return fetch(x)


def shard_rows(params: dict, mesh: jax.sharding.Mesh) -> dict:
    """Place [rows, ...] leaves split by rows over the mesh, zero rows appended so every device
    holds the same count (padding: never looked up). A leaf may be any array-like that slices
    by rows (numpy, jax, or a checkpoint's ``RowShards``): each device's rows are read from it
    alone, so with several processes each reads only the rows its devices hold."""
    sharding = _sharding(mesh, jax.sharding.PartitionSpec(DATA_AXIS))

    def place(x):
        rows = x.shape[0]
        padded = (rows + (-rows % mesh.size),) + tuple(x.shape[1:])

        def rows_of(index):
            start, stop, _ = index[0].indices(padded[0])
            part = np.zeros((stop - start,) + padded[1:], x.dtype)
            if min(stop, rows) > start:
                part[:min(stop, rows) - start] = np.asarray(x[start:min(stop, rows)])
            return part

        return jax.make_array_from_callback(padded, sharding, rows_of)

    return {k: place(v) for k, v in params.items()}


def check_batch_divisible(batch_size: int, devices: int) -> None:
    if batch_size % devices:
        raise ConfigError(f"batch_size {batch_size} is not divisible by the {devices} devices")
