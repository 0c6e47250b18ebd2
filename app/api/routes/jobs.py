"""Jobs (docs/api.md, Jobs): submit, list, read, cancel; metrics, logs, events and predictions.

Submission (``POST /jobs``) validates the whole spec before anything is queued
(:mod:`app.api.job_checks`). A ``dataset_id``, ``base_model_id`` or ``model_id`` that does not
exist, or is another owner's, is a 422 naming that body field, not a 404: the URL ``/jobs``
exists, it is the body that points nowhere. Then the row is committed and only then is the
message sent: a worker that receives it always finds the row. When the broker refuses the
message the row is deleted again and the answer is 503, so no queued job waits for a message
that never comes.

``Idempotency-Key`` (per owner): a retry with the same body returns the first job (202, no
second message); the same key with a different body is a 422, as in the IETF
idempotency-key draft. Of concurrent submissions with one key, the database's unique
constraint lets one insert; the others return its job.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from app.api import events
from app.api.blobs import blob_response, send_blob
from app.api.deps import CallerDep, JobDep, ServicesDep, SessionDep
from app.api.errors import ApiError
from app.api.negotiation import prefers_json
from app.api.schemas import (
    JobOut,
    JobPageQuery,
    JobPredictions,
    LogLine,
    Logs,
    MetricRecord,
    Page,
    problem_responses,
)
from app.api.threads import run_blocking
from app.contracts import JobKind, JobSpec, JobState
from app.services import jobs
from app.store import (
    get_logs,
    get_metrics,
    list_jobs,
)
from app.store.job_history import MAX_LOG_LINE, MAX_LOG_PAGE
from app.store.tables import NAME_LENGTH

log = logging.getLogger("aam.api")

router = APIRouter(tags=["jobs"])
router.include_router(events.router)

NOT_FOUND = problem_responses(401, 404)
TSV = "text/tab-separated-values"
TEXT_COLUMNS = frozenset({"sample_id", "warnings", "model", "group"})
INTEGER_COLUMNS = frozenset({"n_features", "n_features_used", "repeat", "fold"})
PREDICTING = frozenset({JobKind.predict.value, JobKind.cross_validate.value})


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobOut,
    responses=problem_responses(400, 401, 422, 503, 507),
)
def submit_job(
    spec: JobSpec,
    response: Response,
    session: SessionDep,
    caller: CallerDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=NAME_LENGTH)] = None,
) -> JobOut:
    """Queue a pretrain, train, predict or cross_validate job: 202 with the job and
    ``Location: /jobs/{id}``.

    The whole spec is checked first; whatever would make the job fail is a 422 naming the
    field. A ``dataset_id``, ``base_model_id`` or ``model_id`` that does not exist (or is
    another owner's) is a 422 too, not a 404: ``/jobs`` exists, the body points nowhere.
    ``Idempotency-Key``: a retry with the same body returns the first job (202, queued once);
    the same key with another body is a 422. 503 when the job queue refuses the message: no
    job is kept, and the key may be used again.
    """
    job = jobs.submit(spec, session, caller, services, idempotency_key)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


@router.get("/jobs", response_model=Page[JobOut], responses=problem_responses(401, 422))
def list_jobs_route(
    page: Annotated[JobPageQuery, Query()], session: SessionDep, caller: CallerDep
) -> Page[JobOut]:
    """The caller's jobs (an admin's: everyone's), newest first; filters ``state``, ``kind``."""
    rows, next_cursor = list_jobs(
        session,
        caller.scope,
        state=page.state,
        kind=page.kind,
        limit=page.limit,
        cursor=page.cursor,
    )
    return Page[JobOut](items=[JobOut.from_row(r) for r in rows], next_cursor=next_cursor)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=NOT_FOUND)
async def read_job(job: JobDep) -> JobOut:  # no I/O: the row is loaded
    return JobOut.from_row(job)


@router.post(
    "/jobs/{job_id}/cancel",
    status_code=202,
    response_model=JobOut,
    responses=problem_responses(401, 404, 409, 507),
)
def cancel_job(job: JobDep, session: SessionDep) -> JobOut:
    """A queued job ends cancelled at once; a running one goes to ``cancelling`` and its worker
    stops at the next step, keeping its last checkpoint."""
    return jobs.cancel(job, session)


@router.get("/jobs/{job_id}/metrics", response_model=list[MetricRecord], responses=NOT_FOUND)
def job_metrics(job: JobDep, session: SessionDep) -> list[MetricRecord]:
    """Per-epoch history: one record per epoch and split, in order."""
    return [
        MetricRecord(epoch=row.epoch, split=row.split, **row.values)
        for row in get_metrics(session, job.id)
    ]


@router.get("/jobs/{job_id}/logs", response_model=Logs, responses=NOT_FOUND)
def job_logs(
    job: JobDep,
    session: SessionDep,
    since: Annotated[int, Query(ge=0, le=MAX_LOG_LINE)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_PAGE)] = 1000,
) -> Logs:
    """Log lines after line ``since``; pass ``next_since`` back to follow the log."""
    rows = get_logs(session, job.id, since, limit)
    lines = [LogLine(line=r.line, time=r.created_at, message=r.message) for r in rows]
    return Logs(job_id=job.id, lines=lines, next_since=lines[-1].line if lines else since)


def _typed(column: str, value: str, text: frozenset[str]) -> Any:
    if column in text:
        return value
    if value == "":
        return None
    try:
        number = int(value) if column in INTEGER_COLUMNS else float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else None


@router.get(
    "/jobs/{job_id}/predictions",
    response_class=FileResponse,
    responses={
        200: {
            "content": {TSV: {"schema": {"type": "string"}}, "application/json": {}},
            "model": JobPredictions,
            "description": "TSV by default; JSON with Accept: application/json",
        },
        **problem_responses(401, 404, 409),
    },
)
async def job_predictions(
    job: JobDep,
    services: ServicesDep,
    request: Request,
    layout: Annotated[
        Literal["aam", "q2-predictions", "q2-probabilities"],
        Query(
            description="aam (default); or q2-sample-classifier's files for `qiime tools "
            "import`: q2-predictions (predictions.tsv: id, prediction) or q2-probabilities "
            "(class_probabilities.tsv: id, one column per class; classifiers only)"
        ),
    ] = "aam",
) -> Response:
    """A succeeded predict job's predictions: one row per sample (sample_id, prediction or
    label and prob_<class> columns, n_features, n_features_used, fraction_reads_used,
    warnings); with ``layout`` q2-predictions or q2-probabilities, the same predictions in
    q2-sample-classifier's layouts (always TSV). A cross_validate job's: the out-of-fold
    predictions of every model (sample_id, repeat, fold, model, prediction or label and
    prob_<class>, true, group)."""
    if job.kind not in PREDICTING:
        raise ApiError(
            404,
            f"job {job.id!r} is a {job.kind} job; only predict and cross_validate jobs have "
            "predictions",
            kind="not-found",
        )
    if job.state != JobState.succeeded.value:
        raise ApiError(
            409,
            f"job {job.id!r} is {job.state}; its predictions exist once it has succeeded",
            kind="job-not-succeeded",
        )
    if layout != "aam" and job.kind == JobKind.cross_validate.value:
        raise ApiError(
            404,
            f"job {job.id!r} is a cross_validate job: its out-of-fold predictions have one "
            "layout (layout=aam), with a row per sample, repeat and model",
            kind="not-found",
        )
    if layout != "aam":
        return _q2_file(job.id, job.outputs or {}, services, layout)
    digest = (job.outputs or {}).get("predictions")
    if digest is None or not services.storage.exists(digest):
        raise ApiError(
            404,
            f"the predictions file of job {job.id!r} is missing from artifact storage",
            kind="not-found",
        )
    if not prefers_json(request.headers.get("accept"), TSV):
        return await run_blocking(
            blob_response,
            services.storage,
            digest,
            media_type=TSV,
            filename=f"{job.id}_predictions.tsv",
        )
    path = await run_blocking(services.storage.path, digest)
    rows = await run_blocking(_read_predictions, path)
    document = JobPredictions(job_id=job.id, model_id=job.model_id, predictions=rows)
    return JSONResponse(document.model_dump(mode="json"))


_Q2_FILES = {  # layout -> (job output, file name)
    "q2-predictions": ("q2_predictions", "predictions.tsv"),
    "q2-probabilities": ("q2_class_probabilities", "class_probabilities.tsv"),
}


def _q2_file(job_id: str, outputs: dict[str, str], services: ServicesDep, layout: str) -> Response:
    output, name = _Q2_FILES[layout]
    digest = outputs.get(output)
    if digest is None or not services.storage.exists(digest):
        raise ApiError(
            404,
            f"job {job_id!r} has no {name} in q2-sample-classifier's layout (class "
            "probabilities exist for classifiers only; a regressor with several outputs and "
            "jobs from before this layout have none)",
            kind="not-found",
        )
    return blob_response(services.storage, digest, media_type=TSV, filename=f"{job_id}_{name}")


def _read_predictions(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        columns = reader.fieldnames or []
        text = TEXT_COLUMNS
        if any(c.startswith("prob_") for c in columns):  # a classifier's: labels are text
            text = text | {"prediction", "true"}
        return [
            {column: _typed(column, value, text) for column, value in row.items()} for row in reader
        ]


@router.get(
    "/jobs/{job_id}/plots/{plot}.png",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {}}, "description": "the plot (PNG)"},
        **problem_responses(401, 404),
    },
)
def job_plot(job: JobDep, plot: str, request: Request, services: ServicesDep) -> Response:
    """A succeeded cross_validate job's figures: ``fold_scores`` (each model's score per fold,
    with its mean and 95% interval), and ``oof_predicted_vs_true`` (regression) or ``roc``
    (classification) of the out-of-fold predictions. A job lists them among its outputs as
    ``plot_<name>``; a trained model's plots are under ``/models/{id}/plots``."""
    outputs: dict[str, str] = job.outputs or {}
    plots = sorted(name.removeprefix("plot_") for name in outputs if name.startswith("plot_"))
    if plot not in plots:
        available = f"its plots are {', '.join(plots)}" if plots else "it has no plots"
        raise ApiError(404, f"job {job.id!r} has no plot {plot!r}; {available}", kind="not-found")
    what = f"plot {plot!r} of job {job.id!r}"
    return send_blob(
        request,
        services.storage,
        outputs[f"plot_{plot}"],
        what,
        "image/png",
        f"{job.id}_{plot}.png",
    )
