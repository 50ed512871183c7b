"""Runners: where and how the jitted chunks run — one per ``run.parallelism`` choice.

A runner places the state, compiles the chunk function before the clock starts, and trains
groups of chunks:

* ``place(state) -> state``; ``compile(state, arrays)``; ``run(state, chunks) -> (state,
  loss_sum, count)`` over ``chunks_per_call`` consecutive chunks; ``host_params(state)``.

:class:`SingleDevice` (one device), :class:`DataParallel` (``shard_map`` over a ``data`` mesh,
the batch split, the state replicated; many processes with ``jax.distributed``),
:class:`VocabSharded` (the tables' rows split over the mesh, model parallelism) and
:class:`Workers` (Hogwild-style streams, ``train/workers.py``). Each checks the settings it
cannot honour in ``check(cfg)`` and is built by ``build(cfg, layer, rule, schedule, spec,
devices, root_key_data)`` (``spec``: the run's :class:`~sgns_jax.data.batches.BatchSpec`;
``devices``: how many).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from sgns_jax.errors import ConfigError, SgnsError
from sgns_jax.losses.base import OutputLayer
from sgns_jax.train.parallel import (DATA_AXIS, check_batch_divisible, data_mesh, fetch,
                                     pad_rows, replicate, shard_chunk, shard_rows)
from sgns_jax.train.step import TrainState, chunk_steps
from sgns_jax.train.workers import WorkerStreams

P = jax.sharding.PartitionSpec
_DISTRIBUTED_STARTED = False


def start_distributed(run) -> None:
    """Join a multi-process run (``jax.distributed.initialize``) when a coordinator is given."""
    global _DISTRIBUTED_STARTED
    if run.coordinator and not _DISTRIBUTED_STARTED:
        jax.distributed.initialize(coordinator_address=run.coordinator,
                                   num_processes=run.num_processes, process_id=run.process_id)
        _DISTRIBUTED_STARTED = True


def cpu_devices(count: int) -> list[jax.Device]:
    """``count`` local devices; on the CPU, asks JAX for that many CPU devices first (possible
    only before JAX has run anything in this process)."""
    if count > 1 and jax.config.jax_num_cpu_devices < count:
        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:
            pass  # JAX already started; the check below says what to do
    devices = jax.local_devices()
    if len(devices) < count:
        raise SgnsError(f"{count} streams need {count} devices, this process has "
                        f"{len(devices)} {devices[0].platform} device(s); on the CPU start JAX with "
                        f"XLA_FLAGS=--xla_force_host_platform_device_count={count}")
    return devices[:count]


class SingleDevice:
    """The chunk jitted on the default device, its state donated."""

    chunks_per_call = 1

    @staticmethod
    def check(cfg) -> None:
        if (cfg.run.devices or 1) > 1:
            raise ConfigError("parallelism 'single' runs on one device; choose data, vocab or "
                              "workers for more")

    @classmethod
    def build(cls, cfg, layer, rule, schedule, spec, devices, root_key_data):
        return cls(jax.jit(chunk_steps(layer, rule, schedule), donate_argnums=(0,)), root_key_data)

    def __init__(self, chunk_fn: Callable, root_key_data: jax.Array):
        self.chunk_fn, self.root_key = chunk_fn, root_key_data

    def place(self, state: TrainState) -> TrainState:
        return state

    def place_arrays(self, arrays: Mapping[str, Any]) -> Mapping[str, Any]:
        return arrays

    def compile(self, state: TrainState, arrays: Mapping[str, Any]) -> None:
        self.chunk_fn.lower(state, self.place_arrays(arrays), self.root_key).compile()

    def run(self, state: TrainState, chunks: Sequence[Mapping[str, Any]]):
        return self.chunk_fn(state, self.place_arrays(chunks[0]), self.root_key)

    def host_params(self, state: TrainState, shapes: Mapping[str, tuple]) -> dict[str, np.ndarray]:
        """The parameter leaves as numpy arrays of their declared ``shapes`` (without the rows
        a vocabulary-sharded run padded on)."""
        return {k: fetch(v)[:shapes[k][0]] for k, v in state.params.items()}


class DataParallel(SingleDevice):
    """The batch split over a 1-D ``data`` mesh (``jax.shard_map``), the state replicated; every
    device draws the global batch's noise, so 1, 2, 4 or 8 devices give the same update."""

    @staticmethod
    def check(cfg) -> None:
        pass  # batch divisibility is checked at build time, against the device count

    @classmethod
    def build(cls, cfg, layer, rule, schedule, spec, devices, root_key_data):
        mesh = data_mesh(devices)
        check_batch_divisible(spec.batch_size, mesh.size)
        chunk = chunk_steps(layer, rule, schedule, axis_name=DATA_AXIS)

        def sharded(state, arrays, root_key):
            specs = {k: P() if k == "words" else P(None, DATA_AXIS) for k in arrays}
            # check_vma=False: gradients of replicated values come back as local (unsummed)
            # contributions, and the update rule reduces each exactly once.
            f = jax.shard_map(chunk, mesh=mesh, in_specs=(P(), specs, P()),
                              out_specs=(P(), P(), P()), check_vma=False)
            return f(state, arrays, root_key)

        return cls(jax.jit(sharded, donate_argnums=(0,)), replicate(root_key_data, mesh), mesh)

    def __init__(self, chunk_fn, root_key_data, mesh):
        super().__init__(chunk_fn, root_key_data)
        self.mesh = mesh

    def place(self, state):
        return replicate(state, self.mesh)

    def place_arrays(self, arrays):
        return shard_chunk(arrays, self.mesh)


class VocabSharded(SingleDevice):
    """The tables' rows split over the mesh: each device holds V/N rows (plus padding to a
    multiple of N) and sees the whole batch (``train/updates.VocabShardedSGD``)."""

    @staticmethod
    def check(cfg) -> None:
        if cfg.optim.optimizer != "sgd" or cfg.optim.update != "sparse":
            raise ConfigError("parallelism 'vocab' needs optimizer sgd and the sparse update")
        if cfg.run.coordinator:
            raise ConfigError("parallelism 'vocab' runs in one process")

    @classmethod
    def build(cls, cfg, layer, rule, schedule, spec, devices, root_key_data):
        if any(look_all for look_all in _whole_table_roles(layer)):
            raise ConfigError("parallelism 'vocab' needs a sampled or tree loss: this loss reads "
                              "whole tables")
        mesh = data_mesh(devices)
        chunk = chunk_steps(layer, rule, schedule, axis_name=DATA_AXIS)

        def sharded(state, arrays, root_key):
            spec = TrainState({k: P(DATA_AXIS) for k in state.params},
                              jax.tree.map(lambda _: P(), state.opt_state), P())
            f = jax.shard_map(chunk, mesh=mesh, in_specs=(spec, P(), P()),
                              out_specs=(spec, P(), P()), check_vma=False)
            return f(state, arrays, root_key)

        return cls(jax.jit(sharded, donate_argnums=(0,)), replicate(root_key_data, mesh), mesh)

    def __init__(self, chunk_fn, root_key_data, mesh):
        super().__init__(chunk_fn, root_key_data)
        self.mesh = mesh

    def place(self, state):
        devices = self.mesh.size
        return state._replace(params=shard_rows(pad_rows(state.params, devices), self.mesh))

    def place_arrays(self, arrays):
        return dict(arrays)


def _whole_table_roles(layer: OutputLayer) -> list[bool]:
    """Whether each of the layer's lookups reads a whole table (ids None), from a tiny batch."""
    import jax.numpy as jnp

    batch = ({"input": jnp.zeros(1, jnp.int32), "output": jnp.zeros(1, jnp.int32),
              "mask": jnp.zeros(1)} if layer.layout == "pairs" else
             {"centre": jnp.zeros(1, jnp.int32), "context": jnp.zeros((1, 2), jnp.int32),
              "mask": jnp.zeros((1, 2))})
    noise = jax.eval_shape(lambda k: layer.sample_noise(k, 1), jax.random.key(0))
    noise = None if noise is None else jnp.zeros(noise.shape, noise.dtype)
    return [look.ids is None for look in layer.lookups(batch, noise).values()]


class Workers:
    """Hogwild-style worker streams, one per device (``train/workers.py``)."""

    @staticmethod
    def check(cfg) -> None:
        if cfg.optim.optimizer != "sgd":
            raise ConfigError("parallelism 'workers' needs optimizer sgd")
        if cfg.run.coordinator:
            raise ConfigError("parallelism 'workers' runs in one process")

    @classmethod
    def build(cls, cfg, layer, rule, schedule, spec, devices, root_key_data):
        chunk_fn = jax.jit(chunk_steps(layer, rule, schedule), donate_argnums=(0,))
        streams = WorkerStreams(chunk_fn, cpu_devices(devices), root_key_data,
                                spec.steps_per_chunk, cfg.run.merge_every)
        return cls(streams)

    def __init__(self, streams: WorkerStreams):
        self.streams = streams
        self.chunks_per_call = streams.chunks_per_round

    def place(self, state):
        return self.streams.place(state)

    def compile(self, state, arrays):
        self.streams.compile(state, arrays)

    def run(self, state, chunks):
        return self.streams.round(state, chunks)

    host_params = SingleDevice.host_params


RUNNERS = {"single": SingleDevice, "data": DataParallel, "vocab": VocabSharded, "workers": Workers}
