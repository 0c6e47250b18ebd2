"""FastAPI dependencies, declared once as ``Annotated`` aliases: the services of this process,
a database session, the caller (auth), and "load or 404" lookups scoped to the caller.

Tests swap any of them with ``app.dependency_overrides``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.api.errors import ApiError, not_found
from app.api.model_cache import ModelCache
from app.api.observability import Metrics
from app.dispatch import Dispatcher
from app.settings import Settings
from app.store import ArtifactStore, Dataset, Job, Model, get_dataset, get_job, get_model

OPEN_OWNER = "local"  # the owner of everything on an open (keyless, loopback-only) server


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


@dataclass(frozen=True)
class Caller:
    owner: str
    admin: bool

    @property
    def scope(self) -> str | None:
        """The owner filter for queries: None (everything) for an admin."""
        return None if self.admin else self.owner


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """One session per request; routes commit what they write, the rest is rolled back."""
    with services.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


def get_caller(request: Request, services: ServicesDep) -> Caller:
    """The key's owner; 401 for a missing or unknown key. Open mode: everyone is ``local``."""
    settings = services.settings
    if settings.open_mode:
        caller = Caller(owner=OPEN_OWNER, admin=True)
    else:
        presented = _presented_key(request)
        if presented is None:
            raise ApiError(
                401, "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                kind="unauthorized", headers={"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
        match = None
        for entry in settings.api_keys:  # compare every key in constant time
            if hmac.compare_digest(entry.key.get_secret_value().encode(), presented.encode()):
                match = entry
        if match is None:
            raise ApiError(401, "invalid API key", kind="unauthorized",
                           headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        caller = Caller(owner=match.owner, admin=match.admin)
    request.state.owner = caller.owner
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]


def dataset_or_404(
    dataset_id: Annotated[str, Path()], session: SessionDep, caller: CallerDep
) -> Dataset:
    dataset = get_dataset(session, dataset_id, caller.scope)
    if dataset is None:
        raise not_found("dataset", dataset_id)
    return dataset


def job_or_404(job_id: Annotated[str, Path()], session: SessionDep, caller: CallerDep) -> Job:
    job = get_job(session, job_id, caller.scope)
    if job is None:
        raise not_found("job", job_id)
    return job


def model_or_404(model_id: Annotated[str, Path()], session: SessionDep, caller: CallerDep) -> Model:
    model = get_model(session, model_id, caller.scope)
    if model is None:
        raise not_found("model", model_id)
    return model


DatasetDep = Annotated[Dataset, Depends(dataset_or_404)]
JobDep = Annotated[Job, Depends(job_or_404)]
ModelDep = Annotated[Model, Depends(model_or_404)]
