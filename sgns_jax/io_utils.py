"""File output a crash cannot leave half-written, and one-line errors for what the file system
refuses.

* :func:`atomic_open` / :func:`atomic_write`: one file — a temp file beside it, fsynced, renamed
  onto it, the directory fsynced.
* :func:`write_file_set`: files that belong together (vectors, state, config). Each is written
  to a temp file beside it; only when every one is on disk are they renamed into place, and a
  manifest (``<stem>.manifest.json``: each file's size and SHA-256) is renamed in last. A
  writer killed between the renames is finished by the next write or read of the set
  (:func:`finish_interrupted_set`), and :func:`set_mismatch` tells a reader whether a file is
  the one its manifest records: files of two runs are never read as one set.
* Temp files are locked (``flock``) while their writer lives; a later write of the same file
  removes the unlocked ones a killed run left behind (:func:`remove_stale_temps`).
* :func:`storage_error`: an ``OSError`` as a one-line :class:`~sgns_jax.errors.StorageError`
  naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Callable, Iterator

from sgns_jax import interrupts
from sgns_jax.errors import SgnsError, StorageError

_HINTS = {
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    errno.EDQUOT: "the disk quota is used up; free some space or write elsewhere",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f)",
    errno.EACCES: "no permission; choose a folder you can write to",
    errno.EPERM: "no permission; choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose another folder",
    errno.EISDIR: "a directory stands where the file should go",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
}


def storage_error(e: OSError, path: str | os.PathLike, action: str = "write") -> StorageError:
    """``e`` as a one-line error: ``cannot write PATH: No space left on device (the disk is
    full; ...)``."""
    reason = e.strerror or str(e)
    hint = _HINTS.get(e.errno)
    return StorageError(f"cannot {action} {path}: {reason}" + (f" ({hint})" if hint else ""))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make the renames in ``directory`` durable (a no-op where directories cannot be synced)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def unlocked(path: str | os.PathLike) -> bool:
    """True if nobody holds an ``flock`` on ``path``: its writer is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # releases the lock taken above


def remove_stale_temps(path: Path) -> None:
    """Remove the temp files of ``path`` that a killed writer left (theirs are unlocked)."""
    pattern = str(path.parent / f".{glob.escape(path.name)}.*.tmp")
    for tmp in glob.glob(pattern):
        if unlocked(tmp):
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class PendingFile:
    """A locked temp file beside ``path``: write ``file``, :meth:`finish` it (fsync), then
    :meth:`commit` (rename onto ``path``) or :meth:`discard`. Its mode is what a plain
    ``open()`` would give (0666 & ~umask), not mkstemp's 0600."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.committed = False
        remove_stale_temps(self.path)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        self.tmp = Path(tmp)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held until close: marks the temp file as live
            os.fchmod(fd, 0o666 & ~_umask())
            self.file = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def commit(self) -> None:
        os.replace(self.tmp, self.path)
        self.committed = True

    def discard(self) -> None:
        """Close the file, and remove it unless it was committed (safe to call twice)."""
        try:
            self.file.close()
        except OSError:
            pass  # what was buffered is lost with the file: its write has failed already
        if not self.committed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """A file object that lands on ``path`` only if the block completes: a reader never sees a
    half-written file. A failing write leaves ``path`` untouched and raises ``StorageError``."""
    if mode != "wb":
        raise ValueError("atomic_open writes bytes: mode 'wb'")
    path = Path(path)
    try:
        pending = PendingFile(path)
    except OSError as e:
        raise storage_error(e, path) from None
    try:
        yield pending.file
        pending.finish()
        pending.commit()
        fsync_dir(path.parent)
    except OSError as e:
        raise storage_error(e, path) from None
    finally:
        pending.discard()


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


# -- sets of files written together -----------------------------------------------------------
MANIFEST_FORMAT = "sgns_jax output set"


def output_paths(out: str | os.PathLike) -> dict[str, Path]:
    """The files a training run writes for ``--out``: the vectors themselves, the rest of the
    state (``<stem>.npz``), the config (``<stem>.config.json``) and the manifest that ties them
    together (``<stem>.manifest.json``)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".txt", ".bin", ".vec") else out
    return {"vectors": out, "state": Path(f"{stem}.npz"), "config": Path(f"{stem}.config.json"),
            "manifest": Path(f"{stem}.manifest.json")}


def write_file_set(writers: dict[Path, Callable[[IO[bytes]], None]], manifest: Path) -> None:
    """Write each ``writers[path](file)`` to ``path``, all or none.

    Every file goes to a temp file first (two at a time), then the manifest (each file's name,
    size and SHA-256) to its own temp file; only when all are fsynced are the files renamed
    into place, the manifest last (Ctrl-C waits until the renames are done). A writer killed
    between two renames leaves its temp files and its manifest behind, and the next
    :func:`finish_interrupted_set` (by the next write or read of the set) renames the rest in.
    Files the previous manifest listed that this set does not (``v.txt`` when ``v.bin``
    replaces it) are removed, so the stem holds one set. A failing write raises
    ``StorageError`` with the old files in place.
    """
    from concurrent.futures import ThreadPoolExecutor

    finish_interrupted_set(manifest)  # before PendingFile clears the temp files it would need
    previous = _listed(manifest)
    pending: dict[Path, PendingFile] = {}

    def write(path: Path) -> dict:
        try:
            writers[path](pending[path].file)
            pending[path].finish()
            return _digest(pending[path].tmp)  # read back from the page cache: ~1.5 GB/s
        except OSError as e:
            raise storage_error(e, path) from None

    path = manifest
    try:
        for path in [*writers, manifest]:
            pending[path] = PendingFile(path)
        with ThreadPoolExecutor(2) as pool:  # each is part formatting, part waiting on the disk
            futures = {p: pool.submit(write, p) for p in writers}
            files = {p.name: f.result() for p, f in futures.items()}
        path = manifest
        pending[manifest].file.write(json.dumps({"format": MANIFEST_FORMAT, "files": files},
                                                indent=1).encode())
        pending[manifest].finish()
        fsync_dir(manifest.parent)  # the temp files' names are durable before any rename
        with interrupts.deferred():  # Ctrl-C lands after the renames, not between them
            for path in [*writers, manifest]:  # the manifest last: it vouches for the files before it
                pending[path].commit()
        path = manifest.parent
        fsync_dir(manifest.parent)
    except OSError as e:
        raise storage_error(e, path) from None
    finally:
        for f in pending.values():
            f.discard()
    for name in set(previous) - set(files) - {manifest.name}:
        with contextlib.suppress(OSError):
            os.unlink(manifest.parent / name)


def finish_interrupted_set(manifest: Path) -> None:
    """Complete a set whose writer died between its renames. Its manifest temp file (written
    and fsynced before the first rename, unlocked now) lists every new file's size and SHA-256;
    each listed file not yet in place is looked for among the dead writer's temp files by its
    digest and renamed in, then the manifest. If one cannot be found (a writer killed before it
    had written everything), nothing is renamed: the files in place stand, and those the
    manifest in place does not record are refused by :func:`set_mismatch`. A folder that
    cannot be written is left as it is."""
    directory = manifest.parent
    for tmp in glob.glob(str(directory / f".{glob.escape(manifest.name)}.*.tmp")):
        files = _listed(Path(tmp))
        if not files or not unlocked(tmp):
            continue
        renames = []
        for name, record in files.items():
            if _digest(directory / name) == record:
                continue
            found = [t for t in glob.glob(str(directory / f".{glob.escape(name)}.*.tmp"))
                     if unlocked(t) and _digest(Path(t)) == record]
            if not found:
                break
            renames.append((found[0], directory / name))
        else:
            try:
                for source, target in renames + [(tmp, manifest)]:
                    os.replace(source, target)
                fsync_dir(directory)
            except OSError:
                pass
            return


def _digest(path: Path) -> dict | None:
    """``{"bytes", "sha256"}`` of a file, None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return {"bytes": os.fstat(f.fileno()).st_size,
                    "sha256": hashlib.file_digest(f, "sha256").hexdigest()}
    except OSError:
        return None


def _listed(manifest: Path) -> dict:
    """The files a manifest lists ({} when there is none or it is unreadable)."""
    try:
        data = json.loads(manifest.read_bytes())
        return data["files"] if data.get("format") == MANIFEST_FORMAT else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def set_mismatch(path: Path, data: bytes, manifest: Path) -> str | None:
    """Why ``data`` (the bytes of ``path``) is not the file ``manifest`` records, or None when
    it is, or when no manifest lists it (a file this tool did not write as part of a set). Call
    :func:`finish_interrupted_set` before reading ``path``."""
    if not manifest.exists():
        return None
    try:
        listed = json.loads(manifest.read_bytes())
        entry = listed["files"].get(path.name) if listed.get("format") == MANIFEST_FORMAT else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"its output set's manifest {manifest} is unreadable"
    if entry is None:
        return None
    if len(data) != entry.get("bytes") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        return (f"it is not the file its output set's manifest {manifest} records (a run writing "
                f"the set was interrupted, or the file was changed since)")
    return None


# -- checks before a run ----------------------------------------------------------------------
def check_writable(path: str | os.PathLike, what: str = "output") -> None:
    """Raise ``SgnsError`` now if the file ``path`` cannot be written later: its folder is
    missing or not writable, or a directory stands where it would go."""
    path = Path(path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise SgnsError(f"{what} directory does not exist: {parent}")
    if path.is_dir():
        raise SgnsError(f"{what} {path} is a directory; name a file in it")
    if not os.access(parent, os.W_OK):
        raise SgnsError(f"{what} directory is not writable: {parent}")


def check_directory_writable(directory: str | os.PathLike, what: str) -> None:
    """Create ``directory`` (and its parents) if needed; raise if it cannot be written."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SgnsError(f"{what} {directory} is a file, not a directory") from None
    except OSError as e:
        raise storage_error(e, directory, "create") from None
    if not os.access(directory, os.W_OK):
        raise SgnsError(f"{what} {directory} is not writable")
