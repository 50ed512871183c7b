"""Fixed-shape training chunks ``[steps, batch, ...]`` from a corpus, one epoch at a time.

Every chunk has the same shapes, so the jitted training call compiles once. The last chunk of an
epoch is padded with ``mask = 0`` rows: every pair of the epoch appears exactly once, none is
dropped. A chunk's steps are strided through it (:func:`strided_steps`): step ``t`` takes its
examples ``t, t + T, t + 2T, …``. The whole stream is a pure function of (corpus, spec, epoch):
same seed, same chunks. A background thread (:class:`Prefetcher`) builds the next chunk while
the device computes.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator, Literal, NamedTuple

import numpy as np

from sgns_jax.data.corpus import Corpus
from sgns_jax.data.device_batches import epoch_token_blocks, zero_block
from sgns_jax.data.pairs import check_window, context_windows, keep_probabilities, skipgram_pairs
from sgns_jax.errors import ConfigError

Layout = Literal["pairs", "windows"]
Pipeline = Literal["host", "device"]
PIPELINES: tuple[Pipeline, ...] = ("host", "device")  # where a run's batches can be made
BLOCK_TOKENS = {"host": 1 << 15, "device": 1 << 17}


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
    # Tokens per block; None: the pipeline's own. The host pipeline turns a block into examples
    # with numpy temporaries of ~0.4 KB a token, kept by the heap between blocks: small blocks
    # keep them small (docs/performance_notes.md). The device pipeline sends a block per call.
    block_tokens: int | None = None
    sentence_words: int = 1000  # word2vec's MAX_SENTENCE_LENGTH, in kept (subsampled) words
    # "device": blocks of ids, the examples made on the device (data/device_batches.py).
    pipeline: Pipeline = "host"

    def __post_init__(self) -> None:
        check_window(self.window)
        if self.layout not in ("pairs", "windows"):
            raise ConfigError(f"layout must be 'pairs' or 'windows', got {self.layout!r}")
        if self.batch_size < 1 or self.steps_per_chunk < 1 or self.sentence_words < 1:
            raise ConfigError("batch_size, steps_per_chunk and sentence_words must be >= 1")
        if self.sample < 0:
            raise ConfigError(f"sample must be >= 0, got {self.sample}")
        if self.pipeline not in PIPELINES:
            raise ConfigError(f"pipeline must be 'host' or 'device', got {self.pipeline!r}")
        if self.block_tokens is None:
            object.__setattr__(self, "block_tokens", BLOCK_TOKENS[self.pipeline])


    def zero_chunk(self) -> dict[str, np.ndarray]:
        """A chunk's arrays filled with zeros: the shapes and dtypes every chunk has (for
        compiling the training call before the clock starts)."""
        if self.pipeline == "device":
            return zero_block(self.block_tokens)
        tb = (self.steps_per_chunk, self.batch_size)
        if self.layout == "pairs":
            arrays = {"input": np.zeros(tb, np.int32), "output": np.zeros(tb, np.int32),
                      "mask": np.zeros(tb, np.float32)}
        else:
            slots = tb + (2 * self.window,)
            arrays = {"centre": np.zeros(tb, np.int32), "context": np.zeros(slots, np.int32),
                      "mask": np.zeros(slots, np.float32)}
        return {**arrays, "words": np.zeros(self.steps_per_chunk, np.float32)}


class Chunk(NamedTuple):
    """One jitted call's worth of steps.

    ``arrays``: pairs layout — ``input``, ``output`` int32 [T, B], ``mask`` float32 [T, B];
    windows layout — ``centre`` int32 [T, B], ``context`` int32 [T, B, 2W], ``mask`` float32
    [T, B, 2W]. Both carry ``words`` float32 [T]: corpus words (in-vocabulary tokens, all epochs
    before this one included) read before each step, which drives the learning-rate schedule.
    ``words_end``: words read after the chunk. ``examples``: unpadded rows in the chunk (None
    for a block of the device pipeline, whose arrays are :func:`~sgns_jax.data.device_batches.
    zero_block`'s: its examples are made and counted on the device).
    """

    arrays: dict[str, np.ndarray]
    words_end: int
    examples: int | None


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
    plus ``pos`` (int64, corpus position of the example's centre).

    word2vec's order of operations: subsample each token, then cut every line into sentences
    of ``spec.sentence_words`` *kept* tokens; windows never cross a sentence. Pairs follow
    word2vec's skip-gram orientation: ``input`` is the context word, ``output`` the centre.
    """
    rng = np.random.default_rng([spec.seed, epoch])
    keep_p = keep_probabilities(corpus.vocab.counts, spec.sample)
    line_starts = np.append(corpus.line_starts, len(corpus))
    # Kept tokens of a sentence that the block boundary cut: carried into the next block.
    carry = {"ids": np.zeros(0, np.int32), "pos": np.zeros(0, np.int64),
             "reduced": np.zeros(0, np.int64)}
    for a, b in _blocks(corpus, spec.block_tokens):
        ids = corpus.read_ids(a, b)
        kept = np.flatnonzero(rng.random(ids.size) < keep_p[ids])
        block = {"ids": ids[kept].astype(np.int32), "pos": a + kept,
                 "reduced": rng.integers(1, spec.window + 1, size=kept.size)}
        block = {k: np.concatenate([carry[k], block[k]]) for k in block}
        sent = sentence_of_kept(corpus.line_ids(block["pos"]), spec.sentence_words)
        # A line running on past this block: its last, unfinished sentence waits for the rest.
        line_ends_here = line_starts[np.searchsorted(line_starts, b)] == b
        cut = sent.size if line_ends_here or not sent.size else int(np.searchsorted(sent, sent[-1]))
        carry = {k: v[cut:] for k, v in block.items()}
        block, sent = {k: v[:cut] for k, v in block.items()}, sent[:cut]
        if sent.size:
            yield _layout_examples(block, sent, spec)


def sentence_of_kept(line_ids: np.ndarray, sentence_words: int) -> np.ndarray:
    """Sentence index (int64, increasing) of each kept token, given its line (non-decreasing):
    each line's kept tokens cut into runs of ``sentence_words``, as word2vec's
    ``MAX_SENTENCE_LENGTH`` counts the words left after subsampling."""
    n = line_ids.size
    if n == 0:
        return np.zeros(0, np.int64)
    new_line = np.concatenate([[True], line_ids[1:] != line_ids[:-1]])
    line_first = np.maximum.accumulate(np.where(new_line, np.arange(n), 0))
    rank = np.arange(n) - line_first
    new_sentence = new_line | (rank % sentence_words == 0)
    return np.cumsum(new_sentence) - 1


def _layout_examples(block: dict[str, np.ndarray], sent: np.ndarray,
                     spec: BatchSpec) -> dict[str, np.ndarray]:
    ids, pos = block["ids"], block["pos"]
    if spec.layout == "pairs":
        centre, context, row = skipgram_pairs(ids, sent, block["reduced"], spec.window)
        return {"input": context, "output": centre, "mask": np.ones(centre.size, np.float32),
                "pos": pos[row]}
    centre, context, mask, row = context_windows(ids, sent, block["reduced"], spec.window)
    return {"centre": centre, "context": context, "mask": mask.astype(np.float32),
            "pos": pos[row]}


def strided_steps(rows: np.ndarray, steps: int) -> np.ndarray:
    """``[T·B, ...]`` examples in corpus order → ``[T, B, ...]`` steps, step ``t`` holding
    examples ``t, t + T, t + 2T, …``: a step's rows are spread through the chunk.

    A step computes all its updates on the parameters before it, which word2vec applies one
    pair at a time. Consecutive centres share their context words (each token is a context of
    ~2·window centres) and, under hierarchical softmax, every pair moves the root and the top
    nodes, so a step of consecutive windows sums correlated updates computed on the same stale
    rows and overshoots. Spread out, a step's windows share no tokens and each token's windows
    fall in consecutive steps, which see its updated vector, as word2vec's sequential pass
    does. Measured with a C transcription of word2vec's skip-gram HS (bundled corpus, 5 epochs,
    4 seeds): 64 consecutive windows a step scored 0.90 analogy points below one pair at a time,
    64 spread-out windows 0.09 below (``experiments/research/ablate_hs_gap.py``).
    """
    batch = rows.shape[0] // steps
    return np.ascontiguousarray(rows.reshape((batch, steps) + rows.shape[1:]).swapaxes(0, 1))


def epoch_chunks(corpus: Corpus, spec: BatchSpec, epoch: int) -> Iterator[Chunk]:
    """Fixed-shape chunks of one epoch; the last one padded with zero masks. For the device
    pipeline, one block of ids per chunk."""
    if spec.pipeline == "device":
        for arrays, words_end in epoch_token_blocks(corpus, spec.block_tokens, epoch):
            yield Chunk(arrays, words_end, None)
        return
    rows = spec.steps_per_chunk * spec.batch_size
    n_words = len(corpus)
    base = epoch * n_words

    def emit(cat: dict[str, np.ndarray]) -> Chunk:
        count = cat["pos"].shape[0]
        if count < rows:  # pad the ragged tail: zero mask, ids 0, positions at the epoch's end
            pad = rows - count
            cat = {k: np.concatenate([v, np.zeros((pad,) + v.shape[1:], v.dtype)]) for k, v in cat.items()}
            cat["pos"][count:] = n_words
        pos = strided_steps(cat.pop("pos"), spec.steps_per_chunk)
        arrays = {k: strided_steps(v, spec.steps_per_chunk) for k, v in cat.items()}
        arrays["words"] = (base + pos[:, 0]).astype(np.float32)
        return Chunk(arrays, base + int(pos[0, 0]), count)  # words_end set by the caller

    # A chunk is yielded once the next one exists: its words_end is where the next chunk's
    # first example sits (the epoch's end for the last chunk).
    pending: Chunk | None = None
    leftover: dict[str, np.ndarray] | None = None  # fewer than `rows` examples
    for block in epoch_examples(corpus, spec, epoch):
        cat = block if leftover is None else {k: np.concatenate([leftover[k], block[k]]) for k in block}
        count = cat["pos"].shape[0]
        start = 0
        while count - start >= rows:
            chunk = emit({k: v[start:start + rows] for k, v in cat.items()})
            if pending is not None:
                yield pending._replace(words_end=chunk.words_end)
            pending = chunk
            start += rows
        leftover = {k: v[start:].copy() for k, v in cat.items()}
    if leftover is not None and leftover["pos"].shape[0] > 0:
        chunk = emit(leftover)
        if pending is not None:
            yield pending._replace(words_end=chunk.words_end)
        pending = chunk
    if pending is not None:
        yield pending._replace(words_end=base + n_words)


class Prefetcher:
    """Runs an iterator in a background thread, ``depth`` items ahead of the consumer.

    Exceptions raised by the producer are re-raised in the consumer at the point they occurred.
    :meth:`close` stops the producer and joins its thread: call it on every way out (a thread
    still running numpy while the interpreter shuts down aborts the process with
    ``terminate called after throwing an instance of ''``).
    """

    _DONE = object()

    def __init__(self, iterator: Iterator, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iterator,), daemon=True,
                                        name="sgns-prefetch")
        self._thread.start()

    def _put(self, item) -> bool:
        """Queue ``item`` unless asked to stop first; False when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, iterator: Iterator) -> None:
        try:
            for item in iterator:
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as e:  # hand it to the consumer
            self._put(e)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a generator's own cleanup runs here, in its thread

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
        """Stop the producer and wait for its thread (at most the item it is building)."""
        self._stop.set()
        self._thread.join()
