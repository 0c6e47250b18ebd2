from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.store import live_workers, utcnow, worker_gone, worker_seen


def test_workers_upsert_and_expire(session_factory: sessionmaker[Session]) -> None:
    start = utcnow()
    with session_factory() as session:
        worker_seen(session, "w1@host", device="cpu", queues=["gpu"], now=start)
        worker_seen(session, "w2@host", device="cuda:0", queues=["gpu", "cpu"], now=start)
        # w1 heartbeats 100 s later while running a job; w2 stays silent
        worker_seen(session, "w1@host", device="cpu", queues=["gpu"], job_id="job_1",
                    now=start + timedelta(seconds=100))  # fmt: skip
    with session_factory() as session:
        alive = live_workers(session, timedelta(seconds=60), now=start + timedelta(seconds=120))
        assert [(w.name, w.job_id, w.queues) for w in alive] == [("w1@host", "job_1", "gpu")]
        assert alive[0].started_at == start  # an update keeps the first start time
        both = live_workers(session, timedelta(seconds=300), now=start + timedelta(seconds=120))
        assert [w.name for w in both] == ["w1@host", "w2@host"]
        worker_gone(session, "w2@host")
    with session_factory() as session:
        names = [w.name for w in live_workers(session, timedelta(days=1))]
        assert names == ["w1@host"]
