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
import gzip
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from sgns_jax.data.vocab import Vocabulary, check_vocab_settings
from sgns_jax.errors import CorpusError

CACHE_FORMAT_VERSION = 2
BLOCK_BYTES = 1 << 22
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


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def iter_text_blocks(path: Path, block_bytes: int | None = None) -> Iterator[str]:
    """Decoded text of ``path`` in blocks that end on ASCII whitespace (so no token or UTF-8
    sequence is split). Invalid UTF-8 is replaced with U+FFFD and warned about once per file,
    with the byte offset (in the decompressed stream) of the first bad byte."""
    block_bytes = block_bytes or BLOCK_BYTES
    warned = False
    offset = 0
    carry = b""
    try:
        with _open(path) as f:
            first = True
            while True:
                raw = f.read(block_bytes)
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
    index: dict[str, int] = {}
    setdefault = index.setdefault
    line_ends = array("q")
    total = 0
    counts = np.zeros(0, dtype=np.int64)
    for path in files:
        for text in iter_text_blocks(path):
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
        line_ends.append(total)  # a file's end ends a line
    return list(index), counts, np.frombuffer(line_ends, dtype=np.int64), total


def _sentence_starts(line_ends: np.ndarray, max_len: int) -> np.ndarray:
    """Starts of the non-empty pieces of lines ``[end_{i-1}, end_i)`` cut every ``max_len``."""
    ends = np.unique(line_ends)
    starts = np.concatenate([[0], ends[:-1]])
    lengths = ends - starts
    starts, lengths = starts[lengths > 0], lengths[lengths > 0]
    pieces = (lengths + max_len - 1) // max_len
    line_of_piece = np.repeat(np.arange(starts.size), pieces)
    first_piece = np.cumsum(pieces) - pieces
    within = np.arange(pieces.sum()) - first_piece[line_of_piece]
    return (starts[line_of_piece] + within * max_len).astype(np.int64)


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
    ``sentence_starts.npy``, ``meta.json``) under a key of the files' (path, size, mtime) and
    the settings above; a later call with the same key loads it without reading the text.
    """
    check_vocab_settings(min_count, max_vocab)
    if max_sentence_length < 1:
        raise CorpusError(f"max_sentence_length must be >= 1, got {max_sentence_length}")
    files = corpus_files(path)
    settings = dict(min_count=min_count, max_vocab=max_vocab, max_final_vocab=max_final_vocab,
                    lowercase=lowercase,
                    max_sentence_length=max_sentence_length, version=CACHE_FORMAT_VERSION)
    if cache_dir is not None:
        key = _cache_key(files, settings)
        entry = Path(cache_dir) / f"{Path(path).name}-{key}"
        if (entry / "meta.json").exists():
            return _load_entry(entry)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_dir))
    else:
        work = Path(tempfile.mkdtemp(prefix="sgns_jax-"))
    try:
        corpus = _encode(files, work, lowercase, min_count, max_vocab, max_final_vocab,
                         max_sentence_length)
        if cache_dir is None:  # no cache: keep the arrays in memory, drop the work folder
            corpus = Corpus(corpus.vocab, np.array(corpus.ids), corpus.sentence_starts,
                            corpus.raw_tokens, corpus.line_starts)
            shutil.rmtree(work, ignore_errors=True)
            return corpus
        try:
            os.rename(work, entry)
        except OSError:  # another process won the race; use its entry
            shutil.rmtree(work, ignore_errors=True)
        return _load_entry(entry, corpus.vocab)  # a race's winner has the same key: same vocab
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _encode(files: list[Path], work: Path, lowercase: bool, min_count: int,
            max_vocab: int | None, max_final_vocab: int | None, max_sentence_length: int) -> Corpus:
    prov_path = work / "provisional.i32"
    with open(prov_path, "wb") as f:
        words, counts, line_ends, total = _scan(files, lowercase, f)
    if total == 0:
        raise CorpusError(f"corpus is empty (no tokens): {files[0] if len(files) == 1 else files[0].parent}")
    vocab = Vocabulary.from_counts(words, counts, min_count=min_count, max_vocab=max_vocab,
                                   max_final_vocab=max_final_vocab)

    get = vocab.get
    remap = np.fromiter((get(w, -1) for w in words), dtype=np.int32, count=len(words))  # provisional → final id
    kept_total = int(counts[remap >= 0].sum())

    prov = np.memmap(prov_path, dtype=np.int32, mode="r", shape=(total,))
    ids = np.lib.format.open_memmap(work / "ids.npy", mode="w+", dtype=np.int32, shape=(kept_total,))
    kept_before = np.zeros(0, dtype=np.int64)  # kept tokens before each line end
    chunks = []
    pos = 0
    step = 1 << 22  # 4M tokens: ~100 MB of temporaries, whatever the corpus size
    for start in range(0, total, step):
        mapped = remap[prov[start:start + step]]
        keep = mapped >= 0
        n = int(keep.sum())
        ids[pos:pos + n] = mapped[keep]
        # Line ends that fall in this block, translated into kept-token coordinates.
        sel = line_ends[(line_ends > start) & (line_ends <= start + step)]
        csum = np.concatenate([[0], np.cumsum(keep)])
        chunks.append(pos + csum[sel - start])
        pos += n
    ids.flush()
    del ids, prov
    os.unlink(prov_path)
    kept_line_ends = np.concatenate(chunks) if chunks else kept_before
    line_ends = np.append(kept_line_ends, kept_total)
    np.save(work / "sentence_starts.npy", _sentence_starts(line_ends, max_sentence_length))
    np.save(work / "line_starts.npy", _sentence_starts(line_ends, max(kept_total, 1)))
    vocab.save(work / "vocab.txt")
    (work / "meta.json").write_text(json.dumps({"raw_tokens": total, "tokens": kept_total}))
    return _load_entry(work, vocab)


def _load_entry(entry: Path, vocab: Vocabulary | None = None) -> Corpus:
    """The entry's arrays (ids memory-mapped); ``vocab`` when the caller has it in memory
    already (parsing vocab.txt back took 1.9 s at a million words)."""
    meta = json.loads((entry / "meta.json").read_text())
    ids = np.load(entry / "ids.npy", mmap_mode="r")
    vocab = Vocabulary.load(entry / "vocab.txt") if vocab is None else vocab
    return Corpus(vocab, ids,
                  np.load(entry / "sentence_starts.npy"), int(meta["raw_tokens"]),
                  np.load(entry / "line_starts.npy"))


def _cache_key(files: list[Path], settings: dict) -> str:
    stats = []
    for p in files:
        st = p.stat()
        stats.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"files": stats, **settings}, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(os.environ.get("SGNS_JAX_CACHE", Path.home() / ".cache" / "sgns_jax"))
