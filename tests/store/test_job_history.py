"""Per-epoch metrics (upserted) and log lines (contiguous numbers)."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.store.job_history import MAX_LOG_MESSAGE, add_metrics, append_logs, get_logs, get_metrics
from app.store.jobs import get_job
from tests.store.factories import at, make_job


def test_metrics_are_ordered_and_a_resent_epoch_replaces_the_first(session: Session) -> None:
    job = make_job(session)
    first_run = [
        {"epoch": 1, "split": "validation", "loss": 0.9, "mae": 3.0},
        {"epoch": 1, "split": "train", "loss": 1.0},
        {"epoch": 2, "split": "train", "loss": 0.8},
        {"epoch": 2, "split": "validation", "loss": 0.7, "mae": 2.5},
    ]
    assert add_metrics(session, job.id, first_run, now=at(1)) == 4
    # A resumed run sends epoch 2 again (and goes on with epoch 3).
    resumed = [
        {"epoch": 2, "split": "validation", "loss": 0.65, "mae": 2.25},
        {"epoch": 3, "split": "train", "loss": 0.6},
    ]
    assert add_metrics(session, job.id, resumed, now=at(2)) == 2
    history = [(m.epoch, m.split, m.values, m.created_at) for m in get_metrics(session, job.id)]
    assert history == [
        (1, "train", {"loss": 1.0}, at(1)),
        (1, "validation", {"loss": 0.9, "mae": 3.0}, at(1)),
        (2, "train", {"loss": 0.8}, at(1)),
        (2, "validation", {"loss": 0.65, "mae": 2.25}, at(2)),
        (3, "train", {"loss": 0.6}, at(2)),
    ]
    assert add_metrics(session, job.id, []) == 0
    assert get_metrics(session, "job_other") == []


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"split": "train", "loss": 1.0}, "integer epoch >= 0, got None"),
        ({"epoch": -1, "split": "train"}, "integer epoch >= 0, got -1"),
        ({"epoch": True, "split": "train"}, "integer epoch >= 0, got True"),
        ({"epoch": 1, "split": ""}, "needs a split name, got ''"),
    ],
)
def test_malformed_metric_records(
    session: Session, record: dict[str, object], message: str
) -> None:
    job = make_job(session)
    with pytest.raises(ValueError, match=message):
        add_metrics(session, job.id, [record])


def test_logs_are_numbered_and_read_since_a_line(session: Session) -> None:
    job = make_job(session)
    assert append_logs(session, job.id, ["loading dataset", "rarefied to 2000"], now=at(1)) == 2
    assert append_logs(session, job.id, [], now=at(2)) == 2
    assert append_logs(session, job.id, ["epoch 1", "epoch 2", "epoch 3"], now=at(3)) == 5
    assert job.log_lines == 5
    assert [(log.line, log.message) for log in get_logs(session, job.id)] == [
        (1, "loading dataset"),
        (2, "rarefied to 2000"),
        (3, "epoch 1"),
        (4, "epoch 2"),
        (5, "epoch 3"),
    ]
    assert [log.line for log in get_logs(session, job.id, since=3)] == [4, 5]
    assert [log.line for log in get_logs(session, job.id, since=1, limit=2)] == [2, 3]
    assert get_logs(session, job.id, since=5) == []
    assert get_logs(session, job.id)[2].created_at == at(3)
    with pytest.raises(ValueError, match="limit must be between 1 and 10000, got 0"):
        get_logs(session, job.id, limit=0)


def test_a_huge_line_is_cut_and_an_unknown_job_refused(session: Session) -> None:
    job = make_job(session)
    append_logs(session, job.id, ["x" * (MAX_LOG_MESSAGE + 5)])
    assert len(get_logs(session, job.id)[0].message) == MAX_LOG_MESSAGE
    with pytest.raises(LookupError, match="job job_missing not found"):
        append_logs(session, "job_missing", ["lost"])


def test_concurrent_writers_keep_line_numbers_contiguous(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        job_id = make_job(session).id
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def write(writer: int) -> None:
        try:
            with session_factory() as session:
                barrier.wait()
                for batch in range(5):
                    append_logs(session, job_id, [f"w{writer} b{batch} m{i}" for i in range(3)])
        except BaseException as exc:  # asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with session_factory() as session:
        logs = get_logs(session, job_id)
        job = get_job(session, job_id, None)
        assert job is not None and job.log_lines == 60
    assert [log.line for log in logs] == list(range(1, 61))
    assert len({log.message for log in logs}) == 60
    # A batch is written as one block of consecutive lines.
    for start in range(0, 60, 3):
        prefixes = {log.message.rsplit(" ", 1)[0] for log in logs[start : start + 3]}
        assert len(prefixes) == 1
