"""One job, start to end: claim it, build its order, run its child process while writing
progress and heartbeats, and finish it (succeeded, failed or cancelled).

The job row is the only record. Claiming is a conditional update, so a duplicate or
redelivered message does nothing. Every failure ends in ``failed`` with an error a user can
read, and never escapes to Celery: the worker stays up and no failure is retried (a lost
worker is the reaper's case, not this one's).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.contracts import JobKind, JobSpec, JobState
from app.dispatch import BrokerUnavailable
from app.store import append_logs, claim_job, finish_job, get_job, heartbeat, release_job
from app.store.tables import Job
from worker import finish
from worker.devices import Placement, place
from worker.errors import JobFailure, child_died, one_line
from worker.inputs import build_order
from worker.order import ORDER_FILE, JobOrder
from worker.reporting import JobReporter
from worker.runtime import WorkerRuntime
from worker.supervisor import ChildOutcome, Supervisor

log = logging.getLogger("aam.worker")


class Watch:
    """Called between the child's messages: heartbeats, and whether to stop the child."""

    def __init__(
        self, runtime: WorkerRuntime, session: Session, job_id: str, reporter: JobReporter
    ) -> None:
        self.runtime = runtime
        self.session = session
        self.job_id = job_id
        self.reporter = reporter
        self.last_beat = time.monotonic()

    def tick(self) -> str | None:
        if self.runtime.stopping.is_set():
            return "shutdown"
        if not self.reporter.flush():
            return "lost"
        if time.monotonic() - self.last_beat < self.runtime.settings.heartbeat_seconds:
            return None
        self.last_beat = time.monotonic()
        try:
            signal = heartbeat(self.session, self.job_id, worker=self.runtime.name)
        except SQLAlchemyError as exc:  # keep training through a database blip
            log.warning("job %s: heartbeat failed (%s)", self.job_id, exc)
            return None
        if not signal.held:
            return "lost"
        return "cancel" if signal.cancel_requested else None


def _end_reads(session: Session) -> None:
    """End the read transaction before a write: the store's self-committing writes start with
    SQLite's BEGIN IMMEDIATE only when no transaction is open, and a read transaction that
    turns to writing fails at once with "database is locked" while another process writes
    (objects stay loaded: the sessions do not expire on commit)."""
    if session.in_transaction():
        session.commit()


def _spec(job: Job) -> tuple[JobSpec | None, JobFailure | None]:
    try:
        return JobSpec.model_validate(job.spec), None
    except ValidationError as exc:
        return None, JobFailure("InvalidSpec", f"the job's spec is not valid: {one_line(str(exc))}")


def run_job(runtime: WorkerRuntime, job_id: str) -> str:
    """Run the job if it is still queued; what happened (for the worker's log)."""
    with runtime.sessions() as session:
        job = get_job(session, job_id, None)
        if job is None:
            log.warning("job %s does not exist (deleted?): message dropped", job_id)
            return "missing"
        if job.state != JobState.queued.value:
            log.info("job %s is %s: nothing to do (a duplicate or late message)", job_id, job.state)
            return "skipped"
        spec, problem = _spec(job)
        placement: Placement | None = None
        if spec is not None:
            try:
                placement = place(runtime.device, spec.config.gpus)
            except JobFailure as failure:
                problem = failure
        label = placement.label if placement is not None else runtime.device.name
        _end_reads(session)
        if not claim_job(session, job_id, worker=runtime.name, device=label):
            log.info("job %s was claimed by another worker or cancelled", job_id)
            return "skipped"
        runtime.current_job = job_id
        try:
            if problem is not None:
                raise problem
            assert spec is not None and placement is not None
            return _execute(runtime, session, job, spec, placement)
        except JobFailure as failure:
            return _fail(runtime, session, job_id, failure.as_error())
        except Exception as exc:  # a bug or an environment problem: the worker stays up
            log.exception("job %s failed in the worker", job_id)
            return _fail(runtime, session, job_id, {"type": type(exc).__name__, "detail": str(exc)})
        finally:
            runtime.current_job = None


def _fail(runtime: WorkerRuntime, session: Session, job_id: str, error: dict[str, Any]) -> str:
    session.rollback()  # whatever the failure left half-done
    try:
        append_logs(session, job_id, [f"failed: {error['type']}: {error['detail']}"])
    except (SQLAlchemyError, LookupError):
        session.rollback()
    finished = finish_job(session, job_id, state=JobState.failed, worker=runtime.name, error=error)
    log.warning("job %s failed: %s: %s", job_id, error["type"], error["detail"])
    return "failed" if finished else "lost"


def _execute(
    runtime: WorkerRuntime, session: Session, job: Job, spec: JobSpec, placement: Placement
) -> str:
    run_dir = runtime.run_dir(job.id)
    run_dir.mkdir(parents=True, exist_ok=True)
    order = build_order(session, runtime.storage, job, spec, placement, run_dir)
    _end_reads(session)
    order_path = run_dir / ORDER_FILE
    order.write(order_path)
    reporter = JobReporter(session, job.id, runtime.name)
    reporter.log(
        f"attempt {job.attempts} of {job.max_attempts} on {runtime.name} ({placement.label})"
        + ("; resuming from the last checkpoint" if order.resume else "")
    )
    reporter.set_progress(fraction=0.0)
    reporter.flush(force=True)
    supervisor = Supervisor(
        order_path,
        nproc=order.nproc,
        output=run_dir / "runner.log",
        grace=runtime.settings.cancel_grace_seconds,
    )
    watch = Watch(runtime, session, job.id, reporter)
    outcome = supervisor.run(reporter.handle, watch.tick)
    reporter.flush(force=True)
    return _settle(runtime, session, job, spec, order, outcome, reporter)


def _release(runtime: WorkerRuntime, session: Session, job: Job, reporter: JobReporter) -> str:
    """The worker is shutting down: hand the job back to the queue (the attempt is not
    counted) and send its message again; the next worker resumes from the checkpoint just
    saved. If the broker refuses, the reaper sends it once the job has waited past the
    heartbeat timeout."""
    reporter.log("the worker is shutting down: the job goes back to the queue and resumes")
    reporter.flush(force=True)
    if not release_job(session, job.id, worker=runtime.name):
        return "lost"
    try:
        runtime.dispatcher.send_job(job.id, JobKind(job.kind))
    except BrokerUnavailable as exc:
        log.warning("job %s released; its message will be sent by the reaper: %s", job.id, exc)
    return "released"


def _settle(
    runtime: WorkerRuntime,
    session: Session,
    job: Job,
    spec: JobSpec,
    order: JobOrder,
    outcome: ChildOutcome,
    reporter: JobReporter,
) -> str:
    final = outcome.final
    signal = heartbeat(session, job.id, worker=runtime.name)  # the job's state now
    if not signal.held:
        log.warning("job %s is no longer this worker's (%s): left as it is", job.id, signal.state)
        return "lost"
    summary: dict[str, Any] | None = None
    if final is not None and final["type"] == "done":
        summary = final["result"]
    common = {"worker": runtime.name}
    if signal.cancel_requested:
        done = finish.finish_cancelled(
            session, runtime.storage, job, spec, order, summary, reporter, **common
        )
        return "cancelled" if done else "lost"
    if final is None:
        if outcome.stop_reason == "shutdown":
            return _release(runtime, session, job, reporter)
        raise child_died(outcome.returncode, outcome.output_tail)
    if final["type"] == "error":
        raise _child_error(final, reporter)
    assert summary is not None
    if outcome.stop_reason == "shutdown" and summary.get("stopped") == "requested":
        return _release(runtime, session, job, reporter)
    finisher = {
        JobKind.predict: finish.finish_prediction,
        JobKind.cross_validate: finish.finish_cross_validation,
    }.get(spec.kind, finish.finish_training)
    done = finisher(session, runtime.storage, job, spec, order, summary, reporter, **common)
    return "succeeded" if done else "lost"


def _child_error(final: dict[str, Any], reporter: JobReporter) -> JobFailure:
    """The child decided whether the error is the user's (``user``: a UserError, by
    isinstance): their error as it is, with its field; a full disk says so; anything else is a
    bug, logged with its traceback."""
    kind = str(final.get("error_type") or "Error")
    detail = str(final.get("detail") or kind)
    if final.get("user"):
        return JobFailure(kind, detail, field=final.get("field"))
    if final.get("disk_full"):
        return JobFailure(
            "StorageFull",
            f"the worker's disk is full ({detail}); the checkpoints written before are kept: "
            "free space on the worker, then submit the job again",
        )
    reporter.log(f"internal error: {kind}: {detail}\n{final.get('traceback', '')}")
    reporter.flush(force=True)
    return JobFailure(kind, f"{detail} (an internal error; the job's log holds the traceback)")
