"""Atomic file output: write a temp file beside the target, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file in ``path``'s directory; on success fsync and rename it onto ``path``.

    On any exception the temp file is removed and ``path`` is untouched, so a reader never sees
    a half-written file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 & ~umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def check_writable(path: str | os.PathLike) -> None:
    """Raise ``SgnsError`` now if ``path`` cannot be written later (missing dir, no permission)."""
    from sgns_jax.errors import SgnsError

    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise SgnsError(f"output directory does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise SgnsError(f"output directory is not writable: {parent}")
