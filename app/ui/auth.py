"""Sign in with an API key (a signed session cookie, see app/session_cookie.py) and sign out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api.deps import ServicesDep
from app.session_cookie import SESSION_COOKIE, SESSION_SECONDS, issue, match_key
from app.ui.context import FormDep, base_paths, render

router = APIRouter()


@router.get("/")
async def home(request: Request) -> RedirectResponse:
    root, _api = base_paths(request)
    return RedirectResponse(f"{root}/jobs", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, services: ServicesDep) -> Response:
    if services.settings.open_mode:  # nothing to sign in to
        return await home(request)
    return render(request, services, "login.html")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, services: ServicesDep, form: FormDep) -> Response:
    settings = services.settings
    if settings.open_mode:
        return await home(request)
    key = form.get("key")
    entry = match_key(settings, key.strip()) if isinstance(key, str) and key.strip() else None
    if entry is None:
        return render(request, services, "login.html", 401, message="invalid API key")
    response = await home(request)
    response.set_cookie(
        SESSION_COOKIE,
        issue(settings, entry),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, _: FormDep) -> RedirectResponse:
    root, _api = base_paths(request)
    response = RedirectResponse(f"{root}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
