"""Stored files sent to clients: from the file on local storage, streamed from the object store
on ``s3://`` storage (never whole in memory, and not through the host's cache: a download of a
model is one read, not a reason to keep a copy)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from app.api.errors import ApiError
from app.api.threads import run_blocking
from app.store import ArtifactStore
from app.store.artifacts import CHUNK
from app.store.objects import S3ArtifactStore

log = logging.getLogger("aam.api")


def attachment(filename: str) -> str:
    """A Content-Disposition value for a download named ``filename`` (RFC 6266)."""
    quoted = quote(filename)
    if quoted == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{quoted}"


def blob_response(
    storage: ArtifactStore,
    sha256: str,
    *,
    media_type: str,
    filename: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """The blob as a download; KeyError when the store does not hold it (checked before the
    answer starts, so a missing object is still a clean error)."""
    if not isinstance(storage, S3ArtifactStore):
        return FileResponse(
            storage.path(sha256), media_type=media_type, filename=filename, headers=headers
        )
    body = storage.open(sha256)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await run_blocking(body.read, CHUNK):
                yield chunk
        finally:
            await run_blocking(body.close)

    sent = {
        **(headers or {}),
        "Content-Disposition": attachment(filename),
        "Content-Length": str(body.size),
    }
    return StreamingResponse(chunks(), media_type=media_type, headers=sent)


def missing_blob(what: str, sha256: str) -> ApiError:
    # A row without its file is the server's fault, not the client's: say which file.
    log.error("%s (sha256 %s) is missing from artifact storage", what, sha256)
    return ApiError(
        500, f"{what} is missing from artifact storage (sha256 {sha256}); tell the operator"
    )


def send_blob(
    request: Request, storage: ArtifactStore, sha256: str, what: str, media_type: str, name: str
) -> Response:
    """The blob with its digest as a strong ETag; 304 when the client already holds it."""
    etag = f'"{sha256}"'
    held = [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]
    if etag in held or "*" in held:
        return Response(status_code=304, headers={"ETag": etag})
    try:
        return blob_response(
            storage, sha256, media_type=media_type, filename=name, headers={"ETag": etag}
        )
    except KeyError:
        raise missing_blob(what, sha256) from None
