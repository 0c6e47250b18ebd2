"""Models: ownership, listing, deletion and shared checkpoints."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from app.contracts import JobKind, JobState
from app.store.job_state import claim_job, finish_job
from app.store.jobs import model_in_use
from app.store.models import (
    checkpoint_referenced,
    create_model,
    delete_model,
    get_model,
    list_models,
)
from tests.store.factories import SHA_A, SHA_B, at, make_dataset, make_job, make_model


def test_get_and_list_respect_owners(session: Session) -> None:
    alices = [make_model(session, created_at=at(i)) for i in range(4)]
    bobs = make_model(session, owner="bob", kind="regressor", created_at=at(10))
    assert get_model(session, alices[0].id, "alice") is alices[0]
    assert get_model(session, alices[0].id, "bob") is None
    assert get_model(session, bobs.id, None) is bobs
    page, cursor = list_models(session, "alice", limit=3)
    assert [m.id for m in page] == [m.id for m in alices[::-1][:3]]
    rest, end = list_models(session, "alice", limit=3, cursor=cursor)
    assert [m.id for m in rest] == [alices[0].id] and end is None
    assert [m.id for m in list_models(session, None, kind="regressor")[0]] == [bobs.id]
    assert list_models(session, "carol") == ([], None)


def test_invalid_kind_or_source(session: Session) -> None:
    with pytest.raises(ValueError, match="model kind must be one of encoder, regressor"):
        create_model(
            session,
            owner="a",
            name="m",
            kind="forest",  # type: ignore[arg-type]
            config={},
            metrics={},
            n_parameters=1,
            checkpoint_sha256=SHA_A,
            source="job",
        )


def test_delete_and_checkpoint_references(session: Session) -> None:
    first = make_model(session, checkpoint_sha256=SHA_A)
    second = make_model(session, checkpoint_sha256=SHA_A)  # identical checkpoint, stored once
    assert checkpoint_referenced(session, SHA_A) is True
    assert delete_model(session, first.id) is True
    session.commit()
    assert checkpoint_referenced(session, SHA_A) is True  # the second still uses it
    assert delete_model(session, second.id) is True
    session.commit()
    assert checkpoint_referenced(session, SHA_A) is False
    assert checkpoint_referenced(session, SHA_B) is False
    assert delete_model(session, second.id) is False


def test_model_in_use_by_active_predict_and_fine_tune_jobs(session: Session) -> None:
    dataset = make_dataset(session)
    applied = make_model(session, kind="regressor")
    base = make_model(session)
    idle = make_model(session)
    predict = make_job(session, dataset, kind=JobKind.predict, model_id=applied.id)
    make_job(session, dataset, kind=JobKind.train, base_model_id=base.id)
    assert model_in_use(session, applied.id) is True
    assert model_in_use(session, base.id) is True
    assert model_in_use(session, idle.id) is False
    assert claim_job(session, predict.id, worker="w", device="cpu")
    assert finish_job(session, predict.id, state=JobState.succeeded, worker="w")
    assert model_in_use(session, applied.id) is False


def test_delete_refuses_a_model_an_active_job_uses(session: Session) -> None:
    """The DELETE itself re-checks: a job submitted after the route's check keeps its model."""
    dataset = make_dataset(session)
    base = make_model(session)
    job = make_job(session, dataset, kind=JobKind.train, base_model_id=base.id)
    session.commit()
    assert delete_model(session, base.id) is False
    session.rollback()
    assert claim_job(session, job.id, worker="w", device="cpu")
    assert finish_job(session, job.id, state=JobState.failed, worker="w")
    assert delete_model(session, base.id) is True
