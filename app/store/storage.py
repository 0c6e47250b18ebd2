"""The artifact store that settings describe: ``AAM_STORAGE_URL`` ``file:///...`` (a local or
shared directory) or ``s3://bucket/prefix`` (an object store, with this host's cache)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from app.settings import Settings
from app.store.artifacts import ArtifactStore, LocalArtifactStore
from app.store.blob_cache import BlobCache
from app.store.objects import S3ArtifactStore


def store_for_url(
    url: str, *, cache_dir: Path, cache_bytes: int, endpoint_url: str | None = None
) -> ArtifactStore:
    """The store at ``url``; ValueError naming the problem for any other scheme."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"a file storage URL is file:///absolute/path, got {url!r}")
        return LocalArtifactStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        return S3ArtifactStore(
            url, cache=BlobCache(cache_dir, cache_bytes), endpoint_url=endpoint_url
        )
    raise ValueError(f"storage URL {url!r}: expected file:///path or s3://bucket/prefix")


def open_store(settings: Settings) -> ArtifactStore:
    return store_for_url(
        settings.resolved_storage_url,
        cache_dir=settings.cache_dir,
        cache_bytes=settings.cache_bytes,
        endpoint_url=settings.s3_endpoint_url,
    )
