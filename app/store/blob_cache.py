"""A host's bounded cache of blobs fetched from an object store, by SHA-256.

Files live at ``root/<sha>`` and are written once: bytes go to ``root/tmp/``, are hashed on the
way, and are renamed into place only when their digest is the one asked for. Every process that
uses the cache re-hashes a file the first time it serves it (a file left by an earlier process,
or changed on disk since, is checked before use), so the cache never serves a file whose digest
does not match. A file's modification time is its last use: when the cache holds more than its
limit, the least recently used files are removed first.

Several processes on one host (API processes, a worker) may share the directory: files appear
by atomic rename, and a file removed while another process reads it stays readable to that
process (POSIX), so the worst a race costs is a second download.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from app.store.artifacts import (
    CHUNK,
    BlobStream,
    DigestMismatch,
    check_sha256,
    file_sha256,
    remove_stale,
)

log = logging.getLogger("aam.storage")


class CacheTooSmall(ValueError):
    """A blob larger than the whole cache."""


class BlobCache:
    def __init__(self, root: Path | str, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ValueError(f"the cache limit must be positive, got {limit_bytes} bytes")
        self.root = Path(root)
        self.limit_bytes = limit_bytes
        self.temp_dir = self.root / "tmp"
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._verified: set[str] = set()  # digests this process has checked

    def _file(self, sha256: str) -> Path:
        return self.root / check_sha256(sha256)

    def new_temp_path(self) -> Path:
        return self.temp_dir / f"{uuid.uuid4().hex}.part"

    def get(self, sha256: str) -> Path | None:
        """The cached file, checked once per process; None when absent or found corrupt (the
        corrupt file is removed)."""
        path = self._file(sha256)
        if not path.is_file():
            return None
        if sha256 not in self._verified:
            actual, _ = file_sha256(path)
            if actual != sha256:
                log.error("cached file %s has SHA-256 %s; removed", path, actual)
                path.unlink(missing_ok=True)
                return None
            self._verified.add(sha256)
        self._touch(path)
        return path

    def fetch(self, sha256: str, size: int, body: BlobStream, source: str) -> Path:
        """Fill the cache with a blob of ``size`` bytes read from ``body``;
        :class:`DigestMismatch` naming ``source`` when the bytes do not have the digest (nothing
        is kept), :class:`CacheTooSmall` when the blob alone exceeds the limit."""
        self.check_fits(sha256, size, source)
        temp = self.new_temp_path()
        try:
            with temp.open("wb") as raw:
                hashing = _HashingWriter(raw)
                shutil.copyfileobj(body, hashing, CHUNK)
            actual = hashing.digest.hexdigest()
            if actual != sha256:
                raise DigestMismatch(
                    f"{source} is corrupt: its content has SHA-256 {actual}, expected {sha256}"
                )
            return self._place(temp, sha256, hashing.size)
        finally:
            temp.unlink(missing_ok=True)

    def adopt(self, temp_path: Path, sha256: str, size: int) -> Path | None:
        """Take a file whose digest the caller has just computed (consumed when it fits and is
        on the cache's filesystem; otherwise left alone and None)."""
        if size > self.limit_bytes:
            return None
        try:
            return self._place(Path(temp_path), sha256, size)
        except OSError:  # another filesystem: the next use downloads it instead
            return None

    def check_fits(self, sha256: str, size: int, source: str) -> None:
        if size > self.limit_bytes:
            raise CacheTooSmall(
                f"{source} ({size} bytes, SHA-256 {sha256}) is larger than this host's whole "
                f"artifact cache ({self.limit_bytes} bytes); raise AAM_CACHE_BYTES"
            )

    def _place(self, temp: Path, sha256: str, size: int) -> Path:
        target = self._file(sha256)
        os.replace(temp, target)
        self._verified.add(sha256)
        self.evict(keep=sha256)
        return target

    def discard(self, sha256: str) -> None:
        self._file(sha256).unlink(missing_ok=True)
        self._verified.discard(sha256)

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, size, path) of every cached file, least recently used first."""
        found = []
        for entry in self.root.iterdir():
            if entry.name == "tmp":
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:  # removed by another process meanwhile
                continue
            found.append((stat.st_mtime, stat.st_size, entry))
        return sorted(found)

    def usage(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def evict(self, keep: str | None = None) -> int:
        """Remove least recently used files until the cache is within its limit (never
        ``keep``, the file just placed); the bytes removed."""
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in entries:
            if total <= self.limit_bytes:
                break
            if path.name == keep:
                continue
            path.unlink(missing_ok=True)
            self._verified.discard(path.name)
            total -= size
            removed += size
        return removed

    def sweep_temp(self, cutoff: float) -> int:
        """Remove temporary files last written before ``cutoff`` (epoch seconds)."""
        return remove_stale(self.temp_dir, cutoff)

    @staticmethod
    def _touch(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):  # evicted meanwhile by another process
            os.utime(path)


class _HashingWriter:
    """A binary file wrapper that hashes and counts what is written through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)
