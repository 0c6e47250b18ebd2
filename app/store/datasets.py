"""Dataset rows. Functions flush; the caller owns the transaction and commits."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, exists, select
from sqlalchemy.orm import Session

from app.contracts import ACTIVE_STATES
from app.store.pagination import DEFAULT_LIMIT, paginate
from app.store.tables import Dataset, Job, new_id, utcnow


def create_dataset(
    session: Session,
    *,
    owner: str,
    name: str,
    files: Mapping[str, Mapping[str, Any]],
    summary: Mapping[str, Any],
    dataset_id: str | None = None,
    created_at: datetime | None = None,
) -> Dataset:
    """``files``: role -> {"sha256", "name", "size"}; ``summary``: the POST /datasets report."""
    dataset = Dataset(
        id=dataset_id or new_id("ds"),
        owner=owner,
        name=name,
        created_at=created_at or utcnow(),
        files={role: dict(entry) for role, entry in files.items()},
        summary=dict(summary),
    )
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, dataset_id: str, owner: str | None) -> Dataset | None:
    """The dataset, or None when missing or another owner's (``owner=None``: admin)."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or (owner is not None and dataset.owner != owner):
        return None
    return dataset


def list_datasets(
    session: Session,
    owner: str | None,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> tuple[list[Dataset], str | None]:
    statement = select(Dataset)
    if owner is not None:
        statement = statement.where(Dataset.owner == owner)
    return paginate(session, statement, Dataset.created_at, Dataset.id, limit=limit, cursor=cursor)


def delete_dataset(session: Session, dataset_id: str) -> bool:
    """Delete the row unless an active job uses it; whether a row was deleted.

    The caller checks ownership and :func:`app.store.jobs.dataset_in_use` first (to answer 409);
    the condition is repeated in the DELETE so a job submitted in between keeps its dataset.
    Files in artifact storage are the caller's to remove (they may be shared).
    """
    in_use = exists().where(
        Job.dataset_id == dataset_id, Job.state.in_([s.value for s in ACTIVE_STATES])
    )
    result = session.execute(
        delete(Dataset).where(Dataset.id == dataset_id, ~in_use),
        execution_options={"synchronize_session": "fetch"},
    )
    return cast("CursorResult[Any]", result).rowcount == 1


def file_referenced(session: Session, sha256: str) -> bool:
    """Whether any dataset still lists a file with this digest (before deleting the blob)."""
    for files in session.scalars(select(Dataset.files)):
        if any(entry.get("sha256") == sha256 for entry in files.values()):
            return True
    return False
