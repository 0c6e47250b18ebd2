"""FastAPI dependencies, declared once as ``Annotated`` aliases: the services of this process,
a database session, the caller (auth), and "load or 404" lookups scoped to the caller.

Tests swap any of them with ``app.dependency_overrides``.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import Depends, Path, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.api.errors import ApiError, not_found
from app.api.model_cache import ModelCache
from app.api.observability import Metrics
from app.api.threads import Slots
from app.dispatch import Dispatcher
from app.session_cookie import session_of
from app.settings import Settings
from app.store import ArtifactStore, Dataset, Job, Model, get_dataset, get_job, get_model

OPEN_OWNER = "local"  # the owner of everything on an open (keyless, loopback-only) server
# Methods a dashboard session cookie authenticates (see get_caller).
COOKIE_METHODS = frozenset({"GET", "HEAD"})


@dataclass
class Services:
    """What one API process holds, built once by ``create_app``."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: ArtifactStore
    dispatcher: Dispatcher
    cache: ModelCache
    metrics: Metrics
    predictions: Slots  # how many predictions run at once (AAM_PREDICT_CONCURRENCY)


@dataclass(frozen=True)
class Caller:
    owner: str
    admin: bool

    @property
    def scope(self) -> str | None:
        """The owner filter for queries: None (everything) for an admin."""
        return None if self.admin else self.owner


# The dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in
# the thread pool, and each such hop cost more CPU than the work it wrapped.


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(services: ServicesDep) -> AsyncIterator[Session]:
    """One session per request; routes commit what they write, the rest is rolled back.

    Opening a session does no I/O (it connects on first use). Closing one that still holds a
    transaction rolls it back, a database round trip, so that runs in a thread; a session with
    nothing open (never used, or committed) closes here. The closing thread does not queue for
    the shared thread pool's tokens (its own limiter, as FastAPI does for dependency exits):
    requests holding tokens may be waiting for the very connection this close gives back.
    """
    session = services.sessions()
    try:
        yield session
    finally:
        if session.in_transaction():
            await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))
        else:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


async def get_caller(request: Request, services: ServicesDep) -> Caller:
    """The key's owner; 401 for a missing or unknown key. Open mode: everyone is ``local``.

    Without a key, a GET or HEAD may present the dashboard's signed session cookie instead
    (app/session_cookie.py): a browser's EventSource cannot send an Authorization header, so
    ``/jobs/{id}/events`` and the download links (checkpoint, predictions, logs) of the
    dashboard need it. Reads only: a cookie is sent by the browser on its own, so accepting it
    for a POST or DELETE of the API would let another site's form act for the user (the
    dashboard's own forms post to /ui, which checks a CSRF token). A presented key always wins.
    """
    settings = services.settings
    presented = None if settings.open_mode else _presented_key(request)
    session = None
    if presented is None and not settings.open_mode and request.method in COOKIE_METHODS:
        session = session_of(settings, request.cookies)
    if settings.open_mode:
        caller = Caller(owner=OPEN_OWNER, admin=True)
    elif session is not None:
        caller = Caller(owner=session.owner, admin=session.admin)
    else:
        if presented is None:
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                kind="unauthorized",
                headers={"WWW-Authenticate": "Bearer"},
            )
        match = None
        for entry in settings.api_keys:  # compare every key in constant time
            if hmac.compare_digest(entry.key.get_secret_value().encode(), presented.encode()):
                match = entry
        if match is None:
            raise ApiError(
                401, "invalid API key", kind="unauthorized", headers={"WWW-Authenticate": "Bearer"}
            )
        caller = Caller(owner=match.owner, admin=match.admin)
    request.state.owner = caller.owner
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


def _end_read(session: Session) -> None:
    """End the lookup's read transaction (the row stays loaded: no expiry on commit). A route
    does not hold a snapshot open while it works, and the session closes without a round
    trip. A route that reads or writes again opens a new transaction."""
    session.commit()


def dataset_or_404(
    dataset_id: Annotated[str, Path()], session: SessionDep, caller: CallerDep
) -> Dataset:
    dataset = get_dataset(session, dataset_id, caller.scope)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    _end_read(session)
    return dataset


def job_or_404(job_id: Annotated[str, Path()], session: SessionDep, caller: CallerDep) -> Job:
    job = get_job(session, job_id, caller.scope)
    if job is None:
        raise not_found("job", job_id)
    _end_read(session)
    return job


def model_or_404(model_id: Annotated[str, Path()], session: SessionDep, caller: CallerDep) -> Model:
    model = get_model(session, model_id, caller.scope)
    if model is None:
        raise not_found("model", model_id)
    _end_read(session)
    return model


DatasetDep = Annotated[Dataset, Depends(dataset_or_404)]
JobDep = Annotated[Job, Depends(job_or_404)]
ModelDep = Annotated[Model, Depends(model_or_404)]
