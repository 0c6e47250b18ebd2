"""Datasets: pagination, ownership, deletion guarded by active jobs."""

from __future__ import annotations

import base64

import pytest
from sqlalchemy.orm import Session

from app.contracts import JobState
from app.store.datasets import delete_dataset, file_referenced, get_dataset, list_datasets
from app.store.job_state import claim_job, finish_job, request_cancel
from app.store.jobs import dataset_in_use
from app.store.pagination import decode_cursor, encode_cursor
from tests.store.factories import SHA_A, SHA_B, at, make_dataset, make_job


def test_pages_of_three_newest_first_without_duplicates(session: Session) -> None:
    ids = [make_dataset(session, name=f"d{i}", created_at=at(i)).id for i in range(7)]
    newest_first = ids[::-1]
    page1, cursor1 = list_datasets(session, "alice", limit=3)
    assert cursor1 is not None
    page2, cursor2 = list_datasets(session, "alice", limit=3, cursor=cursor1)
    assert cursor2 is not None
    page3, cursor3 = list_datasets(session, "alice", limit=3, cursor=cursor2)
    assert [len(page1), len(page2), len(page3)] == [3, 3, 1]
    assert cursor3 is None
    assert [d.id for d in page1 + page2 + page3] == newest_first
    assert [d.name for d in page1] == ["d6", "d5", "d4"]


def test_rows_created_in_the_same_instant_are_ordered_by_id(session: Session) -> None:
    ids = sorted(make_dataset(session, created_at=at(0)).id for _ in range(5))
    page1, cursor = list_datasets(session, None, limit=2)
    rest, end = list_datasets(session, None, limit=10, cursor=cursor)
    assert [d.id for d in page1 + rest] == ids[::-1]
    assert end is None


def test_an_exact_page_has_no_next_cursor(session: Session) -> None:
    for i in range(3):
        make_dataset(session, created_at=at(i))
    items, cursor = list_datasets(session, "alice", limit=3)
    assert len(items) == 3 and cursor is None


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 !",
        base64.urlsafe_b64encode(b"no separator").decode(),
        base64.urlsafe_b64encode(b"yesterday|ds_1").decode(),
        base64.urlsafe_b64encode(b"2026-01-01T00:00:00|ds_1").decode(),  # naive
        base64.urlsafe_b64encode(b"\xff\xfe|x").decode(),
        "",
    ],
)
def test_a_malformed_cursor_is_refused(session: Session, cursor: str) -> None:
    with pytest.raises(ValueError, match="^invalid cursor$"):
        list_datasets(session, "alice", cursor=cursor)


def test_cursor_round_trip() -> None:
    cursor = encode_cursor(at(1.5), "ds_00ff")
    assert "=" not in cursor and "/" not in cursor and "+" not in cursor
    assert decode_cursor(cursor) == (at(1.5), "ds_00ff")


@pytest.mark.parametrize("limit", [0, -1, 501])
def test_limit_bounds(session: Session, limit: int) -> None:
    with pytest.raises(ValueError, match=f"limit must be between 1 and 500, got {limit}"):
        list_datasets(session, "alice", limit=limit)


def test_owners_see_only_their_datasets_and_admin_sees_all(session: Session) -> None:
    mine = make_dataset(session, owner="alice", created_at=at(1))
    theirs = make_dataset(session, owner="bob", created_at=at(2))
    assert get_dataset(session, mine.id, "alice") is mine
    assert get_dataset(session, mine.id, "bob") is None
    assert get_dataset(session, mine.id, None) is mine
    assert get_dataset(session, "ds_missing", None) is None
    assert [d.id for d in list_datasets(session, "bob")[0]] == [theirs.id]
    assert list_datasets(session, "carol") == ([], None)
    assert [d.id for d in list_datasets(session, None)[0]] == [theirs.id, mine.id]


def test_dataset_in_use_only_while_a_job_is_active(session: Session) -> None:
    dataset = make_dataset(session)
    unused = make_dataset(session)
    job = make_job(session, dataset)
    assert dataset_in_use(session, dataset.id) is True  # queued
    assert dataset_in_use(session, unused.id) is False
    assert delete_dataset(session, dataset.id) is False  # the guard repeats the check
    session.rollback()
    assert claim_job(session, job.id, worker="w1", device="cpu")
    assert dataset_in_use(session, dataset.id) is True  # running
    assert request_cancel(session, job.id) == JobState.cancelling
    assert dataset_in_use(session, dataset.id) is True  # cancelling
    assert finish_job(session, job.id, state=JobState.cancelled, worker="w1")
    assert dataset_in_use(session, dataset.id) is False
    # Finished jobs keep the dataset id as history; the dataset can go.
    assert delete_dataset(session, dataset.id) is True
    session.commit()
    assert get_dataset(session, dataset.id, None) is None
    assert delete_dataset(session, dataset.id) is False


def test_file_referenced_by_any_dataset(session: Session) -> None:
    make_dataset(session, files={"table": {"sha256": SHA_A, "name": "t.biom", "size": 1}})
    assert file_referenced(session, SHA_A) is True
    assert file_referenced(session, SHA_B) is False
