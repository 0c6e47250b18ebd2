"""Job submission, idempotency, listing and counts."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.contracts import JobKind, JobState
from app.store.job_state import claim_job, finish_job, request_cancel
from app.store.jobs import (
    count_by_state,
    create_job,
    delete_job,
    get_job,
    list_jobs,
)
from app.store.tables import Job
from tests.store.factories import at, make_dataset, make_job


def _submit(session: Session, dataset_id: str, owner: str, key: str | None) -> tuple[Job, bool]:
    job, created = create_job(
        session,
        owner=owner,
        kind=JobKind.pretrain,
        name="pretrain",
        spec={"kind": "pretrain", "dataset_id": dataset_id},
        dataset_id=dataset_id,
        max_attempts=3,
        idempotency_key=key,
    )
    session.commit()
    return job, created


def test_idempotency_key_returns_the_first_job_per_owner(session: Session) -> None:
    dataset = make_dataset(session)
    first, created = _submit(session, dataset.id, "alice", "retry-1")
    assert created is True and first.state == JobState.queued
    again, created_again = _submit(session, dataset.id, "alice", "retry-1")
    assert (again.id, created_again) == (first.id, False)
    other_owner, created_other = _submit(session, dataset.id, "bob", "retry-1")
    assert created_other is True and other_owner.id != first.id
    other_key, _ = _submit(session, dataset.id, "alice", "retry-2")
    no_key_1, _ = _submit(session, dataset.id, "alice", None)
    no_key_2, _ = _submit(session, dataset.id, "alice", None)
    assert len({first.id, other_owner.id, other_key.id, no_key_1.id, no_key_2.id}) == 5
    assert session.scalar(select(func.count()).select_from(Job)) == 5


def test_a_failed_duplicate_keeps_the_callers_transaction(session: Session) -> None:
    dataset = make_dataset(session)
    first, _ = _submit(session, dataset.id, "alice", "k")
    other = make_dataset(session, name="pending")  # committed by the factory
    other.name = "renamed in the open transaction"
    session.flush()
    again, created = create_job(
        session,
        owner="alice",
        kind=JobKind.pretrain,
        name="x",
        spec={},
        dataset_id=dataset.id,
        idempotency_key="k",
    )
    assert (again.id, created) == (first.id, False)
    session.commit()  # the savepoint rolled back only the duplicate insert
    session.expire_all()
    assert other.name == "renamed in the open transaction"


def test_concurrent_submissions_with_one_key_make_one_job(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        dataset_id = make_dataset(session).id
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def submit() -> None:
        try:
            with session_factory() as session:
                barrier.wait()
                job, created = _submit(session, dataset_id, "alice", "same-key")
                results.append((job.id, created))
        except BaseException as exc:  # asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({job_id for job_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 7 + [True]


def test_a_duplicate_job_id_is_not_mistaken_for_a_retry(session: Session) -> None:
    dataset = make_dataset(session)
    make_job(session, dataset, job_id="job_fixed")
    with pytest.raises(IntegrityError):
        create_job(
            session,
            owner="alice",
            kind=JobKind.pretrain,
            name="x",
            spec={},
            dataset_id=dataset.id,
            idempotency_key="fresh",
            job_id="job_fixed",
        )


def test_get_and_list_respect_owners_and_filters(session: Session) -> None:
    dataset = make_dataset(session)
    pretrain = make_job(session, dataset, created_at=at(1))
    train = make_job(session, dataset, kind=JobKind.train, created_at=at(2))
    bobs = make_job(session, owner="bob", created_at=at(3))
    assert claim_job(session, train.id, worker="w", device="cpu")
    assert get_job(session, pretrain.id, "alice") is pretrain
    assert get_job(session, pretrain.id, "bob") is None
    assert get_job(session, bobs.id, None) is bobs

    def ids(**filters: object) -> list[str]:
        owner = filters.pop("owner", "alice")
        return [job.id for job in list_jobs(session, owner, **filters)[0]]  # type: ignore[arg-type]

    assert ids() == [train.id, pretrain.id]
    assert ids(state=JobState.queued) == [pretrain.id]
    assert ids(state=JobState.running) == [train.id]
    assert ids(kind=JobKind.train) == [train.id]
    assert ids(kind=JobKind.predict) == []
    assert ids(owner="bob") == [bobs.id]
    assert ids(owner="carol") == []
    assert ids(owner=None) == [bobs.id, train.id, pretrain.id]
    assert ids(owner=None, state=JobState.queued) == [bobs.id, pretrain.id]


def test_jobs_paginate_newest_first(session: Session) -> None:
    dataset = make_dataset(session)
    ids = [make_job(session, dataset, created_at=at(i)).id for i in range(7)]
    seen: list[str] = []
    cursor = None
    sizes = []
    while True:
        page, cursor = list_jobs(session, "alice", limit=3, cursor=cursor)
        sizes.append(len(page))
        seen += [job.id for job in page]
        if cursor is None:
            break
    assert sizes == [3, 3, 1]
    assert seen == ids[::-1]
    with pytest.raises(ValueError, match="invalid cursor"):
        list_jobs(session, "alice", cursor="Zm9v")


def test_delete_job_leaves_no_queued_row(session: Session) -> None:
    job = make_job(session)
    assert delete_job(session, job.id) is True
    session.commit()
    assert get_job(session, job.id, None) is None
    assert delete_job(session, job.id) is False


def test_count_by_state(session: Session) -> None:
    dataset = make_dataset(session)
    jobs = [make_job(session, dataset) for _ in range(5)]
    assert claim_job(session, jobs[0].id, worker="w", device="cpu")
    assert claim_job(session, jobs[1].id, worker="w", device="cpu")
    assert finish_job(session, jobs[1].id, state=JobState.failed, worker="w")
    assert request_cancel(session, jobs[2].id) == JobState.cancelled
    assert count_by_state(session) == {
        "queued": 2,
        "running": 1,
        "cancelling": 0,
        "succeeded": 0,
        "failed": 1,
        "cancelled": 1,
    }


def test_max_attempts_must_be_positive(session: Session) -> None:
    with pytest.raises(ValueError, match="max_attempts must be at least 1, got 0"):
        create_job(
            session,
            owner="a",
            kind=JobKind.pretrain,
            name="x",
            spec={},
            dataset_id="ds_x",
            max_attempts=0,
        )
