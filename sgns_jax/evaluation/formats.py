"""word2vec's vector file formats, compatible with word2vec C and gensim's KeyedVectors.

Text: a ``V D`` header line, then ``word v1 … vD`` per line (values printed with 9 significant
digits, which round-trips float32 exactly). Binary: the same header line, then per word the
UTF-8 word, a space, D little-endian float32 and a newline (word2vec C writes the newline,
gensim does not; both are read). Writes are atomic.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sgns_jax.errors import VectorsFormatError
from sgns_jax.io_utils import atomic_open


def save_word2vec(path: str | os.PathLike, words: Sequence[str], vectors: np.ndarray,
                  binary: bool = False) -> None:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError(f"{len(words)} words but vectors of shape {vectors.shape}")
    v, d = vectors.shape
    with atomic_open(path, "wb") as f:
        f.write(f"{v} {d}\n".encode())
        # Block by block: formatting the whole table at once held several copies of it in
        # memory (gigabytes at a million words × 300 dims); a write per word took 7 s there.
        block = 8192
        if binary:
            little = vectors.astype("<f4", copy=False)
            for start in range(0, v, block):
                f.write(b"".join(w.encode("utf-8") + b" " + row.tobytes() + b"\n"
                                 for w, row in zip(words[start:start + block], little[start:start + block])))
        else:
            for start in range(0, v, block):
                buf = io.StringIO()
                np.savetxt(buf, vectors[start:start + block], fmt="%.9g", delimiter=" ")
                rows = buf.getvalue().splitlines()
                f.write("".join(f"{w} {r}\n" for w, r in zip(words[start:start + block], rows))
                        .encode("utf-8"))


def _header(line: bytes, path) -> tuple[int, int]:
    parts = line.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise VectorsFormatError(f"{path}: first line must be 'count dim', got {line[:80]!r}")
    return int(parts[0]), int(parts[1])


def _is_binary(data: bytes, body_start: int, dim: int) -> bool:
    end = data.find(b"\n", body_start)
    first = data[body_start:end if end >= 0 else len(data)]
    try:
        parts = first.decode("utf-8").split(" ")
        parts = [p for p in parts if p]
        if len(parts) != dim + 1:
            return True
        [float(x) for x in parts[1:]]
        return False
    except (UnicodeDecodeError, ValueError):
        return True


def load_word2vec(path: str | os.PathLike, binary: bool | None = None,
                  limit: int | None = None) -> tuple[list[str], np.ndarray]:
    """Words and float32 [V, D] vectors from a word2vec text or binary file.

    ``binary=None`` detects the format from the first entry. ``limit`` reads only the first
    ``limit`` words (files are usually sorted by frequency).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise VectorsFormatError(f"vectors file not found: {path}") from None
    except OSError as e:
        raise VectorsFormatError(f"cannot read vectors file {path}: {e.strerror}") from None
    nl = data.find(b"\n")
    if nl < 0:
        raise VectorsFormatError(f"{path}: no header line")
    v, d = _header(data[:nl], path)
    n = v if limit is None else min(v, limit)
    if binary is None:
        binary = _is_binary(data, nl + 1, d)
    words: list[str] = []
    vectors = np.empty((n, d), dtype=np.float32)
    pos = nl + 1
    if binary:
        row_bytes = 4 * d
        for i in range(n):
            while pos < len(data) and data[pos:pos + 1] in (b"\n", b"\r"):
                pos += 1
            sp = data.find(b" ", pos)
            if sp < 0 or sp + 1 + row_bytes > len(data):
                raise VectorsFormatError(f"{path}: truncated at word {i} of {v}")
            words.append(data[pos:sp].decode("utf-8", errors="replace"))
            vectors[i] = np.frombuffer(data, dtype="<f4", count=d, offset=sp + 1)
            pos = sp + 1 + row_bytes
    else:
        lines = data[pos:].decode("utf-8", errors="replace").splitlines()
        lines = [ln for ln in lines if ln.strip()]
        if len(lines) < n:
            raise VectorsFormatError(f"{path}: header says {v} words, found {len(lines)}")
        for i, line in enumerate(lines[:n]):
            parts = line.rstrip().split(" ")
            if len(parts) != d + 1:
                raise VectorsFormatError(f"{path}: line {i + 2} has {len(parts) - 1} values, expected {d}")
            words.append(parts[0])
            try:
                vectors[i] = np.array(parts[1:], dtype=np.float32)
            except ValueError:
                raise VectorsFormatError(f"{path}: line {i + 2} has a value that is not a number") from None
    return words, vectors
