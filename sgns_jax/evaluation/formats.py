"""word2vec's vector file formats, compatible with word2vec C and gensim's KeyedVectors.

Text: a ``V D`` header line, then ``word v1 … vD`` per line (values printed with 9 significant
digits, which round-trips float32 exactly). Binary: the same header line, then per word the
UTF-8 word, a space, D little-endian float32 and a newline (word2vec C writes the newline,
gensim does not; both are read). Writes are atomic; reads refuse what is not a well-formed
file (with the line at fault) and a file its output set's manifest does not record.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import IO, Sequence

import numpy as np

from sgns_jax.errors import VectorsFormatError
from sgns_jax.io_utils import atomic_open, finish_interrupted_set, output_paths, set_mismatch


def save_word2vec(path: str | os.PathLike, words: Sequence[str], vectors: np.ndarray,
                  binary: bool = False) -> None:
    with atomic_open(path, "wb") as f:
        write_word2vec(f, words, vectors, binary)


def write_word2vec(f: IO[bytes], words: Sequence[str], vectors: np.ndarray,
                   binary: bool = False) -> None:
    """The file's bytes, written to the open binary file ``f``."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError(f"{len(words)} words but vectors of shape {vectors.shape}")
    v, d = vectors.shape
    f.write(f"{v} {d}\n".encode())
    # Block by block, 1024 rows: formatting the whole table at once held several copies of it
    # (gigabytes at a million words × 300 dims), and so did blocks of 8192 rows through
    # ``np.savetxt``'s StringIO (+87 MB at 40k × 100); a write per word took 7 s there.
    block = 1024
    if binary:
        little = vectors.astype("<f4", copy=False)
        for start in range(0, v, block):
            f.write(b"".join(w.encode("utf-8") + b" " + row.tobytes() + b"\n"
                             for w, row in zip(words[start:start + block], little[start:start + block])))
    else:
        row_format = " ".join(["%.9g"] * d)  # np.savetxt's row format, applied the same way
        for start in range(0, v, block):
            f.write("".join(f"{w} {row_format % tuple(row)}\n"
                            for w, row in zip(words[start:start + block], vectors[start:start + block]))
                    .encode("utf-8"))


def _header(line: bytes, path) -> tuple[int, int]:
    parts = line.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise VectorsFormatError(f"{path}: first line must be 'count dim', got {line[:80]!r}")
    count, dim = int(parts[0]), int(parts[1])
    if count < 1 or dim < 1:
        raise VectorsFormatError(f"{path}: the header says {count} words of dimension {dim}; "
                                 "a vectors file has at least one word of dimension 1 or more")
    return count, dim


def _is_text(data: bytes, body_start: int) -> bool:
    """Whether the first entry is a line of text. A binary entry's raw floats hold bytes that
    are not printable UTF-8 (a float32 of ±0 or 1.0 alone has NULs); a text line that is
    malformed — another count of values than the header's, a word where a number belongs — is
    still text, and is refused with its line number rather than read as binary."""
    end = data.find(b"\n", body_start)
    first = data[body_start:end if end >= 0 else len(data)].rstrip(b"\r")
    try:
        return "".join(first.decode("utf-8").split()).isprintable()
    except UnicodeDecodeError:
        return False


def load_word2vec(path: str | os.PathLike, binary: bool | None = None,
                  limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Words and float32 [V, D] vectors from a word2vec text or binary file.

    ``binary=None`` detects the format from the first entry. ``limit`` reads only the first
    ``limit`` words (files are usually sorted by frequency). Refused with the line (text) or
    entry (binary) at fault: a header that is not ``count dim`` with both ≥ 1, an entry with
    another number of values than the header's dimension, a value that is not a finite
    number, fewer or (without ``limit``) more entries than the header says, and a file that
    the manifest of its output set does not record (``io_utils.set_mismatch``: a training run
    interrupted while writing it). A repeated word is warned about; its first vector is used,
    as gensim does.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise VectorsFormatError(f"limit must be >= 1, got {limit}")
    manifest = output_paths(path)["manifest"]
    finish_interrupted_set(manifest)  # a set whose writer was killed between its renames
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise VectorsFormatError(f"vectors file not found: {path}") from None
    except OSError as e:
        raise VectorsFormatError(f"cannot read vectors file {path}: {e.strerror}") from None
    problem = set_mismatch(path, data, manifest)
    if problem:
        raise VectorsFormatError(f"{path}: {problem}; train again, or delete {manifest} to read "
                                 "the file as it is")
    nl = data.find(b"\n")
    if nl < 0:
        raise VectorsFormatError(f"{path}: no header line")
    v, d = _header(data[:nl], path)
    n = v if limit is None else min(v, limit)
    if binary is None:
        binary = not _is_text(data, nl + 1)
    words, vectors, where = (_read_binary if binary else _read_text)(data, nl + 1, path, v, d, n,
                                                                     limit is None)
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        i = int(bad[0])
        value = vectors[i][~np.isfinite(vectors[i])][0]
        raise VectorsFormatError(f"{path}: {where(i)} (word {words[i]!r}) has a value that is not "
                                 f"a finite number ({value}); {bad.size} of {n} vectors have one")
    first: dict[str, int] = {}
    repeats = [(i, first[w]) for i, w in enumerate(words) if first.setdefault(w, i) != i]
    if repeats:
        i, j = repeats[0]
        warnings.warn(f"{path}: word {words[i]!r} at {where(i)} repeats {where(j)}; the first "
                      f"vector of each repeated word is used ({len(repeats)} repeats)",
                      DuplicateWordWarning, stacklevel=2)
    return words, vectors


class DuplicateWordWarning(UserWarning):
    """A vectors file lists a word twice; the first vector is used."""


def _read_binary(data: bytes, pos: int, path, v: int, d: int, n: int, whole: bool):
    words: list[str] = []
    vectors = np.empty((n, d), dtype=np.float32)
    row_bytes = 4 * d
    for i in range(n):
        while pos < len(data) and data[pos:pos + 1] in (b"\n", b"\r"):
            pos += 1
        sp = data.find(b" ", pos)
        if sp < 0 or sp + 1 + row_bytes > len(data):
            raise VectorsFormatError(f"{path}: truncated at word {i} of {v}")
        try:
            words.append(data[pos:sp].decode("utf-8"))
        except UnicodeDecodeError:
            raise VectorsFormatError(
                f"{path}: entry {i + 1} is not a UTF-8 word followed by {d} binary floats (is the "
                f"header's dimension {d} right?)") from None
        vectors[i] = np.frombuffer(data, dtype="<f4", count=d, offset=sp + 1)
        pos = sp + 1 + row_bytes
    if whole and data[pos:].strip():
        raise VectorsFormatError(f"{path}: {len(data) - pos} bytes follow the {v} entries the "
                                 f"header announces (is the header's dimension {d} right?)")
    return words, vectors, lambda i: f"entry {i + 1}"


def _read_text(data: bytes, pos: int, path, v: int, d: int, n: int, whole: bool):
    lines = [(number, line) for number, line in
             enumerate(data[pos:].decode("utf-8", errors="replace").splitlines(), 2)
             if line.strip()]
    if len(lines) < n:
        raise VectorsFormatError(f"{path}: header says {v} words, found {len(lines)}")
    if whole and len(lines) > v:
        raise VectorsFormatError(f"{path}: header says {v} words, found {len(lines)} (line "
                                 f"{lines[v][0]} is one too many)")
    words: list[str] = []
    vectors = np.empty((n, d), dtype=np.float32)
    for i, (number, line) in enumerate(lines[:n]):
        parts = line.rstrip().split(" ")
        if len(parts) != d + 1:
            raise VectorsFormatError(f"{path}: line {number} has {len(parts) - 1} values, the "
                                     f"header says {d}")
        words.append(parts[0])
        try:
            vectors[i] = np.array(parts[1:], dtype=np.float32)
        except ValueError:
            raise VectorsFormatError(f"{path}: line {number} has a value that is not a number") from None
    numbers = [number for number, _ in lines[:n]]
    return words, vectors, lambda i: f"line {numbers[i]}"
