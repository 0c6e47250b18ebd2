"""What the API and the workers agree on: job specs, states, task names and queues.

Pydantic models, and aam_core's torch-free run configuration and target. A job spec is
validated twice at submission: here for shape and types alone, then by aam_core's run planner,
which holds every rule tying its fields together (which parts go with which kind, the settings
against the dataset and models; app/api/job_checks.py).
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from aam_core.model.config import LossWeights
from aam_core.plan import TargetSpec
from aam_core.plan.config import setting_fields, type_hint
from aam_core.plan.crossval import FIXED_KEYS, MAX_FOLDS, MAX_REPEATS, MIN_READS


class JobKind(StrEnum):
    pretrain = "pretrain"
    train = "train"
    predict = "predict"
    cross_validate = "cross_validate"


class JobState(StrEnum):
    queued = "queued"
    running = "running"
    cancelling = "cancelling"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})
ACTIVE_STATES = frozenset({JobState.queued, JobState.running, JobState.cancelling})

# The Celery task (sent by name: the API never imports the worker) and its queue: every job
# kind runs a model, so every job goes to a worker that owns a device.
TASK_RUN_JOB = "aam.run_job"
QUEUE_GPU = "gpu"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Loss weights given by name (aam_core's LossWeights fields); each >= 0.
_WEIGHTS: dict[str, Any] = {
    f.name: (float | None, Field(default=None, ge=0)) for f in dataclasses.fields(LossWeights)
}
LossWeightsSpec = create_model("LossWeightsSpec", __base__=Strict, **_WEIGHTS)


# The job kinds that run each of RunConfig's runs (a cross-validation trains in every fold).
RUN_JOBS: dict[str, tuple[str, ...]] = {
    "pretrain": ("pretrain",),
    "train": ("train", "cross_validate"),
    "predict": ("predict",),
}


def _setting(f: dataclasses.Field[Any]) -> tuple[Any, Any]:
    """One RunConfig field as an optional override: its type (None: not given), its bounds,
    its help sentence, the job kinds it applies to (its ``runs``; the planner refuses it in
    the others) and, for the documentation, the default a run takes when it is not given."""
    hint = type_hint(f.name)
    if f.name == "loss_weights":
        hint = LossWeightsSpec
    elif f.name == "extra":
        hint = dict[str, Any]
    factory: Any = f.default_factory
    default = f.default if f.default is not dataclasses.MISSING else factory()
    jobs = [job for run in f.metadata["runs"] for job in RUN_JOBS.get(run, ())]
    if f.name in FIXED_KEYS:  # a cross-validation sets the split itself
        jobs.remove("cross_validate")
    extra: dict[str, Any] = {"jobs": jobs}
    if default is not None:
        extra["default"] = default
    return (
        hint | None,
        Field(
            default=None,
            description=f"{f.metadata['help']} Jobs: {', '.join(jobs)}.",
            json_schema_extra=extra,
            **f.metadata.get("bounds", {}),
        ),
    )


if TYPE_CHECKING:  # the generated model, as type checkers see it

    class JobConfig(Strict):
        def __getattr__(self, name: str) -> Any: ...

else:
    JobConfig = create_model(
        "JobConfig",
        __base__=Strict,
        __doc__="Optional overrides of a run's settings: the fields of aam_core's RunConfig "
        "(the keys, meanings and bounds of the aam tool's flags and config files).",
        **{f.name: _setting(f) for f in setting_fields()},
    )


def given_config(config: BaseModel) -> dict[str, Any]:
    """The settings a job gives, as a mapping for the run planner (unset ones left out)."""
    return config.model_dump(exclude_none=True)


class CrossValidationSpec(Strict):
    """A cross_validate job's design (aam_core.plan.crossval checks the rest)."""

    folds: int = Field(default=5, ge=2, le=MAX_FOLDS, description="Outer folds per repeat.")
    repeats: int = Field(
        default=1, ge=1, le=MAX_REPEATS, description="Repeats, each with its own shuffle."
    )
    group_column: str | None = Field(
        default=None,
        min_length=1,
        description="Metadata column of the subject: its samples stay in one fold. Default: "
        "every sample is its own group.",
    )
    models: list[str] | None = Field(
        default=None,
        description="Of aam, forest, linear, constant, depth (default: all), compared on "
        "identical folds.",
    )
    pretrain: bool = Field(
        default=False,
        description="AAM starts from an encoder pretrained on each fold's training samples.",
    )
    min_reads: int = Field(
        default=MIN_READS, ge=0, description="Samples with fewer reads are left out."
    )


class JobSpec(Strict):
    kind: JobKind
    dataset_id: str = Field(min_length=1)
    target: TargetSpec | None = None
    base_model_id: str | None = None
    freeze_base: bool = False
    model_id: str | None = None
    config: JobConfig = Field(default_factory=JobConfig)
    name: str | None = Field(default=None, max_length=200)
    model: Literal["aam", "ensemble", "auto"] | None = Field(
        default=None,
        description="train: what the job registers: AAM alone, AAM blended with a random "
        "forest on the validation split, or the best of AAM, the forest and their blend "
        "there (the job's report says why). Default: aam. cross_validate: aam, or ensemble "
        "to compare and refit the blend too.",
    )
    cv: CrossValidationSpec | None = Field(
        default=None, description="cross_validate: the folds, groups and models compared."
    )
    refit: bool | None = Field(
        default=None,
        description="cross_validate: then train the final model on every sample and register "
        "it, its card citing the cross-validated figures.",
    )
