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
from sgns_jax.errors import ConfigError
from sgns_jax.losses import OutputLayer, make_output_layer
from sgns_jax.train.checkpoint import Progress, checkpoint_path, load_checkpoint
from sgns_jax.train.config import (TrainConfig, cpu_cores, default_batch_size, default_parallelism,
                                   default_steps_per_chunk, learning_rate, resolve)
from sgns_jax.train.memory import (MemoryEstimate, available_memory, batch_bytes, check_fits,
                                   estimate_memory)
from sgns_jax.train.runners import RUNNERS, start_distributed
from sgns_jax.train.step import TrainState, init_params, init_state
from sgns_jax.train.updates import make_update_rule


def load_corpus(cfg: TrainConfig) -> Corpus:
    d = cfg.data
    cache = default_cache_dir() if d.cache_dir is None else (d.cache_dir or None)
    return encode_corpus(d.corpus, min_count=d.min_count, max_vocab=d.max_vocab,
                         max_final_vocab=d.max_final_vocab, lowercase=d.lowercase, cache_dir=cache)


def build_layer(cfg: TrainConfig, counts: np.ndarray) -> OutputLayer:
    """The configured output layer for a vocabulary with these counts."""
    options = {k: v for k, v in cfg.loss.__dict__.items() if k != "name"}
    return make_output_layer(cfg.loss.name, counts, cbow=cfg.model.cbow, **options)


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


# A skip-gram layer over the windows layout (window-shared negatives, hierarchical softmax with a
# path per window) sums the updates of a centre's ≤ 2·window contexts on the rows they share —
# the centre's output row and its K negatives, or its path's nodes — all computed on the same
# stale values, where word2vec applies them one pair at a time. Against per-pair sampling, the
# final loss (2 MB of the bundled corpus, 2 epochs, defaults otherwise) was 0.4% higher at
# window 5, 1% at 10, 7% at 15, 10% at 20, 17% at 50, and diverged at 100; HS 0.5% at 5, 3% at
# 20, 15% at 50. CBOW averages its contexts (one update per window, as word2vec) and is not
# concerned.
MAX_SHARED_WINDOW = 10


def check_window_sharing(cfg: TrainConfig, layer: OutputLayer) -> None:
    window = cfg.data.window
    if layer.layout == "windows" and not layer.cbow and window > MAX_SHARED_WINDOW:
        raise ConfigError(
            f"window {window} is too wide for {layer.describe()}: a step sums the updates of up "
            f"to {2 * window} contexts on the rows they share, computed on the same stale values, "
            f"which trains badly beyond window {MAX_SHARED_WINDOW} (at 20 the loss ended 10% above "
            "per-pair sampling's, at 100 it diverged); sample per pair (--negative-mode pair, or "
            f"--hs-paths pair for hs) or use --window {MAX_SHARED_WINDOW} or less")


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
    memory: MemoryEstimate      # what the run was estimated to hold (checked against the machine)

    @property
    def table_rows(self) -> dict[str, int]:
        return self.layer.table_rows(len(self.corpus.vocab))


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
    _request_cpu_devices(cfg)
    start_distributed(cfg.run)
    corpus = corpus if corpus is not None else load_corpus(cfg)
    layer = build_layer(cfg, corpus.vocab.counts)
    check_window_sharing(cfg, layer)
    table_bytes = sum(n * cfg.model.dim * 4 for n in layer.table_rows(len(corpus.vocab)).values())
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
    memory = estimate_memory(layer.table_rows(len(corpus.vocab)), cfg.model.dim, len(corpus),
                             workers=devices if parallelism == "workers" else 1,
                             optimizer=cfg.optim.optimizer, dense_update=cfg.optim.update == "dense",
                             batch_bytes=batch_bytes(spec, runner.chunks_per_call),
                             window=spec.window)
    check_fits(memory, available_memory())  # before the tables and the first chunks exist
    state = init_state(init_params(layer, len(corpus.vocab), cfg.model.dim, init_key,
                                   cfg.model.init_scale), rule)
    progress = Progress()
    if cfg.run.resume and checkpoint_path(cfg.run.checkpoint_dir).exists():
        state, progress, _ = load_checkpoint(cfg.run.checkpoint_dir, state,
                                             {"config": cfg.to_dict(), "corpus": corpus.fingerprint})
    state = runner.place(state)
    t = time.perf_counter()
    runner.compile(state, spec.zero_chunk())  # before the clock: training time is steady-state
    return Run(cfg, corpus, layer, spec, schedule, runner, state, progress, total_words,
               parallelism, devices, time.perf_counter() - t, progress.words, memory)
