"""Fixed-shape training chunks ``[steps, batch, ...]`` from a corpus, one epoch at a time.

Every chunk has the same shapes, so the jitted training call compiles once. The last chunk of an
epoch is padded with ``mask = 0`` rows: every pair of the epoch appears exactly once, none is
dropped. The whole stream is a pure function of (corpus, spec, epoch): same seed, same chunks.
A background thread (:class:`Prefetcher`) builds the next chunk while the device computes.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator, Literal, NamedTuple

import numpy as np

from sgns_jax.data.corpus import Corpus
from sgns_jax.data.pairs import check_window, context_windows, keep_probabilities, skipgram_pairs
from sgns_jax.errors import ConfigError

Layout = Literal["pairs", "windows"]


@dataclass(frozen=True)
class BatchSpec:
    """How an epoch is cut into fixed-shape chunks.

    ``batch_size`` counts rows per step: pairs in the ``pairs`` layout, centres in ``windows``.
    """

    layout: Layout = "pairs"
    batch_size: int = 1024
    steps_per_chunk: int = 32
    window: int = 5
    sample: float = 1e-3
    seed: int = 0
    block_tokens: int = 1 << 20

    def __post_init__(self) -> None:
        check_window(self.window)
        if self.layout not in ("pairs", "windows"):
            raise ConfigError(f"layout must be 'pairs' or 'windows', got {self.layout!r}")
        if self.batch_size < 1 or self.steps_per_chunk < 1:
            raise ConfigError("batch_size and steps_per_chunk must be >= 1")
        if self.sample < 0:
            raise ConfigError(f"sample must be >= 0, got {self.sample}")


class Chunk(NamedTuple):
    """One jitted call's worth of steps.

    ``arrays``: pairs layout — ``input``, ``output`` int32 [T, B], ``mask`` float32 [T, B];
    windows layout — ``centre`` int32 [T, B], ``context`` int32 [T, B, 2W], ``mask`` float32
    [T, B, 2W]. Both carry ``words`` float32 [T]: corpus words (in-vocabulary tokens, all epochs
    before this one included) read before each step, which drives the learning-rate schedule.
    ``words_end``: words read after the chunk. ``examples``: unpadded rows in the chunk.
    """

    arrays: dict[str, np.ndarray]
    words_end: int
    examples: int


def _blocks(corpus: Corpus, block_tokens: int) -> Iterator[tuple[int, int]]:
    """Token ranges of about ``block_tokens`` that start and end on sentence boundaries."""
    n = len(corpus)
    starts = corpus.sentence_starts
    cuts = np.unique(starts[np.searchsorted(starts, np.arange(0, n, block_tokens))])
    bounds = np.append(cuts, n)
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b > a:
            yield int(a), int(b)


def epoch_examples(corpus: Corpus, spec: BatchSpec, epoch: int) -> Iterator[dict[str, np.ndarray]]:
    """The epoch's examples block by block, each a dict of arrays with a leading example axis
    plus ``pos`` (int64, corpus position of the example's centre)."""
    rng = np.random.default_rng([spec.seed, epoch])
    keep_p = keep_probabilities(corpus.vocab.counts, spec.sample)
    for a, b in _blocks(corpus, spec.block_tokens):
        ids = np.asarray(corpus.ids[a:b])
        sent = corpus.sentence_ids(a, b)
        kept = np.flatnonzero(rng.random(ids.size) < keep_p[ids])
        ids, sent = ids[kept], sent[kept]
        reduced = rng.integers(1, spec.window + 1, size=ids.size)
        if spec.layout == "pairs":
            inp, out, row = skipgram_pairs(ids, sent, reduced, spec.window)
            yield {"input": inp, "output": out, "mask": np.ones(inp.size, np.float32),
                   "pos": a + kept[row]}
        else:
            centre, context, mask, row = context_windows(ids, sent, reduced, spec.window)
            yield {"centre": centre, "context": context, "mask": mask.astype(np.float32),
                   "pos": a + kept[row]}


def epoch_chunks(corpus: Corpus, spec: BatchSpec, epoch: int) -> Iterator[Chunk]:
    """Fixed-shape chunks of one epoch; the last one padded with zero masks."""
    rows = spec.steps_per_chunk * spec.batch_size
    n_words = len(corpus)
    base = epoch * n_words

    def emit(parts: list[dict[str, np.ndarray]], last_words: int) -> Chunk:
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        count = cat["pos"].shape[0]
        if count < rows:  # pad the ragged tail: zero mask, ids 0, positions at the epoch's end
            pad = rows - count
            cat = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in cat.items()}
            cat["pos"][count:] = n_words
        pos = cat.pop("pos").reshape(spec.steps_per_chunk, spec.batch_size)
        arrays = {k: v.reshape((spec.steps_per_chunk, spec.batch_size) + v.shape[1:])
                  for k, v in cat.items()}
        arrays["words"] = (base + pos[:, 0]).astype(np.float32)
        return Chunk(arrays, base + last_words, count)

    leftover: dict[str, np.ndarray] | None = None  # fewer than `rows` examples
    for block in epoch_examples(corpus, spec, epoch):
        cat = block if leftover is None else {k: np.concatenate([leftover[k], block[k]]) for k in block}
        count = cat["pos"].shape[0]
        start = 0
        while count - start >= rows:
            head = {k: v[start:start + rows] for k, v in cat.items()}
            start += rows
            # Words read by the end of this chunk: up to the next example's centre.
            next_pos = int(cat["pos"][start]) if start < count else int(head["pos"][-1]) + 1
            yield emit([head], next_pos)
        leftover = {k: v[start:].copy() for k, v in cat.items()}
    if leftover is not None and leftover["pos"].shape[0] > 0:
        yield emit([leftover], n_words)


class Prefetcher:
    """Runs an iterator in a daemon thread, ``depth`` items ahead of the consumer.

    Exceptions raised by the producer are re-raised in the consumer at the point they occurred.
    """

    _DONE = object()

    def __init__(self, iterator: Iterator, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iterator,), daemon=True)
        self._thread.start()

    def _run(self, iterator: Iterator) -> None:
        try:
            for item in iterator:
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._queue.put(self._DONE)
        except BaseException as e:  # hand it to the consumer
            self._queue.put(e)

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self):
        item = self._queue.get()
        if item is self._DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
