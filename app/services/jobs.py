"""Jobs: a spec checked, stored and sent to the queue (with its idempotency key), and a job
cancelled. See app/api/routes/jobs.py for the rules a submission follows."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from app.api.deps import Caller, Services
from app.api.errors import ApiError, not_found
from app.api.job_checks import CheckedJob, check_job, check_still_there
from app.api.schemas import JobOut
from app.contracts import TERMINAL_STATES, JobKind, JobSpec, JobState
from app.dispatch import BrokerUnavailable
from app.store import (
    Job,
    begin_write,
    create_job,
    delete_job,
    get_job_by_idempotency_key,
    request_cancel,
)
from app.store.tables import NAME_LENGTH

log = logging.getLogger("aam.api")


def _default_name(checked: CheckedJob) -> str:
    spec, dataset = checked.spec, checked.dataset
    if spec.kind == JobKind.predict and checked.model is not None:
        return f"predict with {checked.model.name} on {dataset.name}"
    if spec.kind in (JobKind.train, JobKind.cross_validate) and spec.target is not None:
        verb = "train" if spec.kind == JobKind.train else "cross-validate"
        return f"{verb} {spec.target.column} ({spec.target.task}) on {dataset.name}"
    return f"{spec.kind.value} on {dataset.name}"


def _replay(job: Job, body: dict[str, Any], key: str) -> JobOut:
    if job.spec != body:
        raise ApiError(
            422,
            f"Idempotency-Key {key!r} was already used for job {job.id!r} with a different "
            "request body; use a new key for a new job",
            kind="idempotency-key-reused",
        )
    return JobOut.from_row(job)


def submit(
    spec: JobSpec,
    session: Session,
    caller: Caller,
    services: Services,
    idempotency_key: str | None = None,
) -> JobOut:
    """Queue the job (the first one of its idempotency key, when the key was used before)."""
    body = spec.model_dump(mode="json", exclude_none=True)
    if idempotency_key is not None:
        earlier = get_job_by_idempotency_key(session, caller.owner, idempotency_key)
        if earlier is not None:  # a retry needs no re-check: the first one passed
            return _replay(earlier, body, idempotency_key)
    checked = check_job(session, services.storage, caller.scope, spec)
    # The checks' reads (the dataset and model rows) ran in a read transaction; the
    # insert takes SQLite's write lock only now, so concurrent submissions do not queue behind
    # each other's checks.
    session.commit()
    begin_write(session)
    check_still_there(session, spec)
    job, created = create_job(
        session,
        owner=caller.owner,
        kind=spec.kind,
        name=(spec.name or _default_name(checked))[:NAME_LENGTH],
        spec=body,
        dataset_id=checked.dataset.id,
        base_model_id=spec.base_model_id,
        model_id=spec.model_id,
        idempotency_key=idempotency_key,
        max_attempts=services.settings.max_attempts,
    )
    session.commit()
    if not created:  # a concurrent submission with this key inserted first
        assert idempotency_key is not None
        log.info("job %s: a concurrent submission with the same key inserted first", job.id)
        return _replay(job, body, idempotency_key)
    try:
        services.dispatcher.send_job(job.id, spec.kind)
    except BrokerUnavailable as exc:
        begin_write(session)
        delete_job(session, job.id)
        session.commit()
        raise ApiError(
            503,
            f"{exc}; the job was not created: submit it again later",
            kind="queue-unavailable",
            headers={"Retry-After": "30"},
        ) from None
    log.info("job %s (%s) queued for %s", job.id, job.kind, caller.owner)
    return JobOut.from_row(job)


def _finished(job_id: str, state: JobState) -> ApiError:
    return ApiError(
        409,
        f"job {job_id!r} has finished ({state.value}); only a queued or running job can be "
        "cancelled",
        kind="job-finished",
    )


def cancel(job: Job, session: Session) -> JobOut:
    """A queued job ends cancelled at once; a running one goes to ``cancelling`` and its worker
    stops at the next step, keeping its last checkpoint."""
    before = JobState(job.state)
    if before in TERMINAL_STATES:
        raise _finished(job.id, before)
    session.commit()  # end the read: request_cancel opens its own write transaction
    after = request_cancel(session, job.id)
    if after is None:  # deleted meanwhile
        raise not_found("job", job.id)
    if after in (JobState.succeeded, JobState.failed):  # finished meanwhile
        raise _finished(job.id, after)
    session.refresh(job)
    return JobOut.from_row(job)
