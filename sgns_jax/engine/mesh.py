"""Data parallelism: a 1-D ``data`` mesh, and placing host chunks and state on it.

The ``jax.shard_map`` over this mesh (the successor of ``jax.pmap``) is in ``runners.py``
(``ShardMapped``). Several processes (``jax.distributed``) form one mesh: each process feeds its
slice of every global batch (``jax.make_array_from_process_local_data``) and holds a replica
of the tables.
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


def pad_rows(params: dict, devices: int) -> dict:
    """Zero rows appended so every leaf splits evenly by rows over ``devices`` (never looked
    up)."""
    import jax.numpy as jnp

    return {k: jnp.pad(v, ((0, -v.shape[0] % devices),) + ((0, 0),) * (v.ndim - 1))
            for k, v in params.items()}


def shard_rows(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    """Place [rows, D] tables split by rows over the mesh (single process)."""
    return jax.device_put(tree, _sharding(mesh, jax.sharding.PartitionSpec(DATA_AXIS)))


def check_batch_divisible(batch_size: int, devices: int) -> None:
    if batch_size % devices:
        raise ConfigError(f"batch_size {batch_size} is not divisible by the {devices} devices")
