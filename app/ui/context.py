"""What every dashboard page shares: the caller (from the session cookie, or ``local`` on an
open loopback server), CSRF checks of form posts, rendering, and errors shown as messages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from starlette.datastructures import FormData

from aam_core.errors import UserError
from app.api.deps import OPEN_OWNER, Caller, ServicesDep
from app.api.errors import ApiError
from app.session_cookie import (
    CSRF_COOKIE,
    CSRF_FIELD,
    Session,
    csrf_ok,
    csrf_token,
    new_csrf_cookie,
    session_of,
)

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


class SignInRequired(Exception):
    """Raised by :func:`ui_caller` without a valid session; answered with a redirect."""


class CsrfRejected(Exception):
    """A form post without the page's CSRF token (or from another origin)."""


def base_paths(request: Request) -> tuple[str, str]:
    """(the dashboard's root, the API's root): the mount's root path, behind any proxy prefix."""
    ui = str(request.scope.get("root_path", "")).rstrip("/")
    return ui, ui.removesuffix("/ui")


async def ui_caller(request: Request, services: ServicesDep) -> Caller:
    """The signed-in owner (only the session cookie: the dashboard's pages are not an API)."""
    settings = services.settings
    if settings.open_mode:
        return Caller(owner=OPEN_OWNER, admin=True)
    session = session_of(settings, request.cookies)
    if session is None:
        raise SignInRequired
    request.state.owner = session.owner
    return Caller(owner=session.owner, admin=session.admin)


UiCallerDep = Annotated[Caller, Depends(ui_caller)]


def _session(request: Request, services: ServicesDep) -> Session | None:
    return session_of(services.settings, request.cookies)


async def checked_form(request: Request, services: ServicesDep) -> FormData:
    """A urlencoded form post whose CSRF token matches (403 otherwise). A browser's Origin
    header, when sent, must be this server's."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        raise CsrfRejected
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    session = _session(request, services)
    if not csrf_ok(
        services.settings, session, request.cookies, sent if isinstance(sent, str) else None
    ):
        raise CsrfRejected
    return form


FormDep = Annotated[FormData, Depends(checked_form)]


def check_token(request: Request, services: ServicesDep, sent: str | None) -> None:
    """The CSRF check of a multipart post, whose form the route streams itself."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") != str(request.base_url).rstrip("/"):
        raise CsrfRejected
    if not csrf_ok(services.settings, _session(request, services), request.cookies, sent):
        raise CsrfRejected


def render(
    request: Request, services: ServicesDep, template: str, status: int = 200, **context: Any
) -> HTMLResponse:
    """A page with the caller's CSRF token; sets the ``aam_csrf`` cookie when it is missing."""
    settings = services.settings
    session = _session(request, services)
    token = csrf_token(settings, session, request.cookies)
    fresh = None
    if not token:
        token = fresh = new_csrf_cookie()
    ui, api = base_paths(request)
    owner = OPEN_OWNER if settings.open_mode else (session.owner if session else None)
    response = TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "ui": ui,
            "api": api,
            "csrf": token,
            "owner": owner,
            "open_mode": settings.open_mode,
            **context,
        },
        status_code=status,
    )
    if fresh is not None:
        response.set_cookie(
            CSRF_COOKIE,
            fresh,
            httponly=True,
            samesite="strict",
            path=ui or "/",
            secure=request.url.scheme == "https",
        )
    return response


def problem_of(exc: Exception) -> tuple[str, str | None]:
    """(message, field) of an error the API would answer with a problem document: the field
    is the dotted ``errors[0].loc`` without ``body`` (``config.lr``, ``target.column``)."""
    loc: list[Any] = []
    if isinstance(exc, ApiError):
        message = exc.detail
        loc = list(exc.errors[0].get("loc", [])) if exc.errors else []
    elif isinstance(exc, UserError):
        message = exc.located()
        loc = exc.field.split(".") if exc.field else []
    elif isinstance(exc, ValidationError):
        first = exc.errors()[0]
        loc = list(first["loc"])
        message = f"{'.'.join(map(str, loc)) or 'request'}: {first['msg']}"
        message = message.replace("Value error, ", "")
    else:
        raise exc
    field = ".".join(str(p) for p in loc if p != "body") or None
    return message, field
