"""What the API and the workers agree on: job specs, states, task names and queues.

Pydantic models only; nothing here imports torch. A job spec is validated twice at
submission: here for shape and types, then against the dataset and models (routes/jobs.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class JobKind(StrEnum):
    pretrain = "pretrain"
    train = "train"
    predict = "predict"


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})
ACTIVE_STATES = frozenset({JobState.queued, JobState.running, JobState.cancelling})

# Celery task names (sent by name: the API never imports the worker) and queues.
TASK_RUN_JOB = "aam.run_job"
TASK_REAP_JOBS = "aam.reap_jobs"
QUEUE_GPU = "gpu"  # training, pretraining, predictions
QUEUE_CPU = "cpu"  # light work: the reaper


def queue_for(kind: JobKind) -> str:
    """Every job kind runs a model, so it goes to a worker that owns a device."""
    return QUEUE_GPU


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetSpec(Strict):
    column: str = Field(min_length=1)
    task: Literal["regression", "classification"]


class LossWeightsSpec(Strict):
    unifrac: float | None = Field(default=None, ge=0)
    faith_pd: float | None = Field(default=None, ge=0)
    nucleotide: float | None = Field(default=None, ge=0)
    count: float | None = Field(default=None, ge=0)
    target: float | None = Field(default=None, ge=0)


class JobConfig(Strict):
    """Optional overrides of a run's settings (API.md; the names of aam_core's RunConfig)."""

    epochs: int | None = Field(default=None, ge=1, le=100_000)
    batch_size: int | None = Field(default=None, ge=2, le=65_536)
    lr: float | None = Field(default=None, gt=0, le=1)
    weight_decay: float | None = Field(default=None, ge=0)
    warmup_fraction: float | None = Field(default=None, ge=0, lt=1)
    token_limit: int | None = Field(default=None, ge=1, le=65_536)
    max_bp: int | None = Field(default=None, ge=1, le=10_000)
    truncate: bool | None = None
    rarefaction_depth: int | None = Field(default=None, ge=1)
    rerarefy: bool | None = None
    preset: Literal["default", "tiny"] | None = None
    embedding_dim: int | None = Field(default=None, ge=2, le=4096)
    layers: int | None = Field(default=None, ge=1, le=64)
    nucleotide_layers: int | None = Field(default=None, ge=1, le=64)
    heads: int | None = Field(default=None, ge=1, le=64)
    dropout: float | None = Field(default=None, ge=0, lt=1)
    loss_weights: LossWeightsSpec | None = None
    target_loss: Literal["mse", "huber"] | None = None
    class_weights: Literal["none", "balanced"] | None = None
    validation_fraction: float | None = Field(default=None, gt=0, lt=1)
    group_column: str | None = None
    baseline: bool | None = None
    patience: int | None = Field(default=None, ge=1)
    monitor: str | None = None
    seed: int | None = Field(default=None, ge=0)
    precision: Literal["auto", "fp32", "bf16"] | None = None
    gpus: int | None = Field(default=None, ge=1, le=64)
    grad_accumulation: int | None = Field(default=None, ge=1)
    passes: int | None = Field(default=None, ge=1, le=100)  # predict jobs: rarefaction passes

    def run_config_values(self) -> dict[str, Any]:
        """The set values, as RunConfig keyword arguments (``passes`` is not a run setting)."""
        values = self.model_dump(exclude_none=True, exclude={"passes"})
        if self.loss_weights is not None:
            values["loss_weights"] = self.loss_weights.model_dump(exclude_none=True)
        return values


class JobSpec(Strict):
    kind: JobKind
    dataset_id: str = Field(min_length=1)
    target: TargetSpec | None = None
    base_model_id: str | None = None
    freeze_base: bool = False
    model_id: str | None = None
    config: JobConfig = Field(default_factory=JobConfig)
    name: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        if self.kind == JobKind.train and self.target is None:
            raise ValueError("a train job needs a target: {'column': ..., 'task': ...}")
        if self.kind != JobKind.train and self.target is not None:
            raise ValueError(f"a {self.kind.value} job takes no target")
        if self.kind == JobKind.predict and self.model_id is None:
            raise ValueError("a predict job needs model_id (the model to apply)")
        if self.kind != JobKind.predict and self.model_id is not None:
            raise ValueError(f"model_id is for predict jobs; a {self.kind.value} job registers one")
        if self.base_model_id is not None and self.kind != JobKind.train:
            raise ValueError("base_model_id is for train jobs (fine-tuning)")
        if self.freeze_base and self.base_model_id is None:
            raise ValueError("freeze_base needs base_model_id (a pretrained encoder)")
        return self
