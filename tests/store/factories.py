"""Small factories for store tests: rows with sensible defaults, committed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.contracts import JobKind
from app.store.datasets import create_dataset
from app.store.jobs import create_job
from app.store.models import create_model
from app.store.tables import Dataset, Job, Model

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
SHA_A = "a" * 64
SHA_B = "b" * 64


def at(seconds: float) -> datetime:
    """A fixed instant ``seconds`` after T0 (tests control time, never sleep)."""
    return T0 + timedelta(seconds=seconds)


def make_dataset(session: Session, owner: str = "alice", **changes: Any) -> Dataset:
    values: dict[str, Any] = {
        "owner": owner,
        "name": "gut study",
        "files": {"table": {"sha256": SHA_A, "name": "table.biom", "size": 1234}},
        "summary": {"n_samples": 80, "n_features": 120, "warnings": []},
    }
    values.update(changes)
    dataset = create_dataset(session, **values)
    session.commit()
    return dataset


def make_job(
    session: Session, dataset: Dataset | None = None, owner: str = "alice", **changes: Any
) -> Job:
    dataset = dataset or make_dataset(session, owner=owner)
    values: dict[str, Any] = {
        "owner": owner,
        "kind": JobKind.pretrain,
        "name": "pretrain",
        "spec": {"kind": "pretrain", "dataset_id": dataset.id, "config": {"epochs": 2}},
        "dataset_id": dataset.id,
        "max_attempts": 3,
    }
    values.update(changes)
    job, created = create_job(session, **values)
    assert created
    session.commit()
    return job


def make_model(session: Session, owner: str = "alice", **changes: Any) -> Model:
    values: dict[str, Any] = {
        "owner": owner,
        "name": "encoder",
        "kind": "encoder",
        "config": {"embedding_dim": 64},
        "metrics": {"validation": {"loss": 0.25}},
        "n_parameters": 123_456,
        "checkpoint_sha256": SHA_B,
        "source": "import",
    }
    values.update(changes)
    model = create_model(session, **values)
    session.commit()
    return model
