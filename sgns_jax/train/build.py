"""Assembling a run: corpus, output layer, batches, update rule, schedule, runner and state.

``build_run(cfg, corpus)`` does everything :func:`sgns_jax.train.loop.train` needs before its
loop — resolving the config's defaults, choosing the devices, compiling the chunk before the
clock starts — so the loop itself is only the loop. Experiments and tests use the pieces
(``build_layer``, ``batch_spec``, ``make_schedule``, ``make_update_rule``) directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import optax

from sgns_jax.data.batches import BatchSpec
from sgns_jax.data.corpus import Corpus, default_cache_dir, encode_corpus
from sgns_jax.errors import SgnsError
from sgns_jax import losses
from sgns_jax.losses import OutputLayer, ParamSpec
from sgns_jax.train.checkpoint import Progress, checkpoint_path, load_checkpoint
from sgns_jax.train.config import (TrainConfig, cpu_cores, default_batch_size, default_parallelism,
                                   default_steps_per_chunk, learning_rate, resolve)
from sgns_jax.train.runners import RUNNERS, start_distributed
from sgns_jax.train.step import TrainState, init_params, init_state, param_specs
from sgns_jax.train.updates import make_update_rule


def load_corpus(cfg: TrainConfig) -> Corpus:
    d = cfg.data
    cache = default_cache_dir() if d.cache_dir is None else (d.cache_dir or None)
    return encode_corpus(d.corpus, min_count=d.min_count, max_vocab=d.max_vocab,
                         max_final_vocab=d.max_final_vocab, lowercase=d.lowercase, cache_dir=cache)


def build_layer(cfg: TrainConfig, counts: np.ndarray) -> OutputLayer:
    """The configured output layer for a vocabulary with these counts."""
    return losses.build_layer(cfg.loss, counts, cfg.model.cbow)


def batch_spec(cfg: TrainConfig, layer: OutputLayer) -> BatchSpec:
    # Worker streams are CPU devices whatever the host's default backend.
    backend = "cpu" if cfg.run.parallelism == "workers" else jax.default_backend()
    batch_size = cfg.optim.batch_size or default_batch_size(cfg, backend)
    return BatchSpec(layout=layer.layout, batch_size=batch_size,
                     steps_per_chunk=default_steps_per_chunk(cfg, batch_size),
                     window=cfg.data.window, sample=cfg.data.sample, seed=cfg.run.seed)


def make_schedule(cfg: TrainConfig, total_words: int) -> optax.Schedule:
    """Learning rate as a function of words read (word2vec decays by words, not steps)."""
    o = cfg.optim
    lr = learning_rate(cfg)
    total = max(total_words, 1)
    if o.schedule == "constant":
        return optax.constant_schedule(lr)
    if o.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, total, alpha=o.min_learning_rate_ratio)
    return optax.linear_schedule(lr, lr * o.min_learning_rate_ratio, total)


def check_same_chunks(saved: dict, cfg: TrainConfig) -> None:
    """A checkpoint counts its progress in chunks of its own shape; resuming with chunks of
    another shape would train part of an epoch twice or skip it, silently."""
    for key in ("batch_size", "steps_per_chunk"):
        was, now = saved.get("optim", {}).get(key), getattr(cfg.optim, key)
        if was is not None and was != now:
            raise SgnsError(f"the checkpoint was written with {key} {was} and this run has {now}; "
                            f"resume with --{key.replace('_', '-')} {was}")


@dataclass
class Run:
    """A run ready to train: what ``build_run`` assembled, and its mutable state."""

    cfg: TrainConfig            # every default resolved (what is saved beside the outputs)
    corpus: Corpus
    layer: OutputLayer
    spec: BatchSpec
    schedule: optax.Schedule
    runner: Any                 # train/runners.py
    state: TrainState
    progress: Progress          # resumed from the checkpoint, if any
    total_words: int            # words the schedule spans
    parallelism: str
    devices: int
    compile_seconds: float
    resumed_words: int

    @property
    def param_specs(self) -> dict[str, ParamSpec]:
        return param_specs(self.layer, len(self.corpus.vocab), self.cfg.model.dim)

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: spec.shape for k, spec in self.param_specs.items()}


def _request_cpu_devices(cfg: TrainConfig) -> None:
    """Worker streams need one CPU device each, created before anything starts JAX's backend
    (the output layer's arrays would): ask for them first, whether or not they are used."""
    run = cfg.run
    if run.parallelism in (None, "workers"):
        wanted = run.devices or min(cpu_cores(), 4)
        if wanted > 1 and jax.config.jax_num_cpu_devices < wanted:
            try:
                jax.config.update("jax_num_cpu_devices", wanted)
            except RuntimeError:
                pass  # JAX already started: the defaults use what it has


def _devices(cfg: TrainConfig, table_bytes: int) -> tuple[str, int]:
    """(parallelism, devices), the defaults chosen for this machine."""
    parallelism, devices = default_parallelism(cfg, jax.default_backend(), cpu_cores(),
                                               jax.device_count(), jax.process_count(), table_bytes)
    if cfg.run.parallelism is None and parallelism == "workers":
        devices = min(devices, len(jax.local_devices()))
        if devices < 2:
            parallelism = "single"
    if parallelism in ("data", "vocab") and devices is None:
        devices = jax.device_count()
    return parallelism, devices or 1


def build_run(cfg: TrainConfig, corpus: Corpus | None = None) -> Run:
    """Everything a training loop needs; compiles the chunk function before returning."""
    cfg = resolve(cfg)
    if cfg.run.resume and not cfg.run.checkpoint_dir:
        raise SgnsError("--resume needs --checkpoint-dir")
    _request_cpu_devices(cfg)
    start_distributed(cfg.run)
    corpus = corpus if corpus is not None else load_corpus(cfg)
    layer = build_layer(cfg, corpus.vocab.counts)
    table_bytes = sum(s.nbytes for s in param_specs(layer, len(corpus.vocab), cfg.model.dim).values())
    parallelism, devices = _devices(cfg, table_bytes)
    cfg = cfg.replace(run={"parallelism": parallelism, "devices": devices})  # validates it
    spec = batch_spec(cfg, layer)
    # Record the chunks' shape the run uses: the default batch depends on the backend, and the
    # config saved beside the outputs and in checkpoints must say what the run did.
    cfg = cfg.replace(optim={"batch_size": spec.batch_size, "steps_per_chunk": spec.steps_per_chunk})
    total_words = cfg.run.epochs * len(corpus)
    if cfg.run.max_words is not None:
        total_words = min(total_words, cfg.run.max_words)
    schedule = make_schedule(cfg, total_words)
    rule = make_update_rule(cfg.optim.optimizer, cfg.optim.update, vocab_sharded=parallelism == "vocab")
    init_key, root_key = jax.random.split(jax.random.key(cfg.run.seed))
    runner = RUNNERS[parallelism].build(cfg, layer, rule, schedule, spec, devices,
                                        jax.random.key_data(root_key))
    state = init_state(init_params(layer, len(corpus.vocab), cfg.model.dim, init_key,
                                   cfg.model.init_scale), rule)
    progress = Progress()
    if cfg.run.resume and checkpoint_path(cfg.run.checkpoint_dir).exists():
        state, progress, saved = load_checkpoint(cfg.run.checkpoint_dir, state)
        check_same_chunks(saved, cfg)
    state = runner.place(state)
    t = time.perf_counter()
    runner.compile(state, spec.zero_chunk())  # before the clock: training time is steady-state
    return Run(cfg, corpus, layer, spec, schedule, runner, state, progress, total_words,
               parallelism, devices, time.perf_counter() - t, progress.words)
