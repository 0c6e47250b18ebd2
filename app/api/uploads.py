"""Streaming multipart uploads: file parts go to disk chunk by chunk with their SHA-256
computed on the way, and the size limit is enforced while streaming (413 as soon as the body
passes it, whatever Content-Length claimed)."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from aam_core.io.files import is_disk_full
from app.api.errors import STORAGE_FULL, ApiError

MAX_FIELD_BYTES = 1024 * 1024  # a text field (model_id, name, output, a JSON blob) is small
MAX_PARTS = 16


@dataclass
class UploadedFile:
    field: str
    filename: str  # the client's base name, for messages only (never a path on this server)
    path: Path  # temporary file (the caller moves it into artifact storage or deletes it)
    size: int
    sha256: str


@dataclass
class Upload:
    files: dict[str, UploadedFile] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    def cleanup(self) -> None:
        for f in self.files.values():
            f.path.unlink(missing_ok=True)


def safe_name(raw: str | None, fallback: str) -> str:
    """The last path component of a client's file name, stripped of control characters."""
    if not raw:
        return fallback
    name = PurePath(raw.replace("\\", "/")).name
    name = re.sub(r"[\x00-\x1f\x7f]", "", name).strip()
    return name[:200] or fallback


class _Collector:
    def __init__(self, temp_dir: Path, limit: int, allowed_files: set[str]) -> None:
        self.temp_dir = temp_dir
        self.limit = limit
        self.allowed_files = allowed_files
        self.upload = Upload()
        self.total = 0
        self.parts = 0
        self._headers: dict[str, str] = {}
        self._header_field = b""
        self._header_value = b""
        self._name: str | None = None
        self._filename: str | None = None
        self._handle: IO[bytes] | None = None
        self._path: Path | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._text = bytearray()

    # python-multipart callbacks -----------------------------------------------------------
    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ApiError(413, f"too many parts in the form (at most {MAX_PARTS})")
        self._headers = {}
        self._name = self._filename = None
        self._size = 0
        self._text = bytearray()
        self._hash = hashlib.sha256()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        key = self._header_field.decode("latin-1").strip().lower()
        self._headers[key] = self._header_value.decode("utf-8", errors="replace")
        self._header_field = self._header_value = b""

    def on_headers_finished(self) -> None:
        disposition = self._headers.get("content-disposition", "")
        _, options = parse_options_header(disposition)
        name = options.get(b"name")
        if name is None:
            raise ApiError(400, "a form part has no name")
        self._name = name.decode("utf-8", errors="replace")
        filename = options.get(b"filename")
        if filename is not None:
            if self._name not in self.allowed_files:
                raise ApiError(
                    422,
                    f"unexpected file field {self._name!r}; expected "
                    + ", ".join(sorted(self.allowed_files)),
                    kind="validation-error",
                )
            if self._name in self.upload.files:
                raise ApiError(422, f"the file field {self._name!r} is given twice")
            self._filename = safe_name(filename.decode("utf-8", errors="replace"), self._name)
            fd, tmp = _mkstemp(self.temp_dir)
            self._path = Path(tmp)
            self._handle = os.fdopen(fd, "wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._handle is not None:
            self._handle.write(chunk)
            self._hash.update(chunk)
            self._size += len(chunk)
        else:
            self._text += chunk
            if len(self._text) > MAX_FIELD_BYTES:
                raise ApiError(413, f"the form field {self._name!r} is larger than 1 MiB")

    def on_part_end(self) -> None:
        assert self._name is not None
        if self._handle is not None and self._path is not None:
            self._handle.close()
            self._handle = None
            self.upload.files[self._name] = UploadedFile(
                self._name,
                self._filename or self._name,
                self._path,
                self._size,
                self._hash.hexdigest(),
            )
            self._path = None
        else:
            self.upload.fields[self._name] = self._text.decode("utf-8", errors="replace")

    def abort(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)
        self.upload.cleanup()


def _mkstemp(directory: Path) -> tuple[int, str]:
    import tempfile

    directory.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix="upload-", dir=directory)


async def read_multipart(
    request: Request, *, temp_dir: Path, limit: int, files: set[str]
) -> Upload:
    """Parse a multipart/form-data body as it arrives. Raises ApiError 413 past ``limit``
    bytes, 415 for another content type, 400 for a malformed body."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise ApiError(415, "expected a multipart/form-data body (file uploads)")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, _too_large(limit))
    collector = _Collector(temp_dir, limit, files)
    callbacks = {
        name: getattr(collector, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
        )
    }
    parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            collector.total += len(chunk)
            if collector.total > limit:
                raise ApiError(413, _too_large(limit))
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        collector.abort()
        raise
    except OSError as exc:
        collector.abort()
        if is_disk_full(exc):
            raise ApiError(507, STORAGE_FULL, kind="storage-full") from None
        raise
    except Exception as exc:  # python-multipart's parse errors, a client that went away
        collector.abort()
        raise ApiError(400, f"malformed multipart body ({type(exc).__name__})") from None
    return collector.upload


def _too_large(limit: int) -> str:
    return (
        f"the upload is larger than the server's limit of {limit:,} bytes (AAM_UPLOAD_LIMIT_BYTES)"
    )
