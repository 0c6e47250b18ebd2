"""A job's per-epoch metrics and its log lines.

The writers are called by the worker running the job and commit themselves (the API reads
them while the job runs); the readers only read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.store.db import committed, refresh_cached
from app.store.tables import Job, JobLog, JobMetric, utcnow

MAX_LOG_MESSAGE = 10_000  # characters kept of one log line (a huge traceback is cut)
MAX_LOG_PAGE = 10_000
MAX_LOG_LINE = 2**31 - 1  # job_logs.line is a 32-bit integer column


def _metric_row(job_id: str, record: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    epoch, split = record.get("epoch"), record.get("split")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError(f"a metric record needs an integer epoch >= 0, got {epoch!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"a metric record needs a split name, got {split!r}")
    values = {k: v for k, v in record.items() if k not in ("epoch", "split")}
    return {"job_id": job_id, "epoch": epoch, "split": split, "values": values, "created_at": now}


def add_metrics(
    session: Session,
    job_id: str,
    records: Iterable[Mapping[str, Any]],
    *,
    now: datetime | None = None,
) -> int:
    """Store per-epoch metrics, records as the API returns them: ``{"epoch", "split", **values}``.

    An (epoch, split) already stored is replaced: a resumed run sends its epochs again.
    Returns the number of records written; commits.
    """
    now = now or utcnow()
    rows = [_metric_row(job_id, record, now) for record in records]
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(JobMetric)
    statement = upsert.on_conflict_do_update(
        index_elements=[JobMetric.job_id, JobMetric.epoch, JobMetric.split],
        set_={"values": upsert.excluded["values"], "created_at": upsert.excluded.created_at},
    )
    with committed(session):
        session.execute(statement, rows)
    return len(rows)


def get_metrics(session: Session, job_id: str) -> list[JobMetric]:
    """The metric history, by epoch, then split."""
    statement = (
        select(JobMetric)
        .where(JobMetric.job_id == job_id)
        .order_by(JobMetric.epoch, JobMetric.split)
    )
    return list(session.scalars(statement))


def append_logs(
    session: Session, job_id: str, messages: Sequence[str], *, now: datetime | None = None
) -> int:
    """Append log lines, numbered on from the job's last line; the new last line number.

    The job row's counter is bumped first (its row lock orders concurrent writers), so line
    numbers stay contiguous. Raises LookupError for an unknown job. Commits.
    """
    now = now or utcnow()
    with committed(session):
        last = session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(log_lines=Job.log_lines + len(messages))
            .returning(Job.log_lines),
            execution_options={"synchronize_session": False},
        ).scalar_one_or_none()
        if last is None:
            raise LookupError(f"job {job_id} not found")
        refresh_cached(session, Job, job_id)
        first = last - len(messages) + 1
        if messages:
            session.execute(
                insert(JobLog),
                [
                    {
                        "job_id": job_id,
                        "line": first + offset,
                        "created_at": now,
                        "message": message[:MAX_LOG_MESSAGE],
                    }
                    for offset, message in enumerate(messages)
                ],
            )
    return last


def get_logs(session: Session, job_id: str, since: int = 0, limit: int = 1000) -> list[JobLog]:
    """Log lines after line ``since`` (0: from the start), at most ``limit``, in order."""
    if not 1 <= limit <= MAX_LOG_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_LOG_PAGE}, got {limit}")
    statement = (
        select(JobLog)
        .where(JobLog.job_id == job_id, JobLog.line > since)
        .order_by(JobLog.line)
        .limit(limit)
    )
    return list(session.scalars(statement))
