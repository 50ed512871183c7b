"""What happens around each chunk: bookkeeping, progress, metrics, budgets, callbacks,
checkpoints and signals — the shell of the training loop, one small class each.

The loop dispatches chunk i and only then reads chunk i−1's loss (:meth:`Hooks.after_chunk`),
so the host never waits for the device just to print a number; checkpoints, interrupts and the
end of an epoch read everything first.
"""

from __future__ import annotations

import json
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import jax
import numpy as np

from sgns_jax.errors import SgnsError, TrainingDiverged
from sgns_jax.io_utils import storage_error
from sgns_jax.train.checkpoint import checkpoint_path, save_checkpoint
from sgns_jax.engine.mesh import fetch


def agree(*flags: bool) -> tuple[bool, ...]:
    """``flags`` OR-ed over the processes of a ``jax.distributed`` run (one small all-gather);
    as they are in one process."""
    if jax.process_count() == 1:
        return tuple(bool(f) for f in flags)
    from jax.experimental import multihost_utils

    gathered = np.asarray(multihost_utils.process_allgather(np.array(flags, np.int32)))
    return tuple(bool(x) for x in gathered.reshape(jax.process_count(), len(flags)).any(axis=0))


class TrainingInterrupted(SgnsError):
    """SIGINT or SIGTERM arrived; a checkpoint was written if a checkpoint directory is set."""

    exit_code = 130


@dataclass
class ChunkEvent:
    """What a ``train(callback=...)`` sees after each chunk."""

    words: int            # words read so far
    seconds: float        # training seconds so far (callback time excluded)
    epoch: int
    loss: float           # running mean loss (of the chunks whose loss has been read)
    params: Any           # the current tables (device arrays; copy what you keep)


@dataclass
class _Pending:
    """A dispatched chunk group whose loss has not been read yet."""

    loss_sum: Any
    count: Any
    steps: str          # "steps 96–127", or "block 3" (device pipeline: steps counted there)
    epoch: int


class Clock:
    """Training seconds: from the first dispatch, with the callbacks' time taken out."""

    def __init__(self):
        self.t0: float | None = None
        self.paused_s = 0.0

    def start(self) -> None:
        if self.t0 is None:
            self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return 0.0 if self.t0 is None else time.perf_counter() - self.t0 - self.paused_s

    @contextmanager
    def paused(self) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.paused_s += time.perf_counter() - t


class ProgressBar:
    """tqdm bar and per-epoch log lines (nothing with ``quiet``)."""

    def __init__(self, quiet: bool, total_words: int, initial: int):
        self.bar, self.last = None, initial
        if not quiet:
            from tqdm import tqdm
            self.bar = tqdm(total=total_words, initial=initial, unit="w", unit_scale=True,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, words: int, lr: float, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(words - self.last)
            self.bar.set_postfix(lr=f"{lr:.5f}", loss=f"{loss:.4f}", refresh=False)
        self.last = words

    def log(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Checkpointer:
    """Saves the state with its progress every ``minutes``, at epoch ends and on interrupt."""

    def __init__(self, directory: str | None, minutes: float, config: dict, corpus,
                 resumed: bool, rows: dict[str, int] | None = None):
        self.directory, self.minutes, self.config, self.corpus = directory, minutes, config, corpus
        self.rows = rows  # each table's rows, without a vocabulary-sharded run's padding
        self.last_saved = time.monotonic()
        self.last_path = str(checkpoint_path(directory)) if directory and resumed else None

    def due(self) -> bool:
        return bool(self.directory) and time.monotonic() - self.last_saved > 60 * self.minutes

    def save(self, state, progress) -> str | None:
        """Every process calls it: tables split across processes are written by their holders
        (train/checkpoint.py)."""
        if not self.directory:
            return None
        path = save_checkpoint(self.directory, state, progress, self.config,
                               self.corpus.fingerprint, self.rows)
        self.last_saved, self.last_path = time.monotonic(), str(path)
        return self.last_path


@dataclass
class Hooks:
    """Everything the loop does between chunks, for one run."""

    run: Any                                    # train/build.py Run
    callback: Callable[[ChunkEvent], None] | None = None
    clock: Clock = field(default_factory=Clock)
    stop: bool = False
    epoch_losses: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        r = self.run.cfg.run
        self.bar = ProgressBar(r.quiet, self.run.total_words, self.run.progress.words)
        self.metrics = None
        if r.metrics:
            try:
                self.metrics = open(r.metrics, "a")
            except OSError as e:
                raise storage_error(e, r.metrics) from None
        self.checkpointer = Checkpointer(r.checkpoint_dir, r.checkpoint_minutes,
                                         self.run.cfg.to_dict(), self.run.corpus,
                                         bool(r.resume and self.run.progress.words),
                                         {k: v[0] for k, v in self.run.param_shapes.items()})
        self.epoch_loss = [0.0, 0.0]
        self.steps = int(self.run.state.step)
        self.pending: _Pending | None = None

    def close(self) -> None:
        self.bar.close()
        if self.metrics is not None:
            try:
                self.metrics.close()
            except OSError:
                pass  # every line was flushed when written; a failed one has raised already

    # -- per chunk ------------------------------------------------------------------------
    def after_chunk(self, epoch: int, group: list, loss_sum: Any, count: Any,
                    interrupted: threading.Event) -> None:
        """Chunk group ``group`` [(index, Chunk)] was dispatched: book it, read the previous
        group's loss, then callbacks, budgets, interrupts and periodic checkpoints."""
        run, p = self.run, self.run.progress
        index, last = group[-1]
        first_step = self.steps
        self.steps += run.spec.steps_per_chunk * len(group)
        where = (f"block {index}" if run.spec.pipeline == "device"
                 else f"steps {first_step}–{self.steps - 1}")
        p.chunk, p.words = index + 1, last.words_end
        p.examples += sum(c.examples or 0 for _, c in group)
        previous, self.pending = self.pending, _Pending(loss_sum, count, where, epoch)
        self._settle(previous)  # one chunk late: the device is already busy with this one
        seconds = self.clock.seconds
        if self.callback is not None:
            with self.clock.paused():
                self.callback(ChunkEvent(p.words, seconds, epoch, self.mean_loss, run.state.params))
        r = run.cfg.run
        budget_spent = ((r.max_seconds is not None and seconds >= r.max_seconds) or
                        (r.max_words is not None and p.words >= r.max_words))
        # Every process acts as any one asks: a process that stopped, checkpointed (reading the
        # state) or left alone would leave the others waiting in the next chunk's collectives.
        budget_spent, interrupt, due = agree(budget_spent, interrupted.is_set(),
                                             self.checkpointer.due())
        self.stop = self.stop or budget_spent
        if interrupt:
            self._settle_all()
            saved = self.checkpointer.save(run.state, p)
            raise TrainingInterrupted(
                f"interrupted at step {self.step_now()}; " +
                (f"checkpoint saved to {saved} (continue with --resume)" if saved
                 else "no --checkpoint-dir, nothing saved"))
        if due:
            self._settle_all()
            self.checkpointer.save(run.state, p)

    def step_now(self) -> int:
        """Steps so far (read from the state where the device chose the step counts)."""
        if self.run.spec.pipeline == "device":
            return int(fetch(self.run.state.step))
        return self.steps

    def _settle_all(self) -> None:
        self._settle(self.pending)
        self.pending = None

    def _settle(self, pending: _Pending | None) -> None:
        if pending is None:
            return
        loss_sum, count = float(fetch(pending.loss_sum)), float(fetch(pending.count))
        if not math.isfinite(loss_sum):
            raise TrainingDiverged(
                f"loss became {loss_sum} in {pending.steps} "
                f"(epoch {pending.epoch + 1}); last good checkpoint: {self.checkpointer.last_path or 'none'}")
        p = self.run.progress
        p.loss_sum += loss_sum
        p.loss_count += count
        self.epoch_loss[0] += loss_sum
        self.epoch_loss[1] += count
        self.bar.update(p.words, float(self.run.schedule(p.words)), self.mean_loss)

    @property
    def mean_loss(self) -> float:
        p = self.run.progress
        return p.loss_sum / max(p.loss_count, 1.0)

    # -- per epoch ------------------------------------------------------------------------
    def end_epoch(self, epoch: int) -> None:
        """An epoch's chunks are done (or the budget stopped it): losses, log, checkpoint."""
        self._settle_all()
        run, p = self.run, self.run.progress
        self.epoch_losses.append(self.epoch_loss[0] / max(self.epoch_loss[1], 1.0))
        self.epoch_loss = [0.0, 0.0]
        seconds = self.clock.seconds
        if self.stop:
            self.bar.log(f"budget spent after {p.words:,} of {run.cfg.run.epochs * len(run.corpus):,} "
                         f"words ({seconds:.1f} s)")
            return
        p.epoch, p.chunk = epoch + 1, 0
        self.bar.log(f"epoch {epoch + 1}/{run.cfg.run.epochs}: mean loss {self.epoch_losses[-1]:.4f}, "
                     f"{p.words:,} words, {seconds:.1f} s")
        if self.metrics is not None:
            line = json.dumps({"epoch": epoch + 1, "loss": self.epoch_losses[-1], "words": p.words,
                               "seconds": seconds, "step": self.step_now()}) + "\n"
            try:
                self.metrics.write(line)
                self.metrics.flush()
            except OSError as e:
                raise storage_error(e, run.cfg.run.metrics) from None
        self.checkpointer.save(run.state, p)
