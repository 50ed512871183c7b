"""The training loop: the shell around the pure chunk function.

Corpus → batches (host thread) → jitted chunks (device) → progress, metrics, checkpoints →
vectors on disk. Everything that touches files, clocks, signals or the terminal lives here.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sgns_jax.data.batches import BatchSpec, Prefetcher, epoch_chunks
from sgns_jax.data.corpus import Corpus, default_cache_dir, encode_corpus
from sgns_jax.data.vocab import Vocabulary
from sgns_jax.errors import SgnsError, TrainingDiverged
from sgns_jax.evaluation.formats import save_word2vec
from sgns_jax.io_utils import atomic_open, atomic_write, check_writable
from sgns_jax.losses import OutputLayer, make_output_layer
from sgns_jax.train.checkpoint import Progress, checkpoint_path, load_checkpoint, save_checkpoint
from sgns_jax.train.config import (TrainConfig, default_batch_size, default_steps_per_chunk,
                                   learning_rate, negative_mode)
from sgns_jax.train.parallel import (check_batch_divisible, data_mesh, fetch, pad_rows,
                                     replicate, shard_chunk, shard_rows)
from sgns_jax.train.step import TrainState, init_params, init_state, make_train_chunk
from sgns_jax.train.workers import CHUNKS_PER_WORKER, WorkerStreams

_DISTRIBUTED_STARTED = False


def worker_devices(workers: int) -> list[jax.Device]:
    """``workers`` devices for worker streams; on the CPU, asks JAX for that many CPU devices
    (possible only before JAX has run anything in this process)."""
    if workers > 1 and jax.config.jax_num_cpu_devices < workers:
        try:
            jax.config.update("jax_num_cpu_devices", workers)
        except RuntimeError:
            pass  # JAX already started; the check below says what to do
    devices = jax.local_devices()
    if len(devices) < workers:
        raise SgnsError(f"workers={workers} needs {workers} devices, this process has "
                        f"{len(devices)} {devices[0].platform} device(s); on the CPU start JAX with "
                        f"XLA_FLAGS=--xla_force_host_platform_device_count={workers}")
    return devices[:workers]


def default_devices() -> int:
    """All devices, except simulated CPU devices of one process: CPU data parallelism repeats
    every scatter on every device and is never faster (experiments/bench_scaling.py)."""
    if jax.default_backend() == "cpu" and jax.process_count() == 1:
        return 1
    return jax.device_count()


def start_distributed(cfg: TrainConfig) -> None:
    """Join a multi-process run (``jax.distributed.initialize``) when a coordinator is given."""
    global _DISTRIBUTED_STARTED
    run = cfg.run
    if run.coordinator and not _DISTRIBUTED_STARTED:
        jax.distributed.initialize(coordinator_address=run.coordinator,
                                   num_processes=run.num_processes, process_id=run.process_id)
        _DISTRIBUTED_STARTED = True


class TrainingInterrupted(SgnsError):
    """SIGINT or SIGTERM arrived; a checkpoint was written if a checkpoint directory is set."""

    exit_code = 130


@dataclass
class TrainResult:
    vocab: Vocabulary
    params: dict[str, np.ndarray]
    config: TrainConfig
    seconds: float            # training time, first chunk dispatched → last chunk done
                              # (compilation and callbacks excluded)
    total_seconds: float      # train() call, corpus encoding and compilation included
    corpus_tokens: int        # raw tokens of the corpus (one epoch)
    words: int                # in-vocabulary words read over all epochs
    mean_loss: float          # over each chunk's first step (see make_train_chunk)
    epoch_words: int = 0      # in-vocabulary words per epoch
    examples: int = 0         # unmasked examples trained on (pairs, or centres for windows)
    epoch_losses: list[float] = field(default_factory=list)
    compile_seconds: float = 0.0  # compiling the training call, before the clock started
    resumed_words: int = 0        # words read before this call (from a checkpoint)

    @property
    def vectors(self) -> np.ndarray:
        return self.params["w_in"]

    @property
    def words_per_second(self) -> float:
        """Corpus tokens read in this call / its training seconds (corpus tokens × epochs for a
        full run); 0 when nothing was trained (a run resumed at its end)."""
        trained = self.words - self.resumed_words
        if trained <= 0 or self.seconds <= 0:
            return 0.0
        return self.corpus_tokens * trained / max(self.epoch_words, 1) / self.seconds


def make_transform(name: str) -> tuple[optax.GradientTransformation, bool]:
    """The optax transform (learning rate applied separately) and whether it is stateless."""
    if name == "sgd":
        return optax.identity(), True
    if name == "adagrad":
        return optax.scale_by_rss(initial_accumulator_value=0.1), False
    if name == "adam":
        return optax.scale_by_adam(), False
    raise SgnsError(f"unknown optimizer {name!r}")


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


def build_layer(cfg: TrainConfig, counts: np.ndarray) -> OutputLayer:
    l = cfg.loss
    return make_output_layer(l.name, counts, negatives=l.negative, negative_mode=negative_mode(cfg),
                             shared_samples=l.shared_samples, ns_exponent=l.ns_exponent,
                             cbow=cfg.model.cbow, softmax_chunk=l.softmax_chunk)


def batch_spec(cfg: TrainConfig, layer: OutputLayer) -> BatchSpec:
    batch_size = cfg.optim.batch_size or default_batch_size(cfg)
    return BatchSpec(layout=layer.layout, batch_size=batch_size,
                     steps_per_chunk=default_steps_per_chunk(cfg, batch_size),
                     window=cfg.data.window, sample=cfg.data.sample, seed=cfg.run.seed)


def load_corpus(cfg: TrainConfig) -> Corpus:
    d = cfg.data
    cache = default_cache_dir() if d.cache_dir is None else (d.cache_dir or None)
    return encode_corpus(d.corpus, min_count=d.min_count, max_vocab=d.max_vocab,
                         max_final_vocab=d.max_final_vocab,
                         lowercase=d.lowercase, cache_dir=cache)


@contextmanager
def _interrupt_flag() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set a flag the loop checks between chunks (main thread only)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda signum, frame: flag.set())
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Reporter:
    """tqdm bar, per-epoch log lines and an optional JSONL metrics file."""

    def __init__(self, cfg: TrainConfig, total_words: int, initial: int):
        self.quiet = cfg.run.quiet
        self.metrics = open(cfg.run.metrics, "a") if cfg.run.metrics else None
        self.bar = None
        if not self.quiet:
            from tqdm import tqdm
            self.bar = tqdm(total=total_words, initial=initial, unit="w", unit_scale=True,
                            dynamic_ncols=True, smoothing=0.1)
        self.last = initial

    def update(self, words: int, lr: float, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(words - self.last)
            self.bar.set_postfix(lr=f"{lr:.5f}", loss=f"{loss:.4f}", refresh=False)
        self.last = words

    def record(self, **fields: Any) -> None:
        if self.metrics is not None:
            self.metrics.write(json.dumps(fields) + "\n")
            self.metrics.flush()

    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.metrics is not None:
            self.metrics.close()


@dataclass
class ChunkEvent:
    """What a ``train(callback=...)`` sees after each chunk."""

    words: int            # words read so far
    seconds: float        # training seconds so far (callback time excluded)
    epoch: int
    loss: float           # running mean loss
    params: Any           # the current tables (device arrays; copy what you keep)


def train(cfg: TrainConfig, corpus: Corpus | None = None,
          callback: Callable[[ChunkEvent], None] | None = None) -> TrainResult:
    """Train word vectors as ``cfg`` says; write outputs if ``cfg.run.out`` is set.

    ``callback`` runs on the host after every chunk (for periodic evaluation); its time is not
    counted as training time, nor is compilation (done before the clock starts).
    ``cfg.run.max_seconds`` stops training once the budget is spent; ``cfg.run.max_words`` once
    that many words are read (the learning-rate schedule then spans those words).
    """
    t_start = time.perf_counter()
    # Record the defaults' choices in the saved config.
    cfg = cfg.replace(loss={"negative_mode": negative_mode(cfg)},
                      optim={"learning_rate": learning_rate(cfg)})
    run = cfg.run
    workers = worker_devices(run.workers) if run.workers > 1 else None
    start_distributed(cfg)
    writer = jax.process_index() == 0  # one process writes outputs and checkpoints
    if run.out:
        check_writable(run.out)
    if run.resume and not run.checkpoint_dir:
        raise SgnsError("--resume needs --checkpoint-dir")
    if run.metrics:
        check_writable(run.metrics)
    if corpus is None:
        corpus = load_corpus(cfg)
    vocab = corpus.vocab
    layer = build_layer(cfg, vocab.counts)
    spec = batch_spec(cfg, layer)
    transform, stateless = make_transform(cfg.optim.optimizer)
    total_words = run.epochs * len(corpus)
    if run.max_words is not None:
        total_words = min(total_words, run.max_words)
    schedule = make_schedule(cfg, total_words)
    devices = run.devices or (1 if workers else default_devices())
    mesh = data_mesh(devices) if devices > 1 else None
    if mesh is not None and not run.shard_vocab:
        check_batch_divisible(spec.batch_size, devices)
    init_key, root_key = jax.random.split(jax.random.key(run.seed))
    root_key = replicate(jax.random.key_data(root_key), mesh)
    params = init_params(layer, len(vocab), cfg.model.dim, init_key, cfg.model.init_scale)
    shard_vocab = run.shard_vocab and mesh is not None
    if shard_vocab:
        params = pad_rows(params, devices)
    state = init_state(params, transform, cfg.optim.update)
    chunk_fn = make_train_chunk(layer, transform, schedule, path=cfg.optim.update,
                                stateless=stateless, mesh=mesh, shard_vocab=shard_vocab)

    progress = Progress()
    ckpt_dir = run.checkpoint_dir
    if run.resume:
        if checkpoint_path(ckpt_dir).exists():
            state, progress, _ = load_checkpoint(ckpt_dir, state)
        # else: nothing saved yet, start from the beginning
    if workers:
        streams = WorkerStreams(chunk_fn, workers, root_key, spec.steps_per_chunk,
                                CHUNKS_PER_WORKER)
        state = streams.place(state)
        group_size, train_chunks = streams.chunks_per_round, streams.round
        compile_chunks = lambda: streams.compile(state, spec.zero_chunk())
    else:
        if shard_vocab:  # rows split over the devices; batches go to every device whole
            state = state._replace(params=shard_rows(state.params, mesh))
            place = lambda arrays: dict(arrays)
        else:
            state = replicate(state, mesh)
            place = lambda arrays: shard_chunk(arrays, mesh)
        group_size = 1
        train_chunks = lambda state, group: chunk_fn(state, place(group[0]), root_key)
        compile_chunks = lambda: chunk_fn.lower(state, place(spec.zero_chunk()), root_key).compile()
    # Compile before the clock starts: training seconds are steady-state seconds.
    t_compile = time.perf_counter()
    compile_chunks()
    compile_seconds = time.perf_counter() - t_compile
    reporter = _Reporter(cfg, total_words, progress.words)
    if not run.quiet:
        reporter.log(f"config: {json.dumps(cfg.to_dict(), separators=(',', ':'))}")
        reporter.log(f"corpus: {corpus.raw_tokens:,} tokens, {len(corpus):,} in vocabulary of "
                     f"{len(vocab):,} words; {spec.layout} batches of {spec.batch_size} × "
                     f"{spec.steps_per_chunk} steps" +
                     (f" over {devices} devices" if mesh is not None else "") +
                     (f" in {len(workers)} worker streams" if workers else ""))

    def checkpoint() -> str | None:
        if not ckpt_dir:
            return None
        if not writer:
            return str(checkpoint_path(ckpt_dir))
        return str(save_checkpoint(ckpt_dir, state, progress, cfg.to_dict()))

    last_ckpt = str(checkpoint_path(ckpt_dir)) if ckpt_dir and run.resume and progress.words else None
    resumed_words = progress.words
    epoch_losses: list[float] = []
    t_train = None
    paused = 0.0  # callback time, not training time
    budget_spent = False
    steps_done = int(state.step)
    last_save = time.monotonic()
    # One producer thread for the whole run (a thread per epoch left glibc a malloc arena per
    # epoch: peak RSS grew by ~60 MB an epoch); None marks each epoch's end.
    def all_chunks() -> Iterator[tuple[int, Any] | None]:
        for epoch in range(progress.epoch, run.epochs):
            yield from enumerate(epoch_chunks(corpus, spec, epoch))
            yield None

    def epoch_items(stream: Iterator) -> Iterator[tuple[int, Any]]:
        for item in stream:
            if item is None:
                return
            yield item

    stream = Prefetcher(all_chunks())
    try:
        with _interrupt_flag() as interrupted:
            for epoch in range(progress.epoch, run.epochs):
                epoch_loss = [0.0, 0.0]
                # Resuming: skip the chunks trained before the checkpoint.
                todo = ((i, c) for i, c in epoch_items(stream) if i >= progress.chunk)
                for group in _groups(todo, group_size):
                    index, chunk = group[-1]
                    if t_train is None:
                        t_train = time.perf_counter()
                    step_before = steps_done
                    state, loss_sum, count = train_chunks(state, [c.arrays for _, c in group])
                    loss_sum, count = float(fetch(loss_sum)), float(fetch(count))
                    steps_done += spec.steps_per_chunk * len(group)
                    if not math.isfinite(loss_sum):
                        raise TrainingDiverged(
                            f"loss became {loss_sum} in steps {step_before}–{steps_done - 1} "
                            f"(epoch {epoch + 1}); last good checkpoint: {last_ckpt or 'none'}")
                    progress.chunk = index + 1
                    progress.words = chunk.words_end
                    progress.loss_sum += loss_sum
                    progress.loss_count += count
                    progress.examples += sum(c.examples for _, c in group)
                    epoch_loss[0] += loss_sum
                    epoch_loss[1] += count
                    lr = float(schedule(chunk.words_end))
                    mean = progress.loss_sum / max(progress.loss_count, 1.0)
                    reporter.update(progress.words, lr, mean)
                    train_s = time.perf_counter() - t_train - paused
                    if callback is not None:
                        t_cb = time.perf_counter()
                        callback(ChunkEvent(progress.words, train_s, epoch, mean, state.params))
                        paused += time.perf_counter() - t_cb
                    if ((run.max_seconds is not None and train_s >= run.max_seconds) or
                            (run.max_words is not None and progress.words >= run.max_words)):
                        budget_spent = True
                        break
                    if interrupted.is_set():
                        saved = checkpoint()
                        raise TrainingInterrupted(
                            f"interrupted at step {steps_done}; " +
                            (f"checkpoint saved to {saved} (continue with --resume)" if saved
                             else "no --checkpoint-dir, nothing saved"))
                    if ckpt_dir and time.monotonic() - last_save > 60 * run.checkpoint_minutes:
                        last_ckpt = checkpoint()
                        last_save = time.monotonic()
                epoch_losses.append(epoch_loss[0] / max(epoch_loss[1], 1.0))
                if budget_spent:
                    reporter.log(f"budget spent after {progress.words:,} of "
                                 f"{run.epochs * len(corpus):,} words ({train_s:.1f} s)")
                    break
                progress.epoch, progress.chunk = epoch + 1, 0
                elapsed = time.perf_counter() - (t_train or time.perf_counter()) - paused
                reporter.log(f"epoch {epoch + 1}/{run.epochs}: mean loss {epoch_losses[-1]:.4f}, "
                             f"{progress.words:,} words, {elapsed:.1f} s")
                reporter.record(epoch=epoch + 1, loss=epoch_losses[-1], words=progress.words,
                                seconds=elapsed, step=int(state.step))
                if ckpt_dir:
                    last_ckpt = checkpoint()
                    last_save = time.monotonic()
    finally:
        stream.close()
        reporter.close()
    jax.block_until_ready(state)
    seconds = time.perf_counter() - (t_train or time.perf_counter()) - paused
    rows = layer.table_rows(len(vocab))
    params = {k: fetch(v)[:rows[k]] for k, v in state.params.items()}
    result = TrainResult(vocab, params, cfg, seconds, 0.0, corpus.raw_tokens, progress.words,
                         progress.loss_sum / max(progress.loss_count, 1.0), len(corpus),
                         progress.examples, epoch_losses, compile_seconds, resumed_words)
    if run.out and writer:
        write_outputs(result)
    result.total_seconds = time.perf_counter() - t_start
    return result


def _groups(items: Iterator, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    group = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def output_paths(out: str | Path) -> dict[str, Path]:
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".txt", ".bin", ".vec") else out
    return {"vectors": out, "state": Path(f"{stem}.npz"), "config": Path(f"{stem}.config.json")}


def write_outputs(result: TrainResult) -> None:
    """Vectors (word2vec text or binary), the full state (.npz) and the config (.json)."""
    paths = output_paths(result.config.run.out)
    save_word2vec(paths["vectors"], result.vocab.words, result.vectors, binary=result.config.run.binary)
    with atomic_open(paths["state"], "wb") as f:
        np.savez(f, w_in=result.params["w_in"], w_out=result.params["w_out"],
                 words=np.array(result.vocab.words), counts=result.vocab.counts,
                 config=np.frombuffer(result.config.to_json().encode(), dtype=np.uint8))
    atomic_write(paths["config"], result.config.to_json().encode())
