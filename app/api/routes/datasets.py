"""Datasets (docs/api.md, Datasets): upload a study's files, read their summary, delete them.

An upload streams to disk, is validated off the event loop with aam_core.io, and only then
moves into content-addressed storage with its row; a rejected upload leaves nothing behind.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import CallerDep, DatasetDep, ServicesDep, SessionDep
from app.api.ingest import (
    DATASET_FILES,
)
from app.api.schemas import DatasetOut, Page, PageQuery, problem_responses
from app.api.threads import run_blocking
from app.api.uploads import read_multipart
from app.services import datasets
from app.store import (
    list_datasets,
)

router = APIRouter(tags=["datasets"])

_FILE_DESCRIPTIONS = {
    "table": "BIOM v2.1 (HDF5) or v1 (JSON) table, or a QIIME 2 FeatureTable[Frequency] .qza",
    "tree": "rooted Newick tree with branch lengths, or a Phylogeny[Rooted] .qza",
    "metadata": "sample metadata, tab-separated, first column the sample ID",
    "sequences": "FASTA or FeatureData[Sequence] .qza; needed when feature IDs are not DNA",
    "distance_matrix": "precomputed UniFrac distances between the table's samples (TSV)",
}
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["table"],
                    "properties": {
                        **{
                            role: {"type": "string", "format": "binary", "description": text}
                            for role, text in _FILE_DESCRIPTIONS.items()
                        },
                        "name": {"type": "string", "maxLength": 200},
                    },
                }
            }
        },
    }
}


@router.post(
    "/datasets",
    status_code=201,
    response_model=DatasetOut,
    openapi_extra=_UPLOAD_BODY,
    responses=problem_responses(400, 401, 413, 415, 422, 507),
)
async def upload_dataset(
    request: Request, response: Response, services: ServicesDep, caller: CallerDep
) -> DatasetOut:
    """Upload a table and, optionally, its tree, metadata, representative sequences and a
    distance matrix. Answers the dataset's summary; invalid content answers 422 naming the file
    and the problem, and stores nothing."""
    settings = services.settings
    upload = await read_multipart(
        request,
        temp_dir=settings.uploads_dir,
        limit=settings.upload_limit_bytes,
        files=set(DATASET_FILES),
    )
    try:
        dataset = await run_blocking(datasets.create_from_upload, services, caller, upload)
    finally:
        upload.cleanup()  # whatever storage did not take
    response.headers["Location"] = f"/datasets/{dataset.id}"
    return dataset


@router.get("/datasets", response_model=Page[DatasetOut], responses=problem_responses(401, 422))
def get_datasets(
    page: Annotated[PageQuery, Query()], session: SessionDep, caller: CallerDep
) -> Page[DatasetOut]:
    """The caller's datasets (an admin's: everyone's), newest first."""
    rows, next_cursor = list_datasets(session, caller.scope, limit=page.limit, cursor=page.cursor)
    return Page[DatasetOut](
        items=[DatasetOut.from_row(row) for row in rows], next_cursor=next_cursor
    )


@router.get(
    "/datasets/{dataset_id}", response_model=DatasetOut, responses=problem_responses(401, 404)
)
async def get_dataset(dataset: DatasetDep) -> DatasetOut:  # no I/O: the row is loaded
    return DatasetOut.from_row(dataset)


@router.delete(
    "/datasets/{dataset_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(401, 404, 409, 507),
)
def remove_dataset(dataset: DatasetDep, session: SessionDep, services: ServicesDep) -> Response:
    """Delete the dataset and the files no other dataset shares; 409 while a queued, running
    or cancelling job uses it."""
    datasets.remove(dataset, session, services)
    return Response(status_code=204)
