"""``create_app(settings)``: the FastAPI application. Nothing is built at import time; the
process edge (``python -m app``, tests) reads settings and calls this."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from aam_core import __version__
from app.api import errors
from app.api.deps import Services
from app.api.model_cache import ModelCache
from app.api.observability import Metrics, RequestObservability, StateCollector
from app.api.routes import datasets, health, jobs, models, predict
from app.api.threads import prediction_slots, size_request_pool
from app.dispatch import CeleryDispatcher, Dispatcher
from app.settings import Settings
from app.store import (
    ArtifactStore,
    count_by_state,
    make_engine,
    make_session_factory,
    migrate,
)
from app.store.storage import open_store
from app.ui.app import create_ui

log = logging.getLogger("aam.api")


def _state_reader(services: Services) -> dict[str, Any]:
    try:
        with services.sessions() as session:
            jobs = count_by_state(session)
    except Exception:  # a scrape must not fail because the database is away
        jobs = {}
    return {
        "jobs": jobs,
        "queued": jobs.get("queued", 0),
        "loaded_models": len(services.cache),
        "loaded_model_bytes": services.cache.total_bytes,
    }


def build_services(
    settings: Settings,
    *,
    dispatcher: Dispatcher | None = None,
    storage: ArtifactStore | None = None,
) -> Services:
    """Engine (migrated to head), storage, dispatcher, model cache, metrics and prediction
    slots."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    services = Services(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        storage=storage or open_store(settings),
        dispatcher=dispatcher or CeleryDispatcher(settings.resolved_broker_url),
        cache=ModelCache(settings.model_cache_bytes),
        metrics=Metrics(),
        predictions=prediction_slots(settings.predict_concurrency),
    )
    services.metrics.add_collector(StateCollector(lambda: _state_reader(services)))
    return services


def create_app(
    settings: Settings,
    *,
    dispatcher: Dispatcher | None = None,
    storage: ArtifactStore | None = None,
) -> FastAPI:
    """The service. ``dispatcher`` and ``storage`` default to the ones settings describe."""
    services = build_services(settings, dispatcher=dispatcher, storage=storage)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        size_request_pool()
        yield
        services.engine.dispose()

    # /docs and /redoc load Swagger UI and ReDoc from the package, not from a CDN: offline
    # clusters (common on GPU hosts) rendered a blank page. No validator badge: it is fetched
    # from swagger.io.
    app = FastAPIOffline(
        swagger_ui_parameters={"validatorUrl": None},
        title="AAM service",
        version=__version__,
        summary="Train Attention All Microbes models on 16S tables and predict host properties.",
        lifespan=lifespan,
    )
    app.state.services = services
    errors.install(app)
    app.add_middleware(RequestObservability, metrics=services.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "Idempotency-Key",
                "Accept",
                "X-Request-ID",
            ],
            expose_headers=["Location", "X-Request-ID"],
        )
    app.include_router(health.router)
    app.include_router(predict.router)
    app.include_router(datasets.router)
    app.include_router(models.router)
    app.include_router(jobs.router)
    app.mount("/ui", create_ui(services))
    return app
