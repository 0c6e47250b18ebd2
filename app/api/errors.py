"""One place maps exceptions to RFC 9457 problem details (``application/problem+json``).

Every error a client can cause gets a 4xx whose ``detail`` names the problem. aam_core's user
errors (one family, :class:`~aam_core.errors.UserError`: files, settings, targets, checkpoints,
prediction requests) become a 422 whose ``errors[0].loc`` is the request field they name.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from aam_core.errors import UserError
from app.api.schemas import problem_responses
from app.store.blob_cache import CacheTooSmall
from app.store.db import storage_full
from app.store.objects import CorruptArtifact, StorageUnavailable

log = logging.getLogger("aam.api")

PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
    507: "Insufficient storage",
}
# FastAPI's 400 for a body it cannot decode (bytes that are not UTF-8), said usefully
FASTAPI_UNPARSED = "There was an error parsing the body"
UNPARSED = "the request body could not be read: send UTF-8 JSON (Content-Type: application/json)"
STORAGE_FULL = (
    "the server's storage is full: nothing of this request was kept; "
    "ask the operator to free space, then send it again"
)


class ApiError(Exception):
    """An error with its HTTP status and a detail sentence for the client."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind or TITLES.get(status, "error").lower().replace(" ", "-")
        self.errors = errors or []
        self.headers = headers


def not_found(what: str, identifier: str) -> ApiError:
    return ApiError(404, f"{what} {identifier!r} does not exist", kind="not-found")


def problem(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "type": f"/problems/{kind or TITLES.get(status, 'error').lower().replace(' ', '-')}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "errors": errors or [],
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def user_problem(exc: UserError) -> JSONResponse:
    """A user error as a 422: the field in front of the detail and as the error's location
    (``["body", "config", "lr"]``)."""
    errors = []
    if exc.field:
        errors = [{"loc": ["body", *exc.field.split(".")], "msg": str(exc)}]
    return problem(422, exc.located(), kind=exc.problem, errors=errors)


def _message(error: Any) -> str:
    """pydantic's message, without the "Value error, " it puts before a validator's own text."""
    message = str(error.get("msg", ""))
    if error.get("type") == "value_error":
        message = message.removeprefix("Value error, ")
    return message


def _validation_errors(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": _message(e)} for e in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(p for p in first["loc"] if p not in ("body",)) or "request"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}", errors


def _document_problems(app: FastAPI) -> None:
    """Say in ``/openapi.json`` what the handlers below answer: FastAPI documents its request
    validation 422 as an ``application/json`` ``HTTPValidationError``, but it is a problem
    document like every other 4xx here."""
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = default()
        problem_422 = problem_responses(422)[422]
        for operation in (op for path in document["paths"].values() for op in path.values()):
            responses = operation.get("responses", {})
            if "application/json" in responses.get("422", {}).get("content", {}):
                responses["422"] = problem_422
        schemas = document.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Answer every exception as a problem document, and say so in ``/openapi.json``."""
    _document_problems(app)
    for exception, handler in HANDLERS.items():
        app.add_exception_handler(exception, handler)


async def _api(_: Request, exc: ApiError) -> JSONResponse:
    return problem(exc.status, exc.detail, kind=exc.kind, errors=exc.errors, headers=exc.headers)


async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    detail, errors = _validation_errors(exc)
    return problem(422, detail, kind="validation-error", errors=errors)


async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = UNPARSED if exc.detail == FASTAPI_UNPARSED else str(exc.detail)
    return problem(exc.status_code, detail, headers=getattr(exc, "headers", None))


async def _user(_: Request, exc: UserError) -> JSONResponse:
    return user_problem(exc)


async def _storage(request: Request, exc: Exception) -> JSONResponse:
    """A write the disk, SQLite's file on it or PostgreSQL refused for lack of space is a
    507; other OS and database errors are the server's."""
    if storage_full(exc):
        log.error("storage full on %s %s: %s", request.method, request.url.path, exc)
        return problem(507, STORAGE_FULL, kind="storage-full")
    return await _unexpected(request, exc)


async def _store_away(request: Request, exc: StorageUnavailable) -> JSONResponse:
    """The object store did not answer: nothing of the request was kept (an upload's
    dataset row is written only after its files are stored), so the client sends it
    again later."""
    log.error("artifact storage unavailable on %s %s: %s", request.method, request.url.path, exc)
    detail = f"artifact storage is unavailable: {exc}; nothing of this request was kept, send it"
    detail += " again later"
    return problem(503, detail, kind="storage-unavailable", headers={"Retry-After": "30"})


async def _corrupt(request: Request, exc: CorruptArtifact) -> JSONResponse:
    log.error("corrupt artifact on %s %s: %s", request.method, request.url.path, exc)
    return problem(500, f"{exc}; tell the operator", kind="corrupt-artifact")


async def _cache_small(request: Request, exc: CacheTooSmall) -> JSONResponse:
    log.error("artifact cache too small on %s %s: %s", request.method, request.url.path, exc)
    return problem(507, f"{exc}; tell the operator", kind="storage-full")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "the server failed to handle the request; it has been logged")


Handler = Callable[[Request, Any], Awaitable[JSONResponse]]
# Handlers of these classes run inside the app, except Exception's, which runs in Starlette's
# outermost middleware (it re-raises after answering).
HANDLERS: dict[type[Exception], Handler] = {
    ApiError: _api,
    RequestValidationError: _validation,
    StarletteHTTPException: _http,
    UserError: _user,
    StorageUnavailable: _store_away,
    CorruptArtifact: _corrupt,
    CacheTooSmall: _cache_small,
    OSError: _storage,
    OperationalError: _storage,
    Exception: _unexpected,
}
