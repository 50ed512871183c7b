"""The training loop: ``train(cfg)`` — build the run, feed it chunks, write the vectors.

Corpus → batches (host thread) → jitted chunks (device, ``engine/runners.py``) → hooks between
chunks (``train/hooks.py``: progress, metrics, budgets, checkpoints, signals) → vectors on disk.
The pieces are assembled by :func:`sgns_jax.train.build.build_run`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import numpy as np

from sgns_jax import interrupts
from sgns_jax.data.batches import Prefetcher, epoch_chunks
from sgns_jax.data.corpus import Corpus, corpus_files
from sgns_jax.data.vocab import Vocabulary
from sgns_jax.errors import SgnsError
from sgns_jax.evaluation.formats import write_word2vec
from sgns_jax.io_utils import check_writable, output_paths, write_file_set
from sgns_jax.train.build import Run, build_run, load_corpus
from sgns_jax.train.checkpoint import check_checkpoint_dir
from sgns_jax.config import TrainConfig
from sgns_jax.train.hooks import ChunkEvent, Hooks, TrainingInterrupted
from sgns_jax.engine.runners import runner

__all__ = ["ChunkEvent", "TrainResult", "TrainingInterrupted", "output_paths", "train",
           "write_outputs"]


@dataclass
class TrainResult:
    vocab: Vocabulary
    params: dict[str, np.ndarray]
    config: TrainConfig       # every default resolved
    seconds: float            # training time, first chunk dispatched → last chunk done
                              # (compilation and callbacks excluded)
    total_seconds: float      # train() call, corpus encoding and compilation included
    corpus_tokens: int        # raw tokens of the corpus (one epoch)
    words: int                # in-vocabulary words read over all epochs
    mean_loss: float          # over each chunk's first step (see step.chunk_steps)
    epoch_words: int = 0      # in-vocabulary words per epoch
    examples: int | None = 0  # unmasked examples trained on (pairs, or centres for windows);
                              # None when the device made them (--pipeline device)
    epoch_losses: list[float] = field(default_factory=list)
    compile_seconds: float = 0.0  # compiling the training call, before the clock started
    resumed_words: int = 0        # words read before this call (from a checkpoint)
    merge_seconds_per_round: float | None = None  # worker streams: time a merge takes

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


def train(cfg: TrainConfig, corpus: Corpus | None = None,
          callback: Callable[[ChunkEvent], None] | None = None) -> TrainResult:
    """Train word vectors as ``cfg`` says; write outputs if ``cfg.run.out`` is set.

    Args:
      cfg: the configuration (defaults resolved here and recorded in the result).
      corpus: an encoded corpus to train on instead of reading ``cfg.data.corpus``.
      callback: called on the host after every chunk with a :class:`ChunkEvent` (periodic
        evaluation); its time is not training time.
    Returns:
      A :class:`TrainResult` with the tables as numpy arrays, timings and losses.
    Raises:
      ``SgnsError`` subclasses for bad input, ``TrainingDiverged``, ``TrainingInterrupted``.
    """
    started = time.perf_counter()
    with interrupts.handled():  # Ctrl-C: KeyboardInterrupt, or TrainingInterrupted in the loop
        interrupts.check()  # one Python dropped before this call (see sgns_jax/interrupts.py)
        check_destinations(cfg, corpus)
        corpus = corpus if corpus is not None else load_corpus(cfg)
        # JAX tracing and compiling, cut short by a KeyboardInterrupt, left state that crashed
        # the interpreter at exit (SIGSEGV, 1 run in 24): Ctrl-C waits for the build.
        with interrupts.deferred():
            run = build_run(cfg, corpus)
        if not run.cfg.run.quiet:  # before the progress bar, so nothing prints through it
            print(run_summary(run) + (f"\nconfig: {run.cfg.to_json()}" if run.cfg.run.verbose else ""), flush=True)
        hooks = Hooks(run, callback)
        try:
            # closing(): the producer thread is stopped and joined on every way out, so none is
            # left running numpy while the interpreter shuts down (that aborted the process).
            with interrupts.deferred() as interrupted, contextlib.closing(chunk_groups(run)) as groups:
                for epoch, group in groups:
                    if group is None or hooks.stop:
                        hooks.end_epoch(epoch)
                        if hooks.stop:
                            break
                        continue
                    hooks.clock.start()
                    with jax.profiler.StepTraceAnnotation("chunk", step_num=hooks.steps):
                        run.state, loss_sum, count = run.runner.run(run.state, [c.arrays for _, c in group])
                    hooks.after_chunk(epoch, group, loss_sum, count, interrupted)
        finally:
            hooks.close()
        result = finish(run, hooks, started)
        interrupts.check()
        return result


def check_destinations(cfg: TrainConfig, corpus: Corpus | None) -> None:
    """Before anything is read or trained: every file the run will write can be written, a
    fresh run does not replace a checkpoint, and no output would overwrite the corpus."""
    r = cfg.run
    if r.resume and not r.checkpoint_dir:
        raise SgnsError("--resume needs --checkpoint-dir")
    outputs = list(output_paths(r.out).values()) if r.out else []
    for path in outputs:
        check_writable(path)
    if r.metrics:
        check_writable(r.metrics, "metrics")
    if r.checkpoint_dir:
        check_checkpoint_dir(r.checkpoint_dir, r.resume)
    if corpus is None and cfg.data.corpus:
        inputs = {p.resolve() for p in corpus_files(cfg.data.corpus)}
        for path in outputs + ([Path(r.metrics)] if r.metrics else []):
            if path.resolve() in inputs:
                raise SgnsError(f"{path} is the corpus; choose another --out or --metrics")


def chunk_groups(run: Run) -> Iterator[tuple[int, list | None]]:
    """(epoch, group of (index, Chunk)) for the rest of the run, and (epoch, None) after each
    epoch's last group. One producer thread builds chunks ahead for the whole run (a thread per
    epoch left glibc a malloc arena per epoch, and peak RSS grew from epoch to epoch:
    docs/performance_notes.md)."""
    progress, size = run.progress, run.runner.chunks_per_call
    first_epoch, first_chunk = progress.epoch, progress.chunk

    def produce():
        for epoch in range(first_epoch, run.cfg.run.epochs):
            for index, chunk in enumerate(epoch_chunks(run.corpus, run.spec, epoch)):
                if epoch > first_epoch or index >= first_chunk:  # resumed: skip what was trained
                    yield epoch, index, chunk
            yield epoch, None, None

    stream = Prefetcher(produce())
    try:
        group: list = []
        for epoch, index, chunk in stream:
            if chunk is not None:
                group.append((index, chunk))
                if len(group) < size:
                    continue
            if group:
                yield epoch, group
                group = []
            if chunk is None:
                yield epoch, None
    finally:
        stream.close()


def finish(run: Run, hooks: Hooks, started: float) -> TrainResult:
    """The result (tables on the host) and, if asked, the outputs on disk."""
    jax.block_until_ready(run.state)
    p = run.progress
    result = TrainResult(run.corpus.vocab, run.runner.host_params(run.state, run.param_shapes),
                         run.cfg, hooks.clock.seconds, 0.0, run.corpus.raw_tokens, p.words,
                         hooks.mean_loss, len(run.corpus), p.examples, hooks.epoch_losses,
                         run.compile_seconds, run.resumed_words)
    if run.spec.pipeline == "device":
        result.examples = None  # made and counted on the device
    streams = getattr(run.runner, "streams", None)
    if streams is not None and streams.rounds:
        result.merge_seconds_per_round = streams.merge_seconds / streams.rounds
    if run.cfg.run.out and jax.process_index() == 0:
        write_outputs(result)
    result.total_seconds = time.perf_counter() - started
    return result


def run_summary(run: Run) -> str:
    """A few lines for a person: corpus, model, batches and parallelism, memory estimate."""
    cfg, corpus, spec = run.cfg, run.corpus, run.spec
    o = cfg.optim
    parallel = runner(cfg.run.parallelism).describe(cfg.run.devices)
    return "\n".join([
        f"corpus: {corpus.raw_tokens:,} tokens, {len(corpus):,} in the vocabulary of "
        f"{len(corpus.vocab):,} words; {cfg.run.epochs} epoch(s)",
        f"model: {'CBOW' if cfg.model.cbow else 'skip-gram'}, {run.layer.describe()}, dim "
        f"{cfg.model.dim}, {o.optimizer} lr {o.learning_rate}; {spec.batch_size} "
        f"{'pairs' if spec.layout == 'pairs' else 'centres'} a step, {spec.steps_per_chunk} steps "
        f"a call; {parallel}",
        run.memory.summary()])


def write_outputs(result: TrainResult) -> None:
    """Vectors (word2vec text or binary: the input table w_in, exactly), the rest of the state
    (.npz: the output layer's parameter leaves, vocabulary, counts, config) and the config
    (.json), written as one set with a manifest (``io_utils.write_file_set``): a failure or a
    kill leaves the previous set readable, and a file of one run is never read as part of
    another.

    w_in is not repeated in the .npz: at a million words × 300 dims each table is 1.2 GB, and
    writing it twice cost a tenth of the run (docs/performance_notes.md).
    """
    paths = output_paths(result.config.run.out)
    config = result.config.to_json().encode()

    def save_vectors(f) -> None:
        write_word2vec(f, result.vocab.words, result.vectors, binary=result.config.run.binary)

    def save_state(f) -> None:
        tables = {name: table for name, table in result.params.items() if name != "w_in"}
        np.savez(f, **tables, words=np.array(result.vocab.words), counts=result.vocab.counts,
                 config=np.frombuffer(config, dtype=np.uint8))

    write_file_set({paths["vectors"]: save_vectors, paths["state"]: save_state,
                    paths["config"]: lambda f: f.write(config)}, paths["manifest"])
