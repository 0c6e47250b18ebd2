"""Job state transitions, each one conditional UPDATE in its own committed transaction.

Workers in other processes, the reaper and the API change the same rows, so every transition
says in its WHERE clause which state it starts from (and, for a worker, that the worker still
holds the job). Whoever loses a race changes nothing and learns it from the return value, as
in Sentry's tasks: a redelivered message, a duplicate worker or a late heartbeat is harmless.

Transaction rule: these functions commit the session (including anything the caller left
pending) when they succeed, and roll it back when they raise; :func:`finish_job` also rolls
back when its update matched no row, so a model registered in the same transaction is not kept
for a job this worker no longer holds. Call them with no transaction open, or one that has
already written: on SQLite they then start with BEGIN IMMEDIATE (see app.store.db), whereas a
transaction that has only read may fail with "database is locked" when it turns to writing.
An object of the job that the session holds is refreshed after the update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Update, func, literal, or_, select, update
from sqlalchemy.orm import Session

from app.contracts import TERMINAL_STATES, JobState
from app.store.db import begin_write, committed, refresh_cached
from app.store.tables import Job, UTCDateTime, utcnow

HELD_STATES = (JobState.running.value, JobState.cancelling.value)


@dataclass(frozen=True)
class JobSignal:
    """What a heartbeat tells the worker: keep going, wind down (cancel), or stop at once."""

    state: JobState | None  # None: the job no longer exists
    cancel_requested: bool
    held: bool  # this worker still holds the job (False: reaped, reassigned or finished)

    @property
    def should_stop(self) -> bool:
        return not self.held or self.cancel_requested


def _apply(session: Session, job_id: str, statement: Update) -> bool:
    """Run a conditional update of one job; whether it matched the row."""
    result = session.execute(statement, execution_options={"synchronize_session": False})
    matched = cast("CursorResult[Any]", result).rowcount == 1
    if matched:
        refresh_cached(session, Job, job_id)
    return matched


def claim_job(
    session: Session, job_id: str, *, worker: str, device: str, now: datetime | None = None
) -> bool:
    """queued -> running for this worker; whether this caller won the job.

    A redelivered or duplicate message finds the job no longer queued and does nothing.
    """
    now = now or utcnow()
    with committed(session):
        won = _apply(
            session,
            job_id,
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.queued.value)
            .values(
                state=JobState.running.value,
                attempts=Job.attempts + 1,
                started_at=func.coalesce(Job.started_at, literal(now, UTCDateTime())),
                heartbeat_at=now,
                updated_at=now,
                worker=worker,
                device=device,
            ),
        )
    return won


def heartbeat(
    session: Session, job_id: str, *, worker: str, now: datetime | None = None
) -> JobSignal:
    """Record that ``worker`` is alive on the job, if it still holds it; and say whether a
    cancel was requested, in the same round trip."""
    now = now or utcnow()
    with committed(session):
        row = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.worker == worker, Job.state.in_(HELD_STATES))
            .values(heartbeat_at=now)
            .returning(Job.state, Job.cancel_requested),
            execution_options={"synchronize_session": False},
        ).one_or_none()
        held = row is not None
        if held:
            refresh_cached(session, Job, job_id)
        if row is None:
            row = session.execute(
                select(Job.state, Job.cancel_requested).where(Job.id == job_id)
            ).one_or_none()
    if row is None:
        return JobSignal(state=None, cancel_requested=False, held=False)
    return JobSignal(state=JobState(row.state), cancel_requested=row.cancel_requested, held=held)


def update_progress(
    session: Session,
    job_id: str,
    *,
    progress: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    best: Mapping[str, Any] | None = None,
    worker: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Replace progress (and the latest metrics and best epoch, when given) of a running or
    cancelling job (held by ``worker``, when given); whether the row was updated."""
    now = now or utcnow()
    values: dict[str, Any] = {"progress": dict(progress), "updated_at": now}
    if metrics is not None:
        values["metrics"] = dict(metrics)
    if best is not None:
        values["best"] = dict(best)
    condition = [Job.id == job_id, Job.state.in_(HELD_STATES)]
    if worker is not None:
        condition.append(Job.worker == worker)
    with committed(session):
        updated = _apply(session, job_id, update(Job).where(*condition).values(**values))
    return updated


def request_cancel(
    session: Session, job_id: str, *, now: datetime | None = None
) -> JobState | None:
    """Cancel a job; its state afterwards (None: no such job).

    queued -> cancelled at once (its message, when a worker gets it, no longer claims);
    running -> cancelling (the worker sees it at its next heartbeat, stops at the next step and
    finishes the job as cancelled); cancelling and terminal states are left as they are.
    """
    now = now or utcnow()
    with committed(session):
        if _apply(
            session,
            job_id,
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.queued.value)
            .values(
                state=JobState.cancelled.value,
                cancel_requested=True,
                finished_at=now,
                updated_at=now,
            ),
        ):
            return JobState.cancelled
        if _apply(
            session,
            job_id,
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.running.value)
            .values(state=JobState.cancelling.value, cancel_requested=True, updated_at=now),
        ):
            return JobState.cancelling
        state = session.scalar(select(Job.state).where(Job.id == job_id))
    return None if state is None else JobState(state)


def finish_job(
    session: Session,
    job_id: str,
    *,
    state: JobState,
    worker: str | None = None,
    error: Mapping[str, Any] | None = None,
    report: Mapping[str, Any] | None = None,
    model_id: str | None = None,
    outputs: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> bool:
    """running/cancelling -> a terminal state (only by ``worker``, when given); whether it did.

    Fields passed as None are left as they are. When the job was not in a state to finish (or
    is held by another worker), the session's whole transaction is rolled back.
    """
    state = JobState(state)
    if state not in TERMINAL_STATES:
        raise ValueError(f"finish_job needs a terminal state, got {state.value!r}")
    now = now or utcnow()
    values: dict[str, Any] = {"state": state.value, "finished_at": now, "updated_at": now}
    if error is not None:
        values["error"] = dict(error)
    if report is not None:
        values["report"] = dict(report)
    if model_id is not None:
        values["model_id"] = model_id
    if outputs is not None:
        values["outputs"] = dict(outputs)
    condition = [Job.id == job_id, Job.state.in_(HELD_STATES)]
    if worker is not None:
        condition.append(Job.worker == worker)
    begin_write(session)
    try:
        finished = _apply(session, job_id, update(Job).where(*condition).values(**values))
    except BaseException:
        session.rollback()
        raise
    if finished:
        session.commit()
    else:
        session.rollback()
    return finished


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def worker_lost_error(
    attempts: int, max_attempts: int, worker: str | None, last_seen: datetime | None
) -> dict[str, str]:
    seen = last_seen.isoformat() if last_seen is not None else "never"
    return {
        "type": "WorkerLost",
        "detail": (
            f"the worker running this job stopped responding {_plural(attempts, 'time')}; "
            f"it is not retried again (max_attempts={max_attempts}). Last worker: "
            f"{worker or 'unknown'}, last heartbeat: {seen}. A worker that dies repeatedly "
            "on one job is often out of memory: try a smaller batch_size or token_limit."
        ),
    }


def release_job(session: Session, job_id: str, *, worker: str, now: datetime | None = None) -> bool:
    """running -> queued for a worker that shuts down cleanly after saving a checkpoint; the
    attempt it used is given back (a restart is not a failure). Whether this worker held the
    job. The caller sends the job's message again; the next claim resumes from the checkpoint.
    A job with a cancel request is left alone (the caller finishes it as cancelled)."""
    now = now or utcnow()
    with committed(session):
        released = _apply(
            session,
            job_id,
            update(Job)
            .where(
                Job.id == job_id,
                Job.worker == worker,
                Job.state == JobState.running.value,
                Job.cancel_requested.is_(False),
            )
            .values(
                state=JobState.queued.value,
                attempts=Job.attempts - 1,
                worker=None,
                heartbeat_at=None,
                updated_at=now,
            ),
        )
    return released


def requeue_stale(
    session: Session, *, older_than: timedelta, now: datetime | None = None
) -> list[tuple[str, str]]:
    """Recover jobs whose worker stopped sending heartbeats for longer than ``older_than``.

    running with attempts < max_attempts -> queued (worker cleared; the next claim counts the
    attempt) as ``(id, "requeued")``: the caller sends its message again. running at the limit
    -> failed with a WorkerLost error, ``(id, "failed")``. cancelling -> cancelled,
    ``(id, "cancelled")``. Each update repeats the staleness test, so a heartbeat that lands
    in between keeps its job; several reapers at once are harmless.
    """
    now = now or utcnow()
    cutoff = now - older_than
    stale = or_(Job.heartbeat_at < cutoff, Job.heartbeat_at.is_(None))
    actions: list[tuple[str, str]] = []
    with committed(session):
        candidates = session.execute(
            select(Job.id, Job.state, Job.attempts, Job.max_attempts, Job.worker, Job.heartbeat_at)
            .where(Job.state.in_(HELD_STATES), stale)
            .order_by(Job.created_at, Job.id)
        ).all()
        for job in candidates:
            same = update(Job).where(
                Job.id == job.id, Job.state == job.state, Job.attempts == job.attempts, stale
            )
            if job.state == JobState.cancelling.value:
                values: dict[str, Any] = {"state": JobState.cancelled.value, "finished_at": now}
                action = "cancelled"
            elif job.attempts < job.max_attempts:
                values = {"state": JobState.queued.value, "worker": None, "heartbeat_at": None}
                action = "requeued"
            else:
                error = worker_lost_error(
                    job.attempts, job.max_attempts, job.worker, job.heartbeat_at
                )
                values = {"state": JobState.failed.value, "finished_at": now, "error": error}
                action = "failed"
            if _apply(session, job.id, same.values(updated_at=now, **values)):
                actions.append((job.id, action))
    return actions
