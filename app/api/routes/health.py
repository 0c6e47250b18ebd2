"""Liveness, readiness and Prometheus metrics (API.md, Health and operations)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from aam_core import __version__
from app.api.deps import Services, ServicesDep
from app.api.schemas import Check, Health, Ready
from app.api.threads import run_blocking
from app.store import live_workers, ping

router = APIRouter(tags=["health"])


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
