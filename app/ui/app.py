"""``create_ui(services)``: the dashboard as an application mounted at ``/ui`` (kept out of the
API's OpenAPI document; its own error pages: a redirect to sign in, HTML instead of problem
documents)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from aam_core.errors import UserError
from app.api.deps import Services
from app.api.errors import ApiError
from app.ui import auth, datasets, jobs, models
from app.ui.context import CsrfRejected, SignInRequired, base_paths, problem_of, render


def create_ui(services: Services) -> FastAPI:
    ui = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    ui.state.services = services
    ui.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @ui.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _: SignInRequired) -> Response:
        root, _api = base_paths(request)
        return RedirectResponse(f"{root}/login", status_code=303)

    @ui.exception_handler(CsrfRejected)
    async def _csrf(request: Request, _: CsrfRejected) -> HTMLResponse:
        message = "the form expired or came from another site: reload the page and send it again"
        return render(request, services, "error.html", 403, message=message)

    @ui.exception_handler(ApiError)
    @ui.exception_handler(UserError)
    async def _problem(request: Request, exc: Exception) -> HTMLResponse:
        message, _field = problem_of(exc)
        status = exc.status if isinstance(exc, ApiError) else 422
        return render(request, services, "error.html", status, message=message)

    for module in (auth, jobs, datasets, models):
        ui.include_router(module.router)
    return ui
