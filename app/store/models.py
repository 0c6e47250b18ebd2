"""Model rows (registered by a succeeded job, or imported). Functions flush; the caller owns
the transaction and commits."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, delete, exists, or_, select
from sqlalchemy.orm import Session

from app.contracts import ACTIVE_STATES
from app.store.pagination import DEFAULT_LIMIT, paginate
from app.store.tables import Job, Model, new_id, utcnow

ModelKind = Literal["encoder", "regressor", "classifier"]
ModelSource = Literal["job", "import"]
MODEL_KINDS: tuple[str, ...] = ("encoder", "regressor", "classifier")
MODEL_SOURCES: tuple[str, ...] = ("job", "import")


def create_model(
    session: Session,
    *,
    owner: str,
    name: str,
    kind: ModelKind,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    n_parameters: int,
    checkpoint_sha256: str,
    source: ModelSource,
    job_id: str | None = None,
    dataset_id: str | None = None,
    target: Mapping[str, Any] | None = None,
    plots: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
    model_id: str | None = None,
    created_at: datetime | None = None,
) -> Model:
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {', '.join(MODEL_KINDS)}, got {kind!r}")
    if source not in MODEL_SOURCES:
        raise ValueError(f"model source must be one of {', '.join(MODEL_SOURCES)}, got {source!r}")
    model = Model(
        id=model_id or new_id("mdl"),
        owner=owner,
        name=name,
        kind=kind,
        created_at=created_at or utcnow(),
        job_id=job_id,
        dataset_id=dataset_id,
        target=None if target is None else dict(target),
        config=dict(config),
        metrics=dict(metrics),
        n_parameters=n_parameters,
        checkpoint_sha256=checkpoint_sha256,
        plots=dict(plots or {}),
        source=source,
        details=dict(details or {}),
    )
    session.add(model)
    session.flush()
    return model


def get_model(session: Session, model_id: str, owner: str | None) -> Model | None:
    """The model, or None when missing or another owner's (``owner=None``: admin, workers)."""
    model = session.get(Model, model_id)
    if model is None or not _visible(model.owner, owner):
        return None
    return model


def model_checkpoint(session: Session, model_id: str, owner: str | None) -> str | None:
    """The model's checkpoint digest under :func:`get_model`'s rule, reading two columns, not
    the row's JSON (a prediction request needs no more)."""
    row = session.execute(
        select(Model.owner, Model.checkpoint_sha256).where(Model.id == model_id)
    ).one_or_none()
    if row is None or not _visible(row.owner, owner):
        return None
    return str(row.checkpoint_sha256)


def _visible(model_owner: str, owner: str | None) -> bool:
    return owner is None or model_owner == owner


def list_models(
    session: Session,
    owner: str | None,
    *,
    kind: ModelKind | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> tuple[list[Model], str | None]:
    statement = select(Model)
    if owner is not None:
        statement = statement.where(Model.owner == owner)
    if kind is not None:
        statement = statement.where(Model.kind == kind)
    return paginate(session, statement, Model.created_at, Model.id, limit=limit, cursor=cursor)


def delete_model(session: Session, model_id: str) -> bool:
    """Delete the row unless an active job uses it; whether a row was deleted.

    The caller checks ownership and :func:`app.store.jobs.model_in_use` first (to answer 409);
    the condition is repeated in the DELETE so a job submitted in between keeps its model.
    Then :func:`checkpoint_referenced` before removing the checkpoint file (identical
    checkpoints are stored once).
    """
    in_use = exists().where(
        or_(Job.model_id == model_id, Job.base_model_id == model_id),
        Job.state.in_([s.value for s in ACTIVE_STATES]),
    )
    result = session.execute(
        delete(Model).where(Model.id == model_id, ~in_use),
        execution_options={"synchronize_session": "fetch"},
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def checkpoint_referenced(session: Session, sha256: str) -> bool:
    """Whether any model still uses this checkpoint file."""
    return bool(session.scalar(select(exists().where(Model.checkpoint_sha256 == sha256))))
