"""Worker presence: each worker upserts its row when it starts and on every heartbeat, and
the API counts the rows seen recently. Each function is one short transaction that commits
itself (workers on several hosts write here concurrently)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.store.db import committed
from app.store.tables import Worker, utcnow


def worker_seen(
    session: Session,
    name: str,
    *,
    device: str,
    queues: list[str],
    job_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """Record that worker ``name`` is alive (insert or update its row)."""
    now = now or utcnow()
    with committed(session):
        row = session.get(Worker, name)
        if row is None:
            session.add(
                Worker(
                    name=name,
                    device=device,
                    queues=",".join(queues),
                    started_at=now,
                    seen_at=now,
                    job_id=job_id,
                )
            )
        else:
            row.device, row.queues, row.seen_at, row.job_id = device, ",".join(queues), now, job_id


def worker_gone(session: Session, name: str) -> None:
    """A worker that shuts down cleanly removes its row."""
    with committed(session):
        session.execute(delete(Worker).where(Worker.name == name))


def live_workers(session: Session, within: timedelta, now: datetime | None = None) -> list[Worker]:
    """Workers seen in the last ``within``, by name."""
    cutoff = (now or utcnow()) - within
    return list(
        session.scalars(select(Worker).where(Worker.seen_at >= cutoff).order_by(Worker.name))
    )
