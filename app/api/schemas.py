"""Request and response bodies of the REST contract (docs/api.md), separate from the tables.

Field names are the contract: add fields freely, never rename or drop one. ``from_row``
functions turn store rows into these documents.
"""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from app.contracts import JobKind, JobState
from app.store.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor
from app.store.tables import Dataset, Job, Model

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class PageQuery(BaseModel):
    """``?limit=&cursor=`` of every list (docs/api.md, Lists and pagination)."""

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, description="the next_cursor of the previous page")

    @field_validator("cursor")
    @classmethod
    def _issued_here(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                decode_cursor(value)
            except ValueError:
                raise PydanticCustomError(
                    "invalid_cursor",
                    "not a cursor this server issued; pass a page's next_cursor unchanged",
                ) from None
        return value


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] = Field(default_factory=list)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route's error answers, documented as what they are:
    ``application/problem+json`` bodies (``{"model": Problem}`` would say application/json)."""
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {"application/problem+json": {"schema": schema}},
        }
        for status in statuses
    }


# -- health -----------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class Check(BaseModel):
    ok: bool
    detail: str


class Ready(BaseModel):
    database: Check
    broker: Check
    storage: Check
    workers: Check


# -- datasets ---------------------------------------------------------------------------------


class Range(BaseModel):
    min: int
    max: int


class Depths(BaseModel):
    min: int
    median: float
    max: int


class DepthHistogram(BaseModel):
    """Read depths in log-spaced bins: ``edges[i] <= depth < edges[i + 1]`` (the last bin
    closed); ``zero``: samples without reads."""

    edges: list[float]
    counts: list[int]
    zero: int


class DefaultRarefaction(BaseModel):
    """The depth a run without ``config.rarefaction_depth`` would rarefy to."""

    depth: int
    samples_kept: int
    note: str | None = None


class MetadataColumn(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    kind: Literal["numeric", "categorical"]
    n_missing: int
    n_classes: int | None = None


class DatasetOut(BaseModel):
    model_config = ConfigDict(extra="allow")  # the summary may grow; the contract keeps these

    id: str
    name: str
    created_at: datetime
    n_samples: int
    n_features: int
    sequence_length: Range
    sample_depth: Depths
    # Recorded since the dashboard's histogram; None for datasets uploaded before.
    depth_histogram: DepthHistogram | None = None
    default_rarefaction: DefaultRarefaction | None = None
    has_tree: bool
    features_missing_from_tree: int
    metadata_columns: list[MetadataColumn]
    samples_missing_metadata: int
    sha256: dict[str, str]
    warnings: list[str]
    files: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Dataset) -> DatasetOut:
        return cls(
            **{
                **row.summary,
                "id": row.id,
                "name": row.name,
                "created_at": row.created_at,
                "files": row.files,
            }
        )


# -- jobs -------------------------------------------------------------------------------------


class Progress(BaseModel):
    phase: Literal["folds", "refit"] | None = None  # cross_validate: what is running
    fold: int | None = None  # cross_validate: the fold being run, of ``folds`` in all
    folds: int | None = None
    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps: int | None = None
    fraction: float = 0.0
    eta_seconds: float | None = None


class JobMetrics(BaseModel):
    model_config = ConfigDict(extra="allow")

    train: dict[str, Any] = Field(default_factory=dict)
    validation: dict[str, Any] = Field(default_factory=dict)
    baseline: dict[str, Any] = Field(default_factory=dict)


class Best(BaseModel):
    epoch: int | None = None
    metric: str | None = None
    value: float | None = None


class JobError(BaseModel):
    type: str
    detail: str
    field: str | None = None  # the spec field a user error is about (``config.lr``)


class JobOut(BaseModel):
    id: str
    kind: JobKind
    name: str
    state: JobState
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    dataset_id: str
    base_model_id: str | None
    model_id: str | None
    progress: Progress
    metrics: JobMetrics
    best: Best
    attempts: int
    device: str | None
    worker: str | None
    error: JobError | None
    report: dict[str, Any] | None
    spec: dict[str, Any]
    cancel_requested: bool
    outputs: list[str]

    @classmethod
    def from_row(cls, row: Job) -> JobOut:
        return cls(
            id=row.id,
            kind=JobKind(row.kind),
            name=row.name,
            state=JobState(row.state),
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            dataset_id=row.dataset_id,
            base_model_id=row.base_model_id,
            model_id=row.model_id,
            progress=Progress(**(row.progress or {})),
            metrics=JobMetrics(**(row.metrics or {})),
            best=Best(**(row.best or {})),
            attempts=row.attempts,
            device=row.device,
            worker=row.worker,
            error=JobError(**row.error) if row.error else None,
            report=row.report,
            spec=row.spec,
            cancel_requested=row.cancel_requested,
            outputs=sorted(row.outputs or {}),
        )


class MetricRecord(BaseModel):
    model_config = ConfigDict(extra="allow")  # loss, mae, r2, accuracy, ... per split

    epoch: int
    split: str
    loss: float | None = None


class JobPageQuery(PageQuery):
    state: JobState | None = None
    kind: JobKind | None = None


class JobPredictions(BaseModel):
    """A predict job's output as JSON: the rows of its TSV (PredictionResult.to_frame); a
    cross_validate job's out-of-fold rows (sample_id, repeat, fold, model, the prediction
    columns, true, group)."""

    job_id: str
    model_id: str | None
    predictions: list[dict[str, Any]]


class LogLine(BaseModel):
    line: int
    time: datetime
    message: str


class Logs(BaseModel):
    job_id: str
    lines: list[LogLine]
    next_since: int


# -- models -----------------------------------------------------------------------------------


class ModelTarget(BaseModel):
    column: str
    task: Literal["regression", "classification"]
    classes: list[str] | None = None


class ModelPageQuery(PageQuery):
    kind: Literal["encoder", "regressor", "classifier"] | None = None


class ModelOut(BaseModel):
    id: str
    name: str
    kind: Literal["encoder", "regressor", "classifier"]
    created_at: datetime
    job_id: str | None
    dataset_id: str | None
    target: ModelTarget | None
    config: dict[str, Any]
    metrics: dict[str, Any] = Field(
        description="the checkpoint's: best and final epochs, baselines (random_forest, "
        "constant, depth) on the validation split, and depth_confound (whether sequencing "
        "depth alone predicts the target)"
    )
    n_parameters: int
    checkpoint_sha256: str
    source: str
    plots: list[str]

    @classmethod
    def from_row(cls, row: Model) -> ModelOut:
        return cls(
            id=row.id,
            name=row.name,
            kind=row.kind,  # type: ignore[arg-type]
            created_at=row.created_at,
            job_id=row.job_id,
            dataset_id=row.dataset_id,
            target=ModelTarget(**row.target) if row.target else None,
            config=row.config,
            metrics=row.metrics,
            n_parameters=row.n_parameters,
            checkpoint_sha256=row.checkpoint_sha256,
            source=row.source,
            plots=sorted(row.plots or {}),
        )


# -- prediction -------------------------------------------------------------------------------


class SampleCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=500)
    counts: dict[str, int]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: str = Field(min_length=1)
    samples: list[SampleCounts] = Field(min_length=1)
    output: Literal["prediction", "embedding"] = "prediction"
    precision: Literal["fp32", "fp64"] = Field(
        "fp32",
        description="fp32: the same sample gives the same values within 1e-5 relative, whatever "
        "else the request holds; fp64: exact (bit for bit), two to three times the time on a CPU",
    )


class SamplePredictionOut(BaseModel):
    sample_id: str
    prediction: float | list[float] | None = None
    label: str | None = None
    probabilities: dict[str, float] | None = None
    embedding: list[float] | None = None
    # an ensemble model's parts ("aam", "forest"): values, or class probabilities
    components: dict[str, Any] | None = None
    n_features_used: int
    fraction_reads_used: float
    warnings: list[str] = Field(default_factory=list)


class PredictResponse(BaseModel):
    model_id: str
    device: str
    precision: str
    predictions: list[SamplePredictionOut]
