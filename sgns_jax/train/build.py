"""Assembling a run: corpus, output layer, batches, update rule, schedule, runner and state.

``build_run(cfg, corpus)`` does everything :func:`sgns_jax.train.loop.train` needs before its
loop — resolving the config's defaults once, building the pieces from the resolved config,
compiling the chunk before the clock starts — so the loop itself is only the loop. Experiments
and tests use the pieces (``build_layer``, ``batch_spec``, ``make_schedule``,
``make_update_rule``) directly.
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
from sgns_jax.data.device_batches import device_consts
from sgns_jax import losses
from sgns_jax.errors import ConfigError, SgnsError
from sgns_jax.losses import OutputLayer, ParamSpec
from sgns_jax.engine import runners
from sgns_jax.train.checkpoint import Progress, checkpoint_path, load_checkpoint
from sgns_jax.config import (TrainConfig, default_batch_size, default_steps_per_chunk,
                                   learning_rate, resolve)
from sgns_jax.train.memory import (MemoryEstimate, available_memory, batch_bytes, check_fits,
                                   estimate_memory, release_free_memory)
from sgns_jax.engine.step import TrainState, init_params, init_state, param_specs


def load_corpus(cfg: TrainConfig) -> Corpus:
    d = cfg.data
    cache = default_cache_dir() if d.cache_dir is None else (d.cache_dir or None)
    return encode_corpus(d.corpus, min_count=d.min_count, max_vocab=d.max_vocab,
                         max_final_vocab=d.max_final_vocab, lowercase=d.lowercase, cache_dir=cache)


def build_layer(cfg: TrainConfig, counts: np.ndarray) -> OutputLayer:
    """The configured output layer for a vocabulary with these counts."""
    return losses.build_layer(cfg.loss, counts, cfg.model.cbow)


def batch_spec(cfg: TrainConfig, layer: OutputLayer) -> BatchSpec:
    """The batches ``cfg`` asks for (a resolved config says everything; otherwise the loss's
    default batch for the backend the mode runs on)."""
    mode = runners.runner(cfg.run.parallelism) if cfg.run.parallelism else None
    backend = "cpu" if mode is not None and mode.cpu_only else jax.default_backend()
    batch_size = cfg.optim.batch_size or default_batch_size(cfg, backend)
    return BatchSpec(layout=layer.layout, batch_size=batch_size,
                     steps_per_chunk=default_steps_per_chunk(cfg, batch_size),
                     window=cfg.data.window, sample=cfg.data.sample, seed=cfg.run.seed,
                     pipeline=cfg.data.pipeline)


def chunk_consts(spec: BatchSpec, counts: np.ndarray, root_key_data: jax.Array) -> Any:
    """The chunk function's constant input: the root key's data, or for batches made on the
    device also their key and the keep probabilities (``device_batches.device_consts``)."""
    if spec.pipeline == "device":
        return device_consts(root_key_data, spec.seed, counts, spec.sample)
    return root_key_data


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
# stale values, where word2vec applies them one pair at a time: the wider the window, the worse
# (docs/performance_notes.md). CBOW averages its contexts (one update per window, as word2vec)
# and is not concerned.
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
    runner: Any                 # engine/runners.py
    state: TrainState
    progress: Progress          # resumed from the checkpoint, if any
    total_words: int            # words the schedule spans
    compile_seconds: float
    resumed_words: int
    memory: MemoryEstimate      # what the run was estimated to hold (checked against the machine)

    @property
    def param_specs(self) -> dict[str, ParamSpec]:
        return param_specs(self.layer, len(self.corpus.vocab), self.cfg.model.dim)

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: spec.shape for k, spec in self.param_specs.items()}


def build_run(cfg: TrainConfig, corpus: Corpus | None = None) -> Run:
    """Everything a training loop needs; compiles the chunk function before returning.

    The user's config is resolved once (:func:`sgns_jax.config.resolve`, after the
    vocabulary fixes the parameter tree's size); everything after reads the resolved config.
    """
    if cfg.run.resume and not cfg.run.checkpoint_dir:
        raise SgnsError("--resume needs --checkpoint-dir")
    runners.prepare(cfg)  # before anything starts JAX's backend
    corpus = corpus if corpus is not None else load_corpus(cfg)
    release_free_memory()  # the scan's dictionary and blocks
    layer = build_layer(cfg, corpus.vocab.counts)
    check_window_sharing(cfg, layer)
    specs = param_specs(layer, len(corpus.vocab), cfg.model.dim, cfg.model.init_scale)
    cfg = resolve(cfg, specs)
    spec = batch_spec(cfg, layer)
    total_words = cfg.run.epochs * len(corpus)
    if cfg.run.max_words is not None:
        total_words = min(total_words, cfg.run.max_words)
    schedule = make_schedule(cfg, total_words)
    mode = runners.runner(cfg.run.parallelism)
    rule = mode.update_rule(cfg)
    init_key, root_key = jax.random.split(jax.random.key(cfg.run.seed))
    runner = mode.build(cfg, layer, rule, schedule, spec, cfg.run.devices,
                        chunk_consts(spec, corpus.vocab.counts, jax.random.key_data(root_key)))
    memory = estimate_memory(specs, len(corpus), copies=mode.table_copies(cfg.run.devices),
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
    release_free_memory()  # the random tables' temporaries (a table's worth)
    state = runner.place(state)
    t = time.perf_counter()
    runner.compile(state, spec.zero_chunk())  # before the clock: training time is steady-state
    # (worker streams make their replicas in the first round: a copy of the tables)
    release_free_memory()  # the compiler's temporaries
    return Run(cfg, corpus, layer, spec, schedule, runner, state, progress, total_words,
               time.perf_counter() - t, progress.words, memory)
