"""Content-addressed file storage: uploads, checkpoints, plots and predictions by SHA-256.

A blob lives at ``root/<sha[:2]>/<sha[2:4]>/<sha>`` and is written once: bytes go to a temporary
file under ``root/tmp/``, are hashed and fsynced, then renamed into place with ``os.replace``.
A crash mid-write leaves at most a file under ``tmp/`` (removed by :meth:`sweep_temp`), never a
partial blob under a real name; identical content is stored once.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
import uuid
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DigestMismatch(ValueError):
    """A file's SHA-256 is not the one its sender announced."""


def check_sha256(sha256: str) -> str:
    """The digest in lowercase; ValueError unless it is 64 hexadecimal characters."""
    normalized = sha256.lower() if isinstance(sha256, str) else ""
    if not _SHA256.fullmatch(normalized):
        raise ValueError(f"invalid SHA-256 {str(sha256)[:80]!r}: expected 64 hex characters")
    return normalized


def stream_sha256(stream: BlobStream) -> tuple[str, int]:
    """The (sha256, size) of what ``stream`` holds from where it stands; it is closed after."""
    digest = hashlib.sha256()
    size = 0
    with closing(stream):
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def file_sha256(path: Path) -> tuple[str, int]:
    return stream_sha256(path.open("rb"))


def remove_stale(directory: Path, cutoff: float) -> int:
    """Remove the files of ``directory`` last modified before ``cutoff`` (epoch seconds): the
    leftovers of crashed or aborted writes; how many were removed."""
    removed = 0
    for entry in directory.iterdir():
        try:
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                entry.unlink()
                removed += 1
        except FileNotFoundError:  # finished or swept by someone else meanwhile
            continue
    return removed


def ingest_bytes(store: ArtifactStore, data: bytes) -> str:
    """Store ``data`` through a temporary file of ``store``; its digest."""
    temp = store.new_temp_path()
    try:
        temp.write_bytes(data)
        return store.ingest(temp)[0]
    finally:
        temp.unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStream(Protocol):
    """A stored blob being read: a local file, or an object store's download stream."""

    def read(self, size: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


class ArtifactStore(Protocol):
    def new_temp_path(self) -> Path: ...
    def ingest(self, temp_path: Path, sha256: str | None = None) -> tuple[str, int]: ...
    def put_file(self, path: Path) -> tuple[str, int]: ...
    def put_bytes(self, data: bytes) -> str: ...
    def path(self, sha256: str) -> Path: ...
    def exists(self, sha256: str) -> bool: ...
    def delete(self, sha256: str) -> bool: ...
    def open(self, sha256: str) -> BlobStream: ...
    def sweep_temp(self, older_than: timedelta) -> int: ...
    def ping(self) -> tuple[bool, str]: ...


class LocalArtifactStore:
    """An :class:`ArtifactStore` in a local (or shared, POSIX) directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.temp_dir = self.root / "tmp"
        self.temp_dir.mkdir(parents=True, exist_ok=True)

    def _blob(self, sha256: str) -> Path:
        sha = check_sha256(sha256)
        return self.root / sha[:2] / sha[2:4] / sha

    def new_temp_path(self) -> Path:
        """A fresh path under ``tmp/`` (same filesystem as the blobs); no file is created."""
        return self.temp_dir / f"{uuid.uuid4().hex}.part"

    def ingest(self, temp_path: Path, sha256: str | None = None) -> tuple[str, int]:
        """Move a finished temporary file into the store; its (sha256, size).

        The digest is always computed; when ``sha256`` is given and differs, the file is
        removed and :class:`DigestMismatch` raised. The temporary file is consumed either way.
        """
        expected = None if sha256 is None else check_sha256(sha256)
        temp_path = Path(temp_path)
        actual, size = file_sha256(temp_path)
        if expected is not None and actual != expected:
            temp_path.unlink(missing_ok=True)
            raise DigestMismatch(f"SHA-256 mismatch: expected {expected}, file has {actual}")
        target = self._blob(actual)
        if target.exists():  # identical content is stored once
            temp_path.unlink(missing_ok=True)
            return actual, size
        _fsync_file(temp_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(temp_path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # The file was on another filesystem: copy it next to the blobs, then rename.
            local = self.new_temp_path()
            shutil.copyfile(temp_path, local)
            _fsync_file(local)
            os.replace(local, target)
            temp_path.unlink(missing_ok=True)
        _fsync_dir(target.parent)
        return actual, size

    def put_file(self, path: Path) -> tuple[str, int]:
        """Copy a file into the store (the original is left alone); its (sha256, size)."""
        temp = self.new_temp_path()
        try:
            shutil.copyfile(path, temp)
            return self.ingest(temp)
        finally:
            temp.unlink(missing_ok=True)

    def put_bytes(self, data: bytes) -> str:
        return ingest_bytes(self, data)

    def path(self, sha256: str) -> Path:
        """Where the blob is; KeyError when the store does not hold it."""
        blob = self._blob(sha256)
        if not blob.is_file():
            raise KeyError(sha256)
        return blob

    def exists(self, sha256: str) -> bool:
        return self._blob(sha256).is_file()

    def delete(self, sha256: str) -> bool:
        """Remove the blob (the caller checks no row references it); whether it existed."""
        blob = self._blob(sha256)
        try:
            blob.unlink()
        except FileNotFoundError:
            return False
        return True

    def open(self, sha256: str) -> BinaryIO:
        return self.path(sha256).open("rb")

    def keys(self) -> list[str]:
        """The digests of every blob, sorted (for migration checks). Only files at their
        digest's place count: ``tmp/`` and anything else under the root are not blobs."""
        found = []
        for path in self.root.glob("??/??/*"):
            name = path.name
            if (
                _SHA256.fullmatch(name)
                and path.parent.name == name[2:4]
                and path.parent.parent.name == name[:2]
                and path.is_file()
            ):
                found.append(name)
        return sorted(found)

    def sweep_temp(self, older_than: timedelta, *, now: float | None = None) -> int:
        """Remove temporary files not modified for ``older_than`` (left by crashed or aborted
        writes); how many were removed. Younger files may be uploads in progress."""
        cutoff = (time.time() if now is None else now) - older_than.total_seconds()
        return remove_stale(self.temp_dir, cutoff)

    def ping(self) -> tuple[bool, str]:
        """For /ready: is the store's directory writable, and how much space is free?"""
        try:
            probe = self.new_temp_path()
            probe.write_bytes(b"")
            probe.unlink()
            free = shutil.disk_usage(self.root).free
        except OSError as exc:
            return False, f"{self.root}: {type(exc).__name__}: {exc.strerror or exc}"
        return True, f"{self.root}: writable, {free / 1024**3:.1f} GiB free"
