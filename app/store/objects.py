"""Content-addressed storage in an S3-compatible object store (AWS S3, Ceph RGW, SeaweedFS,
MinIO, Garage), for hosts that share no filesystem.

A blob is the object ``<prefix>/<sha[:2]>/<sha[2:4]>/<sha>`` of the bucket. It is uploaded from
a finished local file whose digest has been computed (multipart above ``part_bytes``), straight
under its final key: S3 makes an object visible only once its upload is complete, so a reader
never sees part of one. An upload that fails mid-way leaves at most an incomplete multipart
upload, invisible as an object and aborted by :meth:`S3ArtifactStore.sweep_temp`.

Reads go through the host's :class:`~app.store.blob_cache.BlobCache`: an object is downloaded
once per host, hashed on the way, and never served when its digest does not match.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.store.artifacts import DigestMismatch, check_sha256, file_sha256, ingest_bytes
from app.store.blob_cache import BlobCache

log = logging.getLogger("aam.storage")

PART_BYTES = 16 * 1024**2  # S3's smallest part is 5 MiB; 10,000 parts of 16 MiB hold 156 GiB


class StorageUnavailable(RuntimeError):
    """The object store could not be reached or refused the request."""


class CorruptArtifact(DigestMismatch):
    """A stored object whose content does not have its digest."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without slashes at its ends)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"an S3 storage URL is s3://bucket or s3://bucket/prefix, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"an S3 storage URL takes no query or fragment, got {url!r}")
    return parts.netloc, parts.path.strip("/")


class S3ArtifactStore:
    """An :class:`~app.store.artifacts.ArtifactStore` in a bucket, with a local cache.

    Credentials and region come from boto3's usual chain (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``, instance roles);
    ``endpoint_url`` names a store other than AWS (path-style addressing is used then).
    """

    def __init__(
        self,
        url: str,
        *,
        cache: BlobCache,
        endpoint_url: str | None = None,
        part_bytes: int = PART_BYTES,
        attempts: int = 3,
    ) -> None:
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse_s3_url(url)
        self.cache = cache
        self.endpoint_url = endpoint_url
        self.part_bytes = part_bytes
        self.attempts = attempts
        self._client: Any = None
        self._client_pid = 0
        self._lock = threading.Lock()

    # -- the client and its errors ---------------------------------------------------------

    @property
    def client(self) -> Any:
        """One client per process (boto3 clients are thread-safe but not fork-safe); boto3 is
        imported on first use, so a service on local storage never loads it."""
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                import boto3
                from botocore.config import Config

                config = Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"max_attempts": self.attempts, "mode": "standard"},
                    s3={"addressing_style": "path" if self.endpoint_url else "auto"},
                )
                self._client = boto3.session.Session().client(
                    "s3", endpoint_url=self.endpoint_url, config=config
                )
                self._client_pid = os.getpid()
            return self._client

    def _where(self) -> str:
        return f"{self.url}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def _unavailable(self, exc: BaseException, doing: str) -> StorageUnavailable:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StorageUnavailable(f"object store {self._where()} failed while {doing}: {text}")

    @staticmethod
    def _missing(exc: BaseException) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return False
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code in {"404", "NoSuchKey", "NotFound"}

    @staticmethod
    def _errors() -> tuple[type[BaseException], ...]:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        return (BotoCoreError, ClientError, Boto3Error)

    def key(self, sha256: str) -> str:
        sha = check_sha256(sha256)
        name = f"{sha[:2]}/{sha[2:4]}/{sha}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def object_url(self, sha256: str) -> str:
        return f"s3://{self.bucket}/{self.key(sha256)}"

    # -- writes ------------------------------------------------------------------------------

    def new_temp_path(self) -> Path:
        return self.cache.new_temp_path()

    def ingest(self, temp_path: Path, sha256: str | None = None) -> tuple[str, int]:
        """Upload a finished temporary file under its digest; its (sha256, size). The file is
        consumed: it becomes this host's cached copy, or is removed."""
        expected = None if sha256 is None else check_sha256(sha256)
        temp_path = Path(temp_path)
        try:
            actual, size = file_sha256(temp_path)
            if expected is not None and actual != expected:
                raise DigestMismatch(f"SHA-256 mismatch: expected {expected}, file has {actual}")
            self._upload(temp_path, actual)
            self.cache.adopt(temp_path, actual, size)
            return actual, size
        finally:
            temp_path.unlink(missing_ok=True)

    def put_file(self, path: Path) -> tuple[str, int]:
        """Upload a file (the original is left alone); its (sha256, size)."""
        actual, size = file_sha256(Path(path))
        self._upload(Path(path), actual)
        return actual, size

    def put_bytes(self, data: bytes) -> str:
        return ingest_bytes(self, data)

    def _upload(self, path: Path, sha256: str) -> None:
        """Stream the file to its key (multipart when large) unless the bucket holds it."""
        if self.exists(sha256):  # identical content is stored once
            return
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(
            multipart_threshold=self.part_bytes,
            multipart_chunksize=self.part_bytes,
            max_concurrency=4,
        )
        try:
            self.client.upload_file(
                str(path),
                self.bucket,
                self.key(sha256),
                ExtraArgs={"Metadata": {"sha256": sha256}},
                Config=transfer,
            )
        except self._errors() as exc:
            raise self._unavailable(exc, f"uploading {self.object_url(sha256)}") from exc

    # -- reads ------------------------------------------------------------------------------

    def _head(self, sha256: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
            return head
        except self._errors() as exc:
            if self._missing(exc):
                return None
            raise self._unavailable(exc, f"looking up {self.object_url(sha256)}") from exc

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def path(self, sha256: str) -> Path:
        """A local copy of the blob, from this host's cache or downloaded into it and checked;
        KeyError when the bucket does not hold it, :class:`CorruptArtifact` naming the object
        when its content does not have its digest."""
        sha = check_sha256(sha256)
        cached = self.cache.get(sha)
        if cached is not None:
            return cached
        try:
            with self.open(sha) as body:  # its size, before any byte is read
                return self.cache.fetch(sha, body.size, body, f"object {self.object_url(sha)}")
        except DigestMismatch as exc:
            log.error("%s", exc)
            raise CorruptArtifact(str(exc)) from None

    def open(self, sha256: str) -> _Body:
        """The object's bytes as a stream from the store (not through the cache); KeyError
        when the bucket does not hold it."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(sha256))
        except self._errors() as exc:
            if self._missing(exc):
                raise KeyError(sha256) from None
            raise self._unavailable(exc, f"reading {self.object_url(sha256)}") from exc
        return _Body(answer["Body"], int(answer["ContentLength"]), self, sha256)

    def delete(self, sha256: str) -> bool:
        """Remove the object and this host's copy; whether the bucket held it."""
        existed = self.exists(sha256)
        self.cache.discard(sha256)
        if existed:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
            except self._errors() as exc:
                raise self._unavailable(exc, f"deleting {self.object_url(sha256)}") from exc
        return existed

    # -- housekeeping -----------------------------------------------------------------------

    def sweep_temp(self, older_than: timedelta, *, now: float | None = None) -> int:
        """Abort multipart uploads under the prefix started more than ``older_than`` ago (left
        by failed uploads) and remove the cache's stale temporary files; how many."""
        cutoff = (time.time() if now is None else now) - older_than.total_seconds()
        removed = self.cache.sweep_temp(cutoff)
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() < cutoff:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        removed += 1
        except self._errors() as exc:
            raise self._unavailable(exc, "aborting stale multipart uploads") from exc
        return removed

    def ping(self) -> tuple[bool, str]:
        """For /ready: is the bucket reachable, and how full is this host's cache?"""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._errors() as exc:
            return False, str(self._unavailable(exc, "checking the bucket"))[:300]
        used = self.cache.usage()
        free = shutil.disk_usage(self.cache.root).free
        return True, (
            f"{self._where()}: reachable; cache {used / 1024**2:.0f} of "
            f"{self.cache.limit_bytes / 1024**2:.0f} MiB used, {free / 1024**3:.1f} GiB free"
        )

    def keys(self) -> list[str]:
        """The digests of every blob under the prefix (for migration checks)."""
        found = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"].rsplit("/", 1)[-1]
                    try:
                        found.append(check_sha256(name))
                    except ValueError:
                        continue  # not one of ours
        except self._errors() as exc:
            raise self._unavailable(exc, "listing the bucket") from exc
        return found


class _Body:
    """A downloading object's stream: read errors become :class:`StorageUnavailable`."""

    def __init__(self, body: Any, size: int, store: S3ArtifactStore, sha256: str) -> None:
        self.body = body
        self.size = size
        self.store = store
        self.sha256 = sha256

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self.body.read(size if size >= 0 else None)
            return data
        except self.store._errors() as exc:
            url = self.store.object_url(self.sha256)
            raise self.store._unavailable(exc, f"reading {url}") from exc

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> _Body:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
