"""Job rows: submission, lookup, listing and the questions other resources ask about jobs.

Functions here flush; the caller owns the transaction and commits. The state transitions a
worker or the reaper drives (claim, heartbeat, progress, cancel, finish, requeue) live in
:mod:`app.store.job_state`, the per-epoch metrics and log lines in :mod:`app.store.job_history`;
both commit themselves and are re-exported here, so ``jobs.claim_job`` works too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.contracts import ACTIVE_STATES, JobKind, JobState
from app.store.job_history import add_metrics, append_logs, get_logs, get_metrics
from app.store.job_state import (
    JobSignal,
    claim_job,
    finish_job,
    heartbeat,
    request_cancel,
    requeue_stale,
    update_progress,
)
from app.store.pagination import DEFAULT_LIMIT, paginate
from app.store.tables import Job, new_id, utcnow

__all__ = [
    "JobSignal",
    "add_metrics",
    "append_logs",
    "claim_job",
    "count_by_state",
    "create_job",
    "dataset_in_use",
    "delete_job",
    "finish_job",
    "get_job",
    "get_job_by_idempotency_key",
    "get_logs",
    "get_metrics",
    "heartbeat",
    "list_jobs",
    "model_in_use",
    "request_cancel",
    "requeue_stale",
    "update_progress",
]

DEFAULT_MAX_ATTEMPTS = 3


def create_job(
    session: Session,
    *,
    owner: str,
    kind: JobKind,
    name: str,
    spec: Mapping[str, Any],
    dataset_id: str,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    base_model_id: str | None = None,
    model_id: str | None = None,
    idempotency_key: str | None = None,
    job_id: str | None = None,
    created_at: datetime | None = None,
) -> tuple[Job, bool]:
    """A new queued job and ``True``; or, when this owner already submitted a job with
    ``idempotency_key``, that job and ``False``.

    The insert runs in a SAVEPOINT and the key's unique constraint decides: of two concurrent
    submissions with one key, one inserts and the other gets the winner's job back.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    now = created_at or utcnow()
    job = Job(
        id=job_id or new_id("job"),
        owner=owner,
        kind=JobKind(kind).value,
        name=name,
        state=JobState.queued.value,
        spec=dict(spec),
        dataset_id=dataset_id,
        base_model_id=base_model_id,
        model_id=model_id,
        created_at=now,
        updated_at=now,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
    )
    if idempotency_key is None:
        session.add(job)
        session.flush()
        return job, True
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError:
        existing = get_job_by_idempotency_key(session, owner, idempotency_key)
        if existing is None:  # the violation was not the key's (e.g. a duplicate job_id)
            raise
        return existing, False
    return job, True


def get_job_by_idempotency_key(session: Session, owner: str, key: str) -> Job | None:
    return session.scalars(
        select(Job).where(Job.owner == owner, Job.idempotency_key == key)
    ).one_or_none()


def get_job(session: Session, job_id: str, owner: str | None) -> Job | None:
    """The job, or None when missing or another owner's (``owner=None``: admin, workers)."""
    job = session.get(Job, job_id)
    if job is None or (owner is not None and job.owner != owner):
        return None
    return job


def list_jobs(
    session: Session,
    owner: str | None,
    *,
    state: JobState | None = None,
    kind: JobKind | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> tuple[list[Job], str | None]:
    statement = select(Job)
    if owner is not None:
        statement = statement.where(Job.owner == owner)
    if state is not None:
        statement = statement.where(Job.state == JobState(state).value)
    if kind is not None:
        statement = statement.where(Job.kind == JobKind(kind).value)
    return paginate(session, statement, Job.created_at, Job.id, limit=limit, cursor=cursor)


def delete_job(session: Session, job_id: str) -> bool:
    """Remove a job and its metrics and logs (used when the broker refuses a new job, so no
    queued row is left that no message will ever run). Whether a row was deleted."""
    result = session.execute(
        delete(Job).where(Job.id == job_id),
        execution_options={"synchronize_session": "fetch"},
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def count_by_state(session: Session) -> dict[str, int]:
    """Jobs per state, every state present (for /metrics)."""
    counts = {state.value: 0 for state in JobState}
    for state, count in session.execute(select(Job.state, func.count()).group_by(Job.state)):
        counts[state] = count
    return counts


def _active() -> Any:
    return Job.state.in_([state.value for state in ACTIVE_STATES])


def dataset_in_use(session: Session, dataset_id: str) -> bool:
    """Whether a queued, running or cancelling job uses the dataset (DELETE answers 409)."""
    return bool(session.scalar(select(exists().where(Job.dataset_id == dataset_id, _active()))))


def model_in_use(session: Session, model_id: str) -> bool:
    """Whether an active job applies the model (predict) or fine-tunes from it (base model)."""
    uses = or_(Job.model_id == model_id, Job.base_model_id == model_id)
    return bool(session.scalar(select(exists().where(uses, _active()))))
