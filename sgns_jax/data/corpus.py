"""Corpus file(s) → vocabulary + int32 id array, streamed, cached on disk as memory-mapped .npy.

One pass over the text: each new word gets a provisional id in first-occurrence order, the
provisional ids go to a temp file on disk, and the counts come from a bincount. After the
vocabulary is pruned, the provisional ids are remapped block by block into the final array. The
raw text is never held in memory beyond one block, nor the id stream beyond one block.

Lines and sentences: the corpus records where each line starts (``line_starts``) and stores
lines cut into pieces of at most ``max_sentence_length`` in-vocabulary tokens
(``sentence_starts``), so a text8-style single-line corpus can still be read block by block and
split into held-out documents. Training windows never cross a line; within a line, word2vec's
1,000-word sentence cut is applied *after* subsampling, by the batcher
(:func:`sgns_jax.data.batches.epoch_examples`), as word2vec.c counts kept words.
"""

from __future__ import annotations

import bz2
import contextlib
import fcntl
import glob
import gzip
import hashlib
import json
import mmap
import os
import shutil
import tempfile
import warnings
import zlib
from array import array
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np

from sgns_jax.data.vocab import Vocabulary, check_vocab_settings
from sgns_jax.errors import ConfigError, CorpusError
from sgns_jax.io_utils import atomic_write, fsync_dir, storage_error, unlocked

CACHE_FORMAT_VERSION = 3  # 3: meta.json records every file's size and SHA-256
ENTRY_FILES = ("ids.npy", "sentence_starts.npy", "line_starts.npy", "vocab.txt")
BLOCK_BYTES = 1 << 20
_WHITESPACE = b" \t\n\r\x0b\x0c"


class NotUtf8Warning(UnicodeWarning):
    """The corpus has bytes that are not valid UTF-8; they were decoded as U+FFFD."""


@dataclass(frozen=True)
class Corpus:
    """An encoded corpus: the vocabulary, the in-vocabulary token ids, lines and sentences.

    ``ids`` (int32 [N]) holds only words of the vocabulary, in corpus order (often a read-only
    memory map). ``sentence_starts`` (int64 [S]) are the offsets in ``ids`` where each stored
    sentence (a line, or a piece of a long line) begins, increasing, starting at 0;
    ``line_starts`` (int64 [L], a subset of them) where each line begins (None: every sentence
    is a line). ``raw_tokens`` counts every token read, OOV included.
    """

    vocab: Vocabulary
    ids: np.ndarray
    sentence_starts: np.ndarray
    raw_tokens: int
    line_starts: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.line_starts is None:
            object.__setattr__(self, "line_starts", self.sentence_starts)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def read_ids(self, start: int, stop: int) -> np.ndarray:
        """``ids[start:stop]`` as a fresh array. From a cache entry, read from its file rather
        than through the memory map: pages read through a map stay resident in the process,
        so its RSS would grow with the corpus over an epoch (4 GB at 1 B tokens)."""
        return _read_rows(self.ids, start, stop)

    @cached_property
    def fingerprint(self) -> dict:
        """What this corpus is, to check a checkpoint against: its sizes and the SHA-256 of its
        vocabulary (words and counts) and of its encoded text (ids, sentence and line starts).
        Computed once per object (about 15 ms per 5 M tokens)."""
        vocab = hashlib.sha256("\n".join(self.vocab.words).encode("utf-8"))
        vocab.update(np.ascontiguousarray(self.vocab.counts, dtype="<i8").tobytes())
        text = hashlib.sha256()
        for array in (self.ids, self.sentence_starts, self.line_starts):
            for start in range(0, max(len(array), 1), 1 << 22):  # read, not mapped (read_ids)
                text.update(np.ascontiguousarray(_read_rows(array, start, start + (1 << 22))).view(np.uint8))
        return {"vocab_words": len(self.vocab), "vocab_sha256": vocab.hexdigest(),
                "tokens": len(self), "raw_tokens": int(self.raw_tokens),
                "text_sha256": text.hexdigest()}

    def select_sentences(self, keep: np.ndarray) -> "Corpus":
        """A corpus (same vocabulary) of the sentences where ``keep`` (bool [S]) is True, in
        order; ``raw_tokens`` is scaled by the share of tokens kept. A kept piece continues its
        line only if the piece before it was kept too."""
        all_lengths = np.diff(np.append(self.sentence_starts, len(self)))
        lengths = all_lengths[keep]
        ids = np.asarray(self.ids)[np.repeat(keep, all_lengths)]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        begins_line = np.isin(self.sentence_starts, self.line_starts)
        begins_line[1:] |= ~keep[:-1]
        raw = int(round(self.raw_tokens * ids.size / max(len(self), 1)))
        return Corpus(self.vocab, ids, starts, raw, starts[begins_line[keep]])

    def split_heldout(self, fraction: float) -> tuple["Corpus", "Corpus"]:
        """(train, held-out): every ``round(1/fraction)``-th sentence is held out."""
        every = max(2, int(round(1 / fraction)))
        held = np.arange(len(self.sentence_starts)) % every == every - 1
        return self.select_sentences(~held), self.select_sentences(held)

    def count_vocabulary(self, min_count: int = 5, max_vocab: int | None = None) -> Vocabulary:
        """A vocabulary counted on this corpus's own tokens (e.g. a training split), pruned."""
        counts = np.bincount(np.asarray(self.ids), minlength=len(self.vocab))
        return Vocabulary.from_counts(self.vocab.words, counts, min_count=min_count,
                                      max_vocab=max_vocab)

    def with_vocabulary(self, vocab: Vocabulary) -> "Corpus":
        """This text re-encoded with ``vocab``: its words outside ``vocab`` are dropped, as
        out-of-vocabulary words are when a corpus is read; sentences and lines left empty go."""
        remap = np.array([vocab.get(w, -1) for w in self.vocab.words], dtype=np.int32)
        new = remap[np.asarray(self.ids)]
        keep = new >= 0
        before = np.concatenate([[0], np.cumsum(keep)])  # kept tokens before each position
        n = int(before[-1])

        def starts(old: np.ndarray) -> np.ndarray:
            s = np.unique(before[old])
            return s[s < n] if n else s[:1]

        return Corpus(vocab, new[keep], starts(self.sentence_starts), self.raw_tokens,
                      starts(self.line_starts))

    def head(self, tokens: int) -> "Corpus":
        """The first sentences holding at most about ``tokens`` tokens."""
        return self.select_sentences(self.sentence_starts < tokens)

    def sentence_ids(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Stored-sentence index (int64) of each token in ``ids[start:stop]``."""
        stop = len(self) if stop is None else stop
        return np.searchsorted(self.sentence_starts, np.arange(start, stop), side="right") - 1

    def line_ids(self, positions: np.ndarray) -> np.ndarray:
        """Line index (int64) of the tokens at ``positions``."""
        return np.searchsorted(self.line_starts, positions, side="right") - 1


def corpus_files(path: str | os.PathLike) -> list[Path]:
    """The file itself, or the regular non-hidden files of a directory in sorted order."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise CorpusError(f"corpus directory has no files: {path}")
        return files
    if not path.exists():
        raise CorpusError(f"corpus not found: {path}")
    if not path.is_file():
        raise CorpusError(f"corpus is not a regular file: {path}")
    return [path]


def _read_rows(array: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``array[start:stop]`` (1-D) as a fresh array; a whole memory-mapped file's rows are read
    from the file (see ``Corpus.read_ids``)."""
    stop = min(stop, len(array))
    if isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.filename:
        return np.fromfile(array.filename, dtype=array.dtype, count=max(stop - start, 0),
                           offset=array.offset + start * array.dtype.itemsize)
    return np.array(array[start:stop])


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def iter_text_blocks(path: Path, block_bytes: int | None = None, start: int = 0,
                     end: int | None = None) -> Iterator[str]:
    """Decoded text of ``path`` in blocks that end on ASCII whitespace (so no token or UTF-8
    sequence is split). Invalid UTF-8 is replaced with U+FFFD and warned about once per file,
    with the byte offset (in the decompressed stream) of the first bad byte. ``start``/``end``:
    a byte range of an uncompressed file, cut where whitespace ends (see ``_parts``)."""
    block_bytes = block_bytes or BLOCK_BYTES
    warned = False
    offset = start
    carry = b""
    try:
        with _open(path) as f:
            if start:
                f.seek(start)
            first = not start  # a file's first bytes are checked for binary, not a part's
            while True:
                raw = f.read(block_bytes if end is None else max(0, min(block_bytes, end - f.tell())))
                if first and b"\x00" in raw[:8192]:
                    raise CorpusError(f"corpus looks binary, not text (NUL bytes): {path}")
                first = False
                data = carry + raw
                if raw:
                    cut = max(data.rfind(bytes([c])) for c in _WHITESPACE) + 1
                    if cut == 0:  # no whitespace yet: keep reading (a very long token)
                        carry = data
                        continue
                    data, carry = data[:cut], data[cut:]
                else:
                    carry = b""
                if not data:
                    break
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    if not warned:
                        warnings.warn(
                            f"{path}: invalid UTF-8 at byte offset {offset + e.start}; "
                            "decoding with replacement characters", NotUtf8Warning, stacklevel=2)
                        warned = True
                    text = data.decode("utf-8", errors="replace")
                offset += len(data)
                yield text
                if not raw:
                    break
    except (OSError, EOFError, zlib.error) as e:
        if isinstance(e, FileNotFoundError):
            raise CorpusError(f"corpus not found: {path}") from None
        raise CorpusError(f"cannot read corpus {path}: {e}") from None


def _scan(files: list[Path], lowercase: bool, ids_file: IO[bytes]) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """One pass: write provisional ids (int32) to ``ids_file``; return the words in first-
    occurrence order, their counts, and the token offsets where lines end."""
    return _scan_texts([(iter_text_blocks(path), True) for path in files], lowercase, ids_file)


def _scan_texts(sources, lowercase: bool, ids_file: IO[bytes]) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """``_scan`` over ``sources``: (text blocks, whether a file ends after them)."""
    index: dict[str, int] = {}
    setdefault = index.setdefault
    line_ends = array("q")
    total = 0
    counts = np.zeros(0, dtype=np.int64)
    for blocks, file_ends in sources:
        for text in blocks:
            if lowercase:
                text = text.lower()
            block = array("i")
            for line in text.split("\n"):
                toks = line.split()
                if toks:
                    block.extend([setdefault(w, len(index)) for w in toks])
                line_ends.append(total + len(block))
            # The block ended on whitespace, not necessarily on a newline: the last "line end"
            # recorded above is only real if the block ended with "\n".
            if not text.endswith("\n"):
                line_ends.pop()
            ids = np.frombuffer(block, dtype=np.int32)
            total += ids.size
            if len(index) > counts.size:
                counts = np.concatenate([counts, np.zeros(len(index) - counts.size, np.int64)])
            counts += np.bincount(ids, minlength=counts.size)
            ids_file.write(ids.tobytes())
        if file_ends:
            line_ends.append(total)  # a file's end ends a line
    return list(index), counts, np.frombuffer(line_ends, dtype=np.int64), total


# The scan's tokenising is Python (str.split, a dict): a corpus of more than PARALLEL_SCAN_BYTES
# is cut into parts of about PART_BYTES (its files; an uncompressed file also at whitespace
# inside it) scanned by one process per core, and their words and ids merged in order.
PARALLEL_SCAN_BYTES = 16 << 20
PART_BYTES = 8 << 20
# From SCAN_PROCESS_BYTES up a corpus is scanned in another process even when it is one part:
# the scan's millions of short-lived token strings leave Python's small-object arenas pinned
# by the few that live on (the words), ~35 MB on mid.txt.gz (12 MB file) kept by the training
# process for its whole run; a scan process gives them back when it exits.
SCAN_PROCESS_BYTES = 4 << 20


def _parts(files: list[Path], part_bytes: int) -> list[tuple[Path, int, int | None, bool]]:
    """(file, first byte, end byte or None, whether the file ends there) of every part. A
    plain file is cut just after a whitespace byte (never inside a token or a UTF-8
    sequence); a compressed file is one part."""
    parts = []
    for path in files:
        size = path.stat().st_size
        if path.suffix in (".gz", ".bz2") or size <= part_bytes:
            parts.append((path, 0, None, True))
            continue
        cuts = [0]
        with open(path, "rb") as f:
            while cuts[-1] + part_bytes < size:
                f.seek(cuts[-1] + part_bytes)
                pos = f.tell()
                while True:
                    data = f.read(1 << 16)
                    hits = [i for i in (data.find(bytes([c])) for c in _WHITESPACE) if i >= 0]
                    if hits or not data:
                        break
                    pos += len(data)
                if not hits:
                    break  # no whitespace to the end: the rest is one part
                cuts.append(pos + min(hits) + 1)
        cuts = [c for c in cuts if c < size]
        parts += [(path, a, b, b is None) for a, b in zip(cuts, cuts[1:] + [None])]
    return parts


def _scan_part(job: tuple) -> tuple[list[str], np.ndarray, np.ndarray, int, list[str]]:
    """A scan process's job (``scan_worker.py``): one part scanned into ``ids_path``, with its
    words (in its own first-occurrence order), counts, line ends, tokens and warnings."""
    path, start, end, file_ends, lowercase, ids_path = job
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with open(ids_path, "wb") as f:
            words, counts, line_ends, total = _scan_texts(
                [(iter_text_blocks(Path(path), start=start, end=end), file_ends)], lowercase, f)
    return words, counts, line_ends, total, [str(w.message) for w in caught
                                             if issubclass(w.category, NotUtf8Warning)]


def _scan_files(files: list[Path], lowercase: bool, ids_file: IO[bytes], ends_file: IO[bytes],
                work: Path, processes: int | None = None) -> tuple[list[str], np.ndarray, int]:
    """``_scan``, in scan processes where the corpus is not small, on every core where it is
    large: the parts' results equal one pass's — a part's new words are numbered after every
    earlier part's, in the order they first occur in it, which is the order one pass meets
    them. The line ends (int64, in provisional token offsets, non-decreasing, repeats allowed)
    go to ``ends_file``: 8 bytes a line, which a large corpus of short lines would otherwise
    hold in memory several times over. Returns the words, their counts and the token count."""
    if processes is None:
        affinity = getattr(os, "sched_getaffinity", None)  # Linux; elsewhere every core
        processes = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    size = sum(f.stat().st_size for f in files)
    if size < SCAN_PROCESS_BYTES:
        words, counts, line_ends, total = _scan(files, lowercase, ids_file)
        ends_file.write(line_ends.tobytes())
        return words, counts, total
    if processes >= 2 and size >= PARALLEL_SCAN_BYTES:
        parts = _parts(files, PART_BYTES)
    else:
        parts = [(path, 0, None, True) for path in files]
    jobs = [(str(path), a, b, ends, lowercase, str(work / f"part-{i}.i32"))
            for i, (path, a, b, ends) in enumerate(parts)]
    index: dict[str, int] = {}
    counts = np.zeros(0, dtype=np.int64)
    total, warned = 0, set()
    with _ScanProcesses(min(processes, len(jobs)), jobs) as results:
        for job, (words, part_counts, part_ends, part_total, messages) in zip(jobs, results):
            for message in messages[:1]:
                if job[0] not in warned:  # once per file, as one pass warns
                    warned.add(job[0])
                    warnings.warn(message, NotUtf8Warning, stacklevel=3)
            to_global = np.fromiter((index.setdefault(w, len(index)) for w in words),
                                    dtype=np.int32, count=len(words))
            counts = np.concatenate([counts, np.zeros(len(index) - counts.size, np.int64)])
            counts[to_global] += part_counts
            ends_file.write((np.unique(part_ends) + total).tobytes())  # repeats (blank lines, block ends) dropped
            for ids in _file_blocks(Path(job[-1]), np.int32, 1 << 20):
                ids_file.write(to_global[ids].tobytes())
            os.unlink(job[-1])
            total += part_total
    return list(index), counts, total


class _ScanProcesses:
    """``processes`` scan processes (``sgns_jax/data/scan_worker.py``) working through
    ``jobs``, job ``i`` on process ``i mod processes``; iterating yields the results in job
    order. Each process is handed its next job as it returns one (two ahead), and a thread per
    process reads its results as they come (a process never waits, its result half written,
    for this one to finish the part before). Leaving the ``with`` block, normally or not (an
    error, a Ctrl-C), stops them all."""

    AHEAD = 2

    def __init__(self, processes: int, jobs: list[tuple]):
        import pickle
        import queue
        import subprocess
        import sys
        import threading

        self.jobs, self._pickle = jobs, pickle
        # The scan processes import from exactly this process's sys.path (as multiprocessing's
        # spawn does), set before anything of ours is imported (-P: not the current folder
        # first, where a json.py would be found before the standard library's).
        paths = json.dumps([os.path.abspath(p) if p else os.getcwd() for p in sys.path])
        stub = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
                "from sgns_jax.data.scan_worker import main; main()")
        self.procs: list = []
        self.replies = [queue.SimpleQueue() for _ in range(processes)]
        try:
            for replies in self.replies:
                # Their own session: a Ctrl-C at the terminal reaches this process only, which
                # stops them (and if this process is killed, they see their pipes close and
                # exit after the part at hand).
                proc = subprocess.Popen([sys.executable, "-P", "-c", stub, paths], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, start_new_session=True)
                self.procs.append(proc)
                threading.Thread(target=self._read, args=(proc, replies), daemon=True).start()
            for i in range(min(len(jobs), self.AHEAD * processes)):
                self._send(i)
        except BaseException:
            self.__exit__()
            raise

    def _read(self, proc, replies) -> None:
        while True:
            try:
                replies.put(self._pickle.load(proc.stdout))
            except Exception:  # EOF (the process ended) or a reply cut short: the end of its replies
                replies.put(None)
                return

    def _send(self, i: int) -> None:
        proc = self.procs[i % len(self.procs)]
        self._pickle.dump(self.jobs[i], proc.stdin)
        proc.stdin.flush()
        if i + len(self.procs) >= len(self.jobs):  # its last job
            proc.stdin.close()

    def __enter__(self) -> Iterator[tuple]:
        return self._results()

    def _results(self) -> Iterator[tuple]:
        for i in range(len(self.jobs)):
            proc = self.procs[i % len(self.procs)]
            reply = self.replies[i % len(self.procs)].get()
            if reply is None:  # it ended, or its reply could not be read: stop it either way
                proc.kill()
                raise CorpusError(f"a corpus scan process ended without its result (exit code "
                                  f"{proc.wait()}) while reading {self.jobs[i][0]}")
            status, value = reply
            if status == "error":
                raise value
            if i + self.AHEAD * len(self.procs) < len(self.jobs):
                self._send(i + self.AHEAD * len(self.procs))
            yield value

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()
            with contextlib.suppress(OSError):
                proc.stdin.close()


def _pieces(end_blocks: Iterable[np.ndarray], max_len: int) -> Iterator[np.ndarray]:
    """Starts of the non-empty pieces of lines ``[end_{i-1}, end_i)`` cut every ``max_len``,
    from the line ends given block by block (each non-decreasing and after the block before,
    repeats allowed), block by block: memory for one block only."""
    last = 0  # the end of the last line so far (the first line starts at 0)
    for block in end_blocks:
        ends = np.unique(block)
        ends = ends[ends > last]  # repeats of the last end, and empty lines at the start
        if not ends.size:
            continue
        starts = np.concatenate([[last], ends[:-1]]).astype(np.int64)
        last = int(ends[-1])
        lengths = ends - starts
        if lengths.max() <= max_len:  # no line to cut (lines always): fewer temporaries
            yield starts
            continue
        pieces = (lengths + max_len - 1) // max_len
        line_of_piece = np.repeat(np.arange(starts.size), pieces)
        first_piece = np.cumsum(pieces) - pieces
        within = np.arange(pieces.sum()) - first_piece[line_of_piece]
        yield (starts[line_of_piece] + within * max_len).astype(np.int64)


def _file_blocks(path: Path, dtype: type, count: int) -> Iterator[np.ndarray]:
    """The raw ``dtype`` file at ``path``, ``count`` values at a time."""
    with open(path, "rb") as f:
        while (block := np.fromfile(f, dtype=dtype, count=count)).size:
            yield block


# Line ends 2^16 at a time: 0.5 MB, and the sentence cutting's temporaries a few times that,
# however many lines the corpus has.
ENDS_BLOCK = 1 << 16


def _write_npy_header(f: IO[bytes], dtype: type, length: int) -> None:
    """The header ``np.save`` writes for a 1-D ``dtype`` array of ``length`` values."""
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
            "shape": (length,)})


def _save_blocks(path: Path, blocks: Iterable[np.ndarray], work: Path) -> None:
    """``np.save(path, np.concatenate(blocks))`` (int64) without holding the blocks: they go
    to a raw file first, then behind the .npy header once their length is known."""
    raw = work / (path.name + ".raw")
    with open(raw, "wb") as f:
        for block in blocks:
            f.write(np.ascontiguousarray(block, dtype=np.int64).tobytes())
    with open(path, "wb") as out, open(raw, "rb") as f:
        _write_npy_header(out, np.int64, os.path.getsize(raw) // 8)
        shutil.copyfileobj(f, out, 1 << 22)
    os.unlink(raw)


def encode_corpus(
    path: str | os.PathLike,
    *,
    min_count: int = 5,
    max_vocab: int | None = None,
    max_final_vocab: int | None = None,
    lowercase: bool = False,
    max_sentence_length: int = 1000,
    cache_dir: str | os.PathLike | None = None,
) -> Corpus:
    """Read ``path`` (file, .gz, .bz2, or a directory of them) into a :class:`Corpus`.

    With ``cache_dir`` the result is stored there (memory-mapped ``ids.npy``, ``vocab.txt``,
    ``sentence_starts.npy``, ``line_starts.npy``, and ``meta.json`` with every file's size and
    SHA-256, written last) under a key of the files' (path, size, mtime, ctime, inode) and the
    settings above; a later call with the same key verifies the entry and loads it without
    reading the text. A damaged entry is rebuilt (with a warning), folders that killed runs left
    behind are removed, and a cache folder that cannot be written is warned about and skipped.
    """
    check_vocab_settings(min_count, max_vocab)
    if max_sentence_length < 1:
        raise CorpusError(f"max_sentence_length must be >= 1, got {max_sentence_length}")
    files = corpus_files(path)
    settings = dict(min_count=min_count, max_vocab=max_vocab, max_final_vocab=max_final_vocab,
                    lowercase=lowercase,
                    max_sentence_length=max_sentence_length, version=CACHE_FORMAT_VERSION)
    stats = _file_stats(files)
    entry = work = None
    if cache_dir is not None:
        entry = Path(cache_dir) / f"{Path(path).name}-{_cache_key(stats, settings)}"
        if entry.exists():
            try:
                return _load_entry(entry)
            except DamagedEntry as e:
                warnings.warn(f"corpus cache entry {entry} is damaged ({e}); rebuilding it",
                              CacheWarning, stacklevel=2)
                _remove_entry(entry)
        try:
            work = WorkDir(Path(cache_dir), ".tmp-")
        except OSError as e:
            warnings.warn(f"cannot write the corpus cache in {cache_dir} ({e.strerror}); reading "
                          "the corpus without it (set SGNS_JAX_CACHE or --cache-dir to a "
                          "writable folder, or --cache-dir '' for none)", CacheWarning, stacklevel=2)
            entry = None
    try:
        if work is None:
            try:
                work = WorkDir(Path(tempfile.gettempdir()), "sgns_jax-")
            except OSError as e:
                raise storage_error(e, tempfile.gettempdir(), "write the encoded corpus to") from None
        try:
            corpus = _encode(files, work.path, lowercase, min_count, max_vocab, max_final_vocab,
                             max_sentence_length, durable=entry is not None)
        except OSError as e:
            raise storage_error(e, getattr(e, "filename", None) or work.path,
                                "write the encoded corpus to") from None
        if _file_stats(files) != stats:
            raise CorpusError(f"the corpus {path} changed while it was being read; run again "
                              "once it is complete")
        if entry is not None:
            try:
                os.rename(work.path, entry)
                fsync_dir(entry.parent)
                return _load_entry(entry, corpus.vocab, verify=False)
            except OSError:  # another process's entry is there (a race, or one not removable)
                with contextlib.suppress(DamagedEntry):
                    return _load_entry(entry, corpus.vocab)
        # No cache (or no usable entry): keep the arrays in memory, drop the work folder.
        return Corpus(corpus.vocab, np.array(corpus.ids), corpus.sentence_starts,
                      corpus.raw_tokens, corpus.line_starts)
    finally:
        if work is not None:
            work.remove()


class CacheWarning(UserWarning):
    """The corpus cache could not be used as it was (damaged entry, unwritable folder)."""


class DamagedEntry(Exception):
    """A cache entry whose files are not what its meta.json records."""


class WorkDir:
    """A fresh folder in ``parent`` for building a cache entry, locked (``flock`` on the
    ``.lock`` file beside it) while this process lives. Creating one first removes the folders
    in ``parent`` whose lock is free: runs that were killed while building."""

    def __init__(self, parent: Path, prefix: str):
        parent.mkdir(parents=True, exist_ok=True)
        for lock in parent.glob(f"{glob.escape(prefix)}*.lock"):
            if unlocked(lock):
                shutil.rmtree(lock.with_suffix(""), ignore_errors=True)
                with contextlib.suppress(OSError):
                    lock.unlink()
        fd, lock = tempfile.mkstemp(prefix=prefix, suffix=".lock", dir=parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.fd, self.lock, self.path = fd, Path(lock), Path(lock).with_suffix("")
        self.path.mkdir()

    def remove(self) -> None:
        """Remove the folder (if it was not renamed into place), then its lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.lock.unlink()
        os.close(self.fd)


def _remove_entry(entry: Path) -> None:
    """Move a damaged entry out of the way (one rename), then delete it."""
    try:
        trash = WorkDir(entry.parent, ".tmp-")
    except OSError:
        return  # a read-only cache: the rebuild goes without it
    trash.path.rmdir()
    with contextlib.suppress(OSError):
        os.rename(entry, trash.path)
    trash.remove()


def _encode(files: list[Path], work: Path, lowercase: bool, min_count: int,
            max_vocab: int | None, max_final_vocab: int | None, max_sentence_length: int,
            durable: bool) -> Corpus:
    """Encode into ``work``; ``durable``: fsync every file, for an entry that will be kept."""
    prov_path, ends_path = work / "provisional.i32", work / "line_ends.i64"
    with open(prov_path, "wb") as f, open(ends_path, "wb") as ends_file:
        words, counts, total = _scan_files(files, lowercase, f, ends_file, work)
    if total == 0:
        raise CorpusError(f"corpus is empty (no tokens): {files[0] if len(files) == 1 else files[0].parent}")
    vocab = Vocabulary.from_counts(words, counts, min_count=min_count, max_vocab=max_vocab,
                                   max_final_vocab=max_final_vocab)

    get = vocab.get
    remap = np.fromiter((get(w, -1) for w in words), dtype=np.int32, count=len(words))  # provisional → final id
    kept_total = int(counts[remap >= 0].sum())

    step = 1 << 20  # 1M tokens at a time: temporaries bounded (~20 MB) whatever the corpus size
    # Written with write(), not through a memory map: a full disk is then an OSError, where a
    # write into a mapped page kills the process with SIGBUS.
    # The provisional ids are read, not memory-mapped: a mapped file's pages stay resident as
    # they are read, so the peak RSS would grow with the corpus (542 MB at 100 M tokens). The
    # line ends are read alongside, a block at a time, and their kept-token offsets written to
    # a file: a corpus of many short lines holds none of them in memory.
    kept_ends_path = work / "kept_line_ends.i64"
    with open(prov_path, "rb") as prov, open(work / "ids.npy", "wb") as ids, \
            open(kept_ends_path, "wb") as kept_ends:
        _write_npy_header(ids, np.int32, kept_total)
        ends_blocks = _file_blocks(ends_path, np.int64, ENDS_BLOCK)
        ends = np.zeros(0, np.int64)  # line ends read and not yet placed
        pos = 0
        for start in range(0, total, step):
            mapped = remap[np.fromfile(prov, dtype=np.int32, count=min(step, total - start))]
            keep = mapped >= 0
            ids.write(mapped[keep].tobytes())
            # Line ends that fall in this block, translated into kept-token coordinates.
            while ends.size == 0 or ends[-1] <= start + step:
                more = next(ends_blocks, None)
                if more is None:
                    break
                ends = np.concatenate([ends, more])
            here = int(np.searchsorted(ends, start + step, side="right"))
            sel, ends = ends[:here], ends[here:]
            sel = sel[sel > start]  # an end at 0 (empty first lines) has no token before it
            csum = np.concatenate([[0], np.cumsum(keep)])
            kept_ends.write((pos + csum[sel - start]).astype(np.int64).tobytes())
            pos += int(keep.sum())
        kept_ends.write(np.array([kept_total], np.int64).tobytes())
    os.unlink(prov_path)
    os.unlink(ends_path)
    _save_blocks(work / "sentence_starts.npy",
                 _pieces(_file_blocks(kept_ends_path, np.int64, ENDS_BLOCK), max_sentence_length), work)
    _save_blocks(work / "line_starts.npy",
                 _pieces(_file_blocks(kept_ends_path, np.int64, ENDS_BLOCK), max(kept_total, 1)), work)
    os.unlink(kept_ends_path)
    vocab.save(work / "vocab.txt")
    # meta.json last, with what every file must be: an entry is complete only with it.
    sums = {}
    for name in ENTRY_FILES:
        with open(work / name, "rb") as f:
            if durable:
                os.fsync(f.fileno())
            sums[name] = {"bytes": os.fstat(f.fileno()).st_size,
                          "sha256": hashlib.file_digest(f, "sha256").hexdigest()}
    atomic_write(work / "meta.json", json.dumps({"raw_tokens": total, "tokens": kept_total,
                                                 "files": sums}).encode())
    return _load_entry(work, vocab, verify=False)


def _load_entry(entry: Path, vocab: Vocabulary | None = None, verify: bool = True) -> Corpus:
    """The entry's arrays (ids memory-mapped); ``vocab`` when the caller has it in memory
    already (parsing vocab.txt back costs seconds at a million words: docs/performance_notes.md). ``verify``: check every
    file's size and SHA-256 against meta.json first (about 10 ms for 22 MB of ids), raising
    :class:`DamagedEntry` if anything differs."""
    try:
        meta = json.loads((entry / "meta.json").read_bytes())
        if verify:
            for name in ENTRY_FILES:
                expected = meta["files"][name]
                with open(entry / name, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size != expected["bytes"]:
                        raise DamagedEntry(f"{name} has {size:,} bytes, {expected['bytes']:,} were written")
                    if hashlib.file_digest(f, "sha256").hexdigest() != expected["sha256"]:
                        raise DamagedEntry(f"{name} is not what was written (SHA-256 differs)")
        ids = np.load(entry / "ids.npy", mmap_mode="r")
        vocab = Vocabulary.load(entry / "vocab.txt") if vocab is None else vocab
        return Corpus(vocab, ids,
                      np.load(entry / "sentence_starts.npy"), int(meta["raw_tokens"]),
                      np.load(entry / "line_starts.npy"))
    except DamagedEntry:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:  # VocabularyError is a ValueError
        raise DamagedEntry(f"{type(e).__name__}: {e}") from None


def _file_stats(files: list[Path]) -> list:
    """What identifies each file's content short of reading it: a change in place moves the
    size, mtime or ctime (ctime cannot be set back by hand), a replacement the inode."""
    stats = []
    for p in files:
        try:
            st = p.stat()
        except OSError as e:
            raise CorpusError(f"cannot read corpus {p}: {e.strerror}") from None
        stats.append([str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
    return stats


def _cache_key(stats: list, settings: dict) -> str:
    blob = json.dumps({"files": stats, **settings}, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$SGNS_JAX_CACHE``, else ``~/.cache/sgns_jax``."""
    if os.environ.get("SGNS_JAX_CACHE"):
        return Path(os.environ["SGNS_JAX_CACHE"])
    try:
        home = Path.home()
    except (RuntimeError, KeyError):
        home = Path()
    if not home.is_absolute():
        raise ConfigError("no home folder to keep the cache in (HOME is not set); set "
                          "SGNS_JAX_CACHE to a folder, or pass --cache-dir ('' for no cache)")
    return home / ".cache" / "sgns_jax"
