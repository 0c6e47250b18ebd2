"""Datasets: an upload validated, stored and recorded; a dataset deleted with the files no
other dataset shares."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.api.deps import Caller, Services
from app.api.errors import ApiError, not_found
from app.api.ingest import (
    DATASET_FILES,
    check_form,
    form_name,
    lock_blobs,
    release_blobs,
    store_uploads,
    summarize_upload,
)
from app.api.schemas import DatasetOut
from app.api.uploads import Upload
from app.store import Dataset, begin_write, create_dataset, dataset_in_use, delete_dataset


def create_from_upload(services: Services, caller: Caller, upload: Upload) -> DatasetOut:
    """Validate, store and record one upload (thread pool: CPU and disk work)."""
    table = check_form(upload, required="table", files=DATASET_FILES, fields=("name",))
    name = form_name(upload, table.filename)
    summary = summarize_upload(upload)
    with services.sessions() as session:
        lock_blobs(session)
        try:
            files = store_uploads(services.storage, upload.files)
            dataset = create_dataset(
                session, owner=caller.owner, name=name, files=files, summary=summary
            )
            session.commit()
        except BaseException:
            session.rollback()
            # ingest verified each file's digest, so the upload's digests are the blobs'
            release_blobs(session, services.storage, (f.sha256 for f in upload.files.values()))
            raise
        return DatasetOut.from_row(dataset)


def remove(dataset: Dataset, session: Session, services: Services) -> None:
    """Delete the dataset and the files no other dataset shares; 409 while a queued, running
    or cancelling job uses it."""
    dataset_id = dataset.id
    digests = [entry["sha256"] for entry in dataset.files.values()]
    session.commit()  # end the read; the delete runs in a write transaction of its own
    begin_write(session)
    if not delete_dataset(session, dataset_id):  # the DELETE itself spares a dataset in use
        in_use = dataset_in_use(session, dataset_id)
        session.rollback()
        if not in_use:  # deleted by a concurrent request meanwhile
            raise not_found("dataset", dataset_id)
        raise ApiError(
            409,
            f"dataset {dataset_id!r} is used by a queued or running job; cancel the job or wait "
            "until it ends, then delete the dataset",
            kind="conflict",
        )
    session.commit()
    release_blobs(session, services.storage, digests)
