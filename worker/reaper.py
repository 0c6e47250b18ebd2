"""The reaper: recover jobs whose worker died, and jobs whose broker message was lost.

Every worker runs it (a thread, see :mod:`worker.housekeeping`); it is idempotent, so several
at once are harmless.

1. A running job whose heartbeat is older than ``heartbeat_timeout_seconds`` goes back to
   the queue (or fails past its attempts: :func:`app.store.requeue_stale`), and its message is
   sent again: the next worker resumes it from its last checkpoint.
2. A queued job needs a message in the broker. A broker that restarted without persistence, or
   the embedded broker's delivered-but-unacknowledged message of a killed worker, leaves jobs
   queued with nothing to run them. When a queue holds fewer messages than it has jobs that
   have been waiting longer than the timeout, their messages are sent again; a job whose
   message was not lost gets a duplicate, which finds it claimed and does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from app.contracts import QUEUE_GPU, JobKind, JobState
from app.dispatch import BrokerUnavailable
from app.store import requeue_stale, utcnow
from app.store.tables import Job
from worker.runtime import WorkerRuntime

log = logging.getLogger("aam.worker")


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)  # queued jobs whose message was lost

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "requeued": self.requeued,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "resent": self.resent,
        }


def _send(runtime: WorkerRuntime, job_id: str, kind: JobKind) -> bool:
    try:
        runtime.dispatcher.send_job(job_id, kind)
    except BrokerUnavailable as exc:  # the job stays queued; the next round sends it
        log.warning("reaper: could not send job %s again: %s", job_id, exc)
        return False
    return True


def reap(runtime: WorkerRuntime, *, now: datetime | None = None) -> ReapReport:
    now = now or utcnow()
    timeout = timedelta(seconds=runtime.settings.heartbeat_timeout_seconds)
    report = ReapReport()
    with runtime.sessions() as session:
        actions = requeue_stale(session, older_than=timeout, now=now)
        rows = session.execute(select(Job.id, Job.kind).where(Job.id.in_([a[0] for a in actions])))
        kinds = {row.id: row.kind for row in rows}
    for job_id, action in actions:
        if action == "requeued":
            report.requeued.append(job_id)
            log.warning("reaper: job %s lost its worker; queued again", job_id)
            _send(runtime, job_id, JobKind(kinds[job_id]))
        elif action == "failed":
            report.failed.append(job_id)
            log.warning("reaper: job %s lost its worker too often; failed", job_id)
        else:
            report.cancelled.append(job_id)
    report.resent = resend_lost(runtime, before=now - timeout)
    return report


def resend_lost(runtime: WorkerRuntime, *, before: datetime) -> list[str]:
    """Send again the messages of jobs queued since before ``before`` when their queue holds
    fewer messages than such jobs."""
    with runtime.sessions() as session:
        waiting = session.execute(
            select(Job.id, Job.kind)
            .where(Job.state == JobState.queued.value, Job.updated_at < before)
            .order_by(Job.created_at, Job.id)
        ).all()
    jobs = [(job_id, JobKind(kind)) for job_id, kind in waiting]
    depth = runtime.queue_depth(QUEUE_GPU)
    if not jobs or depth is None or depth >= len(jobs):
        return []
    log.warning(
        "reaper: queue %s holds %d messages for %d waiting jobs; sending them again",
        QUEUE_GPU,
        depth,
        len(jobs),
    )
    return [job_id for job_id, kind in jobs if _send(runtime, job_id, kind)]
