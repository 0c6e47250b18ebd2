"""One place maps exceptions to RFC 9457 problem details (``application/problem+json``).

Every error a client can cause gets a 4xx whose ``detail`` names the problem. aam_core's user
errors (one family, :class:`~aam_core.errors.UserError`: files, settings, targets, checkpoints,
prediction requests) become a 422 whose ``errors[0].loc`` is the request field they name.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aam_core.errors import UserError

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
}


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


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return problem(
            exc.status, exc.detail, kind=exc.kind, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_errors(exc)
        return problem(422, detail, kind="validation-error", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(UserError)
    async def _user(_: Request, exc: UserError) -> JSONResponse:
        return user_problem(exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "the server failed to handle the request; it has been logged")
