"""Runners: where and how the jitted chunks run — one per ``run.parallelism`` mode.

Each mode is a :class:`Runner` subclass registered in :data:`RUNNERS` under its ``name``, and
owns everything that varies with it: its one-line ``help`` (the CLI's choices and help read
them), the settings it refuses (``check``), the update rule it needs (``update_rule``), the
copies of the tables it keeps (``table_copies``, for the memory estimate), its line in the run
summary (``describe``), and whether it runs on CPU devices whatever the host's backend
(``cpu_only``, for the default batch size). :func:`choose` is the default policy when the
config leaves the mode open. A built runner places the state, compiles the chunk function
before the clock starts, and trains groups of chunks:

* ``place(state) -> state``; ``compile(state, arrays)``; ``run(state, chunks) -> (state,
  loss_sum, count)`` over ``chunks_per_call`` consecutive chunks; ``host_params(state)``.

Modes: ``single`` (one device), ``data`` and ``vocab`` (one :class:`ShardMapped` runner over a
1-D mesh: the batch split and the state replicated, or the tables' rows split and the batch
replicated; many processes with ``jax.distributed`` for both) and ``workers`` (Hogwild-style
streams, ``engine/workers.py``). Adding a mode is a subclass here and an entry in ``RUNNERS``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, ClassVar, Mapping, Sequence

import jax
import numpy as np

from sgns_jax.errors import ConfigError, SgnsError
from sgns_jax.losses.base import OutputLayer
from sgns_jax.engine.mesh import (DATA_AXIS, check_batch_divisible, data_mesh, fetch_whole,
                                   replicate, shard_chunk, shard_rows)
from sgns_jax.engine.step import TrainState, chunk_steps
from sgns_jax.data.batches import PIPELINES
from sgns_jax.data.device_batches import device_chunk_steps
from sgns_jax.engine.updates import VocabShardedSGD, make_update_rule
from sgns_jax.engine.workers import WorkerStreams

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


class Runner:
    """A parallelism mode (class level) and, once built, the runner of a run (instance)."""

    name: ClassVar[str]
    help: ClassVar[str]
    cpu_only: ClassVar[bool] = False  # runs on CPU devices on any host (the batch follows the CPU)
    chunks_per_call = 1

    pipelines: ClassVar[tuple[str, ...]] = ("host",)  # where this mode's batches can be made

    @classmethod
    def check(cls, cfg) -> None:
        """Raise ``ConfigError`` for settings this mode cannot honour."""

    @classmethod
    def check_pipeline(cls, cfg) -> None:
        if cfg.data.pipeline not in cls.pipelines:
            raise ConfigError(f"parallelism {cls.name!r} takes batches made on the "
                              f"{' or '.join(cls.pipelines)}, not --pipeline {cfg.data.pipeline}; "
                              "the device pipeline runs with parallelism single")

    @classmethod
    def update_rule(cls, cfg):
        return make_update_rule(cfg.optim.optimizer, cfg.optim.update)

    @classmethod
    def table_copies(cls, devices: int) -> int:
        """Copies of the parameter tables the run holds in memory."""
        return 1

    @classmethod
    def default_devices(cls) -> int:
        """The devices this mode uses when the config does not say."""
        return 1

    @classmethod
    def describe(cls, devices: int) -> str:
        raise NotImplementedError

    @classmethod
    def build(cls, cfg, layer, rule, schedule, spec, devices, root_key_data) -> "Runner":
        """The runner of a run (``spec``: its :class:`~sgns_jax.data.batches.BatchSpec`;
        ``devices``: how many)."""
        raise NotImplementedError

    def host_params(self, state: TrainState, shapes: Mapping[str, tuple]) -> dict[str, np.ndarray]:
        """The parameter leaves as numpy arrays of their declared ``shapes`` (without the rows
        a vocabulary-sharded run padded on)."""
        return {k: fetch_whole(v)[:shapes[k][0]] for k, v in state.params.items()}


class SingleDevice(Runner):
    """The chunk jitted on the default device, its state donated."""

    name, help = "single", "one stream on one device"
    pipelines = PIPELINES

    @classmethod
    def check(cls, cfg) -> None:
        if (cfg.run.devices or 1) > 1:
            raise ConfigError("parallelism 'single' runs on one device; choose another mode for more "
                              f"({', '.join(n for n in RUNNERS if n != cls.name)})")

    @classmethod
    def describe(cls, devices: int) -> str:
        return "one stream"

    @classmethod
    def build(cls, cfg, layer, rule, schedule, spec, devices, root_key_data):
        """``root_key_data``: the run's root key data, or for the device pipeline its constants
        (``device_batches.device_consts``)."""
        if spec.pipeline == "device":
            chunk = device_chunk_steps(layer, rule, schedule, batch_size=spec.batch_size,
                                       window=spec.window, sentence_words=spec.sentence_words)
        else:
            chunk = chunk_steps(layer, rule, schedule)
        return cls(jax.jit(chunk, donate_argnums=(0,)), root_key_data)

    def __init__(self, chunk_fn: Callable, root_key_data: Any):
        self.chunk_fn, self.root_key = chunk_fn, root_key_data

    def place(self, state: TrainState) -> TrainState:
        return state

    def place_arrays(self, arrays: Mapping[str, Any]) -> Mapping[str, Any]:
        return arrays

    def compile(self, state: TrainState, arrays: Mapping[str, Any]) -> None:
        self.chunk_fn.lower(state, self.place_arrays(arrays), self.root_key).compile()

    def run(self, state: TrainState, chunks: Sequence[Mapping[str, Any]]):
        return self.chunk_fn(state, self.place_arrays(chunks[0]), self.root_key)


class ShardMapped(SingleDevice):
    """The chunk under ``jax.shard_map`` over a 1-D ``data`` mesh, one of two ways (``split``):

    * ``"batch"`` — data parallelism: the batch split, the state replicated; every device draws
      the global batch's noise, so 1, 2, 4 or 8 devices give the same update;
    * ``"rows"`` — model parallelism: every leaf's rows split (plus padding to a multiple of
      the devices), the whole batch on every device (``engine/updates.VocabShardedSGD``).
    """

    split: ClassVar[str] = "batch"
    pipelines = ("host",)  # a mesh would need each device to make its share of the block

    @classmethod
    def over(cls, split: str, name: str, help: str) -> type["ShardMapped"]:
        """The mode that splits ``split`` (a registry entry)."""
        return type(f"ShardMapped_{name}", (cls,), {"split": split, "name": name, "help": help})

    @classmethod
    def default_devices(cls) -> int:
        return jax.device_count()

    @classmethod
    def check(cls, cfg) -> None:
        if cls.split == "batch":
            return  # batch divisibility is checked at build time, against the device count
        if cfg.optim.optimizer != "sgd" or cfg.optim.update != "sparse":
            raise ConfigError(f"parallelism {cls.name!r} needs optimizer sgd and the sparse update")

    @classmethod
    def update_rule(cls, cfg):
        return VocabShardedSGD() if cls.split == "rows" else super().update_rule(cfg)

    @classmethod
    def describe(cls, devices: int) -> str:
        return (f"{devices} data-parallel devices" if cls.split == "batch"
                else f"tables split over {devices} devices")

    @classmethod
    def build(cls, cfg, layer, rule, schedule, spec, devices, root_key_data):
        if cls.split == "rows" and any(_whole_table_roles(layer)):
            raise ConfigError(f"parallelism {cls.name!r} needs a sampled or tree loss: this loss "
                              "reads whole tables")
        mesh = data_mesh(devices)
        if cls.split == "batch":
            check_batch_divisible(spec.batch_size, mesh.size)
        chunk = chunk_steps(layer, rule, schedule, axis_name=DATA_AXIS)
        rows = cls.split == "rows"

        def sharded(state, arrays, root_key):
            state_spec = (TrainState({k: P(DATA_AXIS) for k in state.params},
                                     jax.tree.map(lambda _: P(), state.opt_state), P())
                          if rows else P())
            arrays_spec = P() if rows else {k: P() if k == "words" else P(None, DATA_AXIS)
                                            for k in arrays}
            # check_vma=False: gradients of replicated values come back as local (unsummed)
            # contributions, and the update rule reduces each exactly once.
            f = jax.shard_map(chunk, mesh=mesh, in_specs=(state_spec, arrays_spec, P()),
                              out_specs=(state_spec, P(), P()), check_vma=False)
            return f(state, arrays, root_key)

        return cls(jax.jit(sharded, donate_argnums=(0,)), replicate(root_key_data, mesh), mesh)

    def __init__(self, chunk_fn, root_key_data, mesh):
        super().__init__(chunk_fn, root_key_data)
        self.mesh = mesh

    def place(self, state):
        if self.split == "rows":
            return state._replace(params=shard_rows(state.params, self.mesh),
                                  step=replicate(state.step, self.mesh))
        return replicate(state, self.mesh)

    def place_arrays(self, arrays):
        if self.split == "batch":
            return shard_chunk(arrays, self.mesh)
        # Rows split, the batch whole on every device: one process passes its numpy chunk;
        # several make it one global array (each built the same chunk).
        return replicate(dict(arrays), self.mesh) if jax.process_count() > 1 else dict(arrays)


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


class Workers(Runner):
    """Hogwild-style worker streams, one per CPU device (``engine/workers.py``)."""

    name, help = "workers", "Hogwild-style worker streams, one per CPU core (SGD)"
    cpu_only = True

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.optim.optimizer != "sgd":
            raise ConfigError(f"parallelism {cls.name!r} needs optimizer sgd")
        if cfg.run.coordinator:
            raise ConfigError(f"parallelism {cls.name!r} runs in one process")

    @classmethod
    def table_copies(cls, devices: int) -> int:
        return devices + 1 if devices > 1 else 1  # a replica per stream and the round's base

    @classmethod
    def default_devices(cls) -> int:
        return max(1, min(cpu_cores(), MAX_DEFAULT_STREAMS, len(jax.local_devices())))

    @classmethod
    def describe(cls, devices: int) -> str:
        return f"{devices} worker streams"

    @classmethod
    def prepare(cls, cfg) -> None:
        """Worker streams need one CPU device each, created before anything starts JAX's
        backend (the output layer's arrays would): ask for them first, whether or not the
        default policy then uses them. Not in a multi-process run (streams run in one process),
        nor where ``XLA_FLAGS`` already sets the CPU device count (that count is the user's)."""
        if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
            return
        if cfg.run.parallelism in (None, cls.name) and not cfg.run.coordinator:
            wanted = cfg.run.devices or min(cpu_cores(), MAX_DEFAULT_STREAMS)
            if wanted > 1 and jax.config.jax_num_cpu_devices < wanted:
                try:
                    jax.config.update("jax_num_cpu_devices", wanted)
                except RuntimeError:
                    pass  # JAX already started: the defaults use what it has

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


RUNNERS: dict[str, type[Runner]] = {r.name: r for r in (
    SingleDevice,
    ShardMapped.over("batch", "data", "data parallelism: the batch split over the devices "
                     "(accelerators; jax.distributed for many hosts)"),
    ShardMapped.over("rows", "vocab", "the tables' rows split over the devices (model "
                     "parallelism; jax.distributed for many hosts)"),
    Workers,
)}


def runner(name: str) -> type[Runner]:
    if name not in RUNNERS:
        raise ConfigError(f"unknown parallelism {name!r}; choose one of {', '.join(RUNNERS)}")
    return RUNNERS[name]


def modes_help() -> str:
    return "; ".join(f"{name}: {r.help}" for name, r in RUNNERS.items())


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# More streams than this measured no faster on the 2-core machine.
MAX_DEFAULT_STREAMS = 4

# Worker streams merge what each round changed, and a large vocabulary changes many rows per
# round: two streams beat one at 10k words and lost from 100k words on
# (docs/bench_vocab_scaling.md; figures in docs/performance_notes.md). By default they are used
# only while the tables together stay below this size (V·D ≤ 6M floats).
DEFAULT_WORKERS_MAX_TABLE_BYTES = 48 << 20


def choose(cfg, backend: str, cores: int, device_count: int, process_count: int,
           table_bytes: int, whole_leaves: bool = False) -> tuple[str, int | None]:
    """(mode, devices) when the config leaves them open (devices None: all).

    Several processes, or several accelerators: data parallelism over all devices. On a CPU
    with several cores, SGD trains in worker streams, one per core (at most
    ``MAX_DEFAULT_STREAMS``), as gensim's worker threads use the cores — unless another
    optimizer is chosen, the tables exceed ``DEFAULT_WORKERS_MAX_TABLE_BYTES`` (merges of
    large vocabularies cost more than the second stream gains), or the output layer reads a leaf
    whole (``whole_leaves``: the exact softmax family). Every example moves such a leaf, and a
    merge adds each stream's update of it, computed on the same stale values: adaptive softmax
    diverged that way on ``mid.txt.gz`` at 40k words (two streams, lr 0.025;
    docs/bench_output_layers_epochs.json). Otherwise one stream.
    """
    r = cfg.run
    if r.parallelism is not None:
        return r.parallelism, r.devices
    if cfg.data.pipeline == "device":  # made on one device: the one mode that takes them
        return "single", 1
    if process_count > 1 or (backend != "cpu" and device_count > 1):
        return "data", r.devices
    workers = min(cores, MAX_DEFAULT_STREAMS) if r.devices is None else r.devices
    if (backend == "cpu" and workers > 1 and cfg.optim.optimizer == "sgd" and not whole_leaves
            and table_bytes <= DEFAULT_WORKERS_MAX_TABLE_BYTES):
        return "workers", workers
    return "single", 1


def prepare(cfg) -> None:
    """What modes must do before JAX's backend starts (worker streams' CPU devices)."""
    start_distributed(cfg.run)
    for r in RUNNERS.values():
        if hasattr(r, "prepare"):
            r.prepare(cfg)


def resolve_mode(cfg, specs: dict) -> tuple[str, int]:
    """(mode, devices) for this machine and this parameter tree (``{name: ParamSpec}``): the
    configured ones, or the default policy's, with the devices it has."""
    parallelism, devices = choose(cfg, jax.default_backend(), cpu_cores(), jax.device_count(),
                                  jax.process_count(), sum(s.nbytes for s in specs.values()),
                                  any(not s.row_indexed for s in specs.values()))
    if cfg.run.parallelism is None and parallelism == Workers.name:
        devices = min(devices, len(jax.local_devices()))
        if devices < 2:
            parallelism = SingleDevice.name
    return parallelism, devices or runner(parallelism).default_devices()
