"""The service's front page, liveness, readiness and Prometheus metrics (docs/api.md, Health and
operations)."""

from __future__ import annotations

import html
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from aam_core import __version__
from app.api.deps import Services, ServicesDep
from app.api.schemas import Check, Health, Ready
from app.api.threads import run_blocking
from app.store import live_workers, ping

router = APIRouter(tags=["health"])


LINKS = {
    "docs": "/docs",  # FastAPI's defaults, which create_app keeps
    "openapi": "/openapi.json",
    "health": "/health",
    "ready": "/ready",
    "metrics": "/metrics",
    "datasets": "/datasets",
    "jobs": "/jobs",
    "models": "/models",
    "predict": "/predict",
}


class IndexLinks(BaseModel):
    docs: str
    openapi: str
    health: str
    ready: str
    metrics: str
    datasets: str
    jobs: str
    models: str
    predict: str


class ServiceIndex(BaseModel):
    name: str
    version: str
    summary: str
    auth: str
    links: IndexLinks


def _index(request: Request, services: Services) -> ServiceIndex:
    app = request.app
    root = request.scope.get("root_path", "")  # behind a proxy that mounts the API below /
    auth = (
        "open: this server has no API keys and listens on loopback only"
        if services.settings.open_mode
        else "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' "
        "(/, /health, /ready and /metrics need none)"
    )
    return ServiceIndex(
        name=app.title,
        version=app.version,
        summary=app.summary or "",
        auth=auth,
        links=IndexLinks(**{name: f"{root}{path}" for name, path in LINKS.items()}),
    )


def _index_page(index: ServiceIndex) -> str:
    links = "".join(
        f'<li><a href="{html.escape(path)}">{html.escape(path)}</a> ({name})</li>'
        for name, path in index.links.model_dump().items()
    )
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(index.name)}'
        f"</title></head><body><h1>{html.escape(index.name)} {html.escape(index.version)}</h1>"
        f"<p>{html.escape(index.summary)}</p><p>Authentication: {html.escape(index.auth)}.</p>"
        f"<ul>{links}</ul></body></html>"
    )


@router.get(
    "/",
    response_model=ServiceIndex,
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
)
async def index(request: Request, services: ServicesDep) -> Response:
    """What this service is and where to go: the interactive docs, the OpenAPI document, the
    health checks and the main resources. JSON, or an HTML page for a browser
    (``Accept: text/html``)."""
    found = _index(request, services)
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(_index_page(found))
    return JSONResponse(found.model_dump())


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the process answers; no dependency is consulted."""
    return Health(version=__version__)


def _check(result: tuple[bool, str]) -> Check:
    return Check(ok=result[0], detail=result[1])


def _workers(services: Services) -> Check:
    within = timedelta(seconds=services.settings.heartbeat_timeout_seconds)
    try:
        with services.sessions() as session:
            workers = live_workers(session, within)
    except Exception as exc:  # the database check reports the cause
        return Check(ok=False, detail=f"unknown: database unavailable ({type(exc).__name__})")
    if not workers:
        return Check(
            ok=False,
            detail=f"no worker seen in the last {within.total_seconds():.0f} s: queued jobs "
            "wait until one starts",
        )
    names = ", ".join(f"{w.name} ({w.device})" for w in workers[:5])
    more = f" and {len(workers) - 5} more" if len(workers) > 5 else ""
    return Check(ok=True, detail=f"{len(workers)} alive: {names}{more}")


def _readiness(services: Services) -> Ready:
    return Ready(
        database=_check(ping(services.engine)),
        broker=_check(services.dispatcher.ping()),
        storage=_check(services.storage.ping()),
        workers=_workers(services),
    )


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready}})
async def ready(services: ServicesDep) -> JSONResponse:
    """Readiness: database (schema at head), broker, artifact storage and workers."""
    checks = await run_blocking(_readiness, services)  # an unreachable broker takes seconds
    ok = all(c.ok for c in (checks.database, checks.broker, checks.storage, checks.workers))
    return JSONResponse(checks.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    """Prometheus text exposition."""
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
