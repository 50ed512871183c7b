"""Fetch text8 (Mahoney's cleaned first 10^8 bytes of English Wikipedia) into the cache.

The zip is downloaded to ``text8.zip.part`` with a progress bar, its size checked, renamed into
place, then its member is unpacked to a temp file while its SHA-256 is computed and checked;
only a verified file is renamed to ``text8``. A partial or corrupt download is never taken for
the corpus, and a verified one is reused on the next call.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from sgns_jax.data.corpus import default_cache_dir
from sgns_jax.errors import SgnsError
from sgns_jax.io_utils import atomic_open, atomic_write, check_directory_writable, storage_error

TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
TEXT8_ZIP_BYTES = 31_344_016
# SHA-256 of the unzipped 100,000,000-byte `text8` file.
TEXT8_SHA256 = "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7"


class DownloadError(SgnsError):
    """The download failed, was truncated, or did not match its checksum."""


def download_text8(cache_dir: str | os.PathLike | None = None, *, url: str | None = None,
                   zip_bytes: int | None = TEXT8_ZIP_BYTES, sha256: str = TEXT8_SHA256,
                   member: str = "text8", quiet: bool = False, timeout: float = 30.0) -> Path:
    """Path of the verified corpus, downloading and unpacking it on first use."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    check_directory_writable(cache, "cache folder")
    target = cache / member
    marker = cache / f"{member}.sha256"
    if target.exists() and marker.exists() and marker.read_text().strip() == sha256:
        return target
    zip_path = cache / f"{member}.zip"
    if not (zip_path.exists() and (zip_bytes is None or zip_path.stat().st_size == zip_bytes)):
        _fetch(url or TEXT8_URL, zip_path, zip_bytes, quiet, timeout)
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(zip_path) as z, z.open(member) as src, atomic_open(target) as dst:
            while block := src.read(1 << 20):
                digest.update(block)
                dst.write(block)
            if digest.hexdigest() != sha256:  # leaving the block by an error keeps the old target
                raise DownloadError(f"checksum mismatch for {member}: got sha256 "
                                    f"{digest.hexdigest()}, expected {sha256}; the download was "
                                    "removed")
    except (zipfile.BadZipFile, KeyError, OSError, zlib.error, DownloadError) as e:
        # StorageError (writing the corpus failed: disk full, ...) keeps the good download.
        zip_path.unlink(missing_ok=True)
        if isinstance(e, DownloadError):
            raise
        raise DownloadError(f"{zip_path} is not a valid zip with '{member}': {e}") from None
    atomic_write(marker, (sha256 + "\n").encode())
    return target


def _fetch(url: str, dest: Path, expected: int | None, quiet: bool, timeout: float) -> None:
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or expected
            bar = None
            if not quiet:
                from tqdm import tqdm
                bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name)
            try:
                while block := response.read(1 << 16):
                    try:
                        out.write(block)
                    except OSError as e:  # the disk, not the network
                        raise storage_error(e, part) from None
                    if bar is not None:
                        bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        part.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename == str(part):  # opening the file failed
            raise storage_error(e, part) from None
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"cannot download {url}: {reason} (offline?)") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    size = part.stat().st_size
    if expected is not None and size != expected:
        part.unlink(missing_ok=True)
        raise DownloadError(f"download of {url} is truncated or wrong: {size} bytes, "
                            f"expected {expected}")
    os.replace(part, dest)
