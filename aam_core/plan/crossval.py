"""The rules of a cross-validation request (a ``cross_validate`` job, ``aam cross-validate``),
torch-free: checked at submission from the dataset's summary, and again by the run on the
samples themselves (:func:`aam_core.crossval.engine.check`).

A cross-validation trains AAM with the job's recipe in every outer training fold; the folds
and the inner validation split are its own (every model chooses on the same samples), so the
settings that would move them are refused in ``config``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aam_core.errors import ConfigError, UserError
from aam_core.plan.config import run_settings
from aam_core.plan.planner import (
    DatasetFacts,
    ModelKind,
    ResolvedRun,
    plan_run,
)
from aam_core.plan.targets import TargetSpec, missing_column

# The models a request may name (the REST contract's); the benchmark adds its own.
CV_MODELS = ("aam", "forest", "linear", "constant", "depth")
# Set by the cross-validation: the groups are cv.group_column's, the inner split 20% of them.
FIXED_KEYS = ("group_column", "validation_fraction")
MAX_FOLDS, MAX_REPEATS = 20, 10
MIN_READS = 1000  # samples with fewer reads are left out of every model


@dataclass(frozen=True)
class CrossValidation:
    folds: int = 5
    repeats: int = 1
    group_column: str | None = None
    models: tuple[str, ...] = CV_MODELS
    pretrain: bool = False  # AAM starts from an encoder pretrained on each training fold
    min_reads: int = MIN_READS

    def __post_init__(self) -> None:
        check_counts(self.folds, self.repeats)
        unknown = [m for m in self.models if m not in CV_MODELS]
        if unknown or not self.models or len(set(self.models)) != len(self.models):
            raise ConfigError(
                f"choose among {', '.join(CV_MODELS)}, each once; got {list(self.models)}",
                field="cv.models",
            )
        if self.min_reads < 0:
            raise ConfigError(
                f"cv.min_reads must be >= 0, got {self.min_reads}", field="cv.min_reads"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> CrossValidation:
        given = {k: v for k, v in (values or {}).items() if v is not None}
        if "models" in given:
            given["models"] = tuple(given["models"])
        return cls(**given)


def check_counts(folds: int, repeats: int) -> None:
    if not 2 <= folds <= MAX_FOLDS:
        raise ConfigError(f"cv.folds must be 2 to {MAX_FOLDS}, got {folds}", field="cv.folds")
    if not 1 <= repeats <= MAX_REPEATS:
        raise ConfigError(
            f"cv.repeats must be 1 to {MAX_REPEATS}, got {repeats}", field="cv.repeats"
        )


def pretrain_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a fold's pretraining: the recipe's that apply to pretraining."""
    return {k: v for k, v in config.items() if k in run_settings("pretrain")}


def _groups_at_most(cv: CrossValidation, dataset: DatasetFacts) -> int:
    if cv.group_column is None:
        return dataset.n_samples
    columns = {c["name"]: c for c in dataset.columns}
    if cv.group_column not in columns:
        names: Sequence[str] = list(columns)
        raise UserError(
            missing_column(cv.group_column, names, dataset.where, "cv.group_column"),
            field="cv.group_column",
        )
    column = columns[cv.group_column]
    distinct = column.get("n_classes") or column.get("n_distinct") or 0
    return int(distinct) + int(column.get("n_missing") or 0)  # a sample without one: its own


def plan_cross_validation(
    config: Mapping[str, Any],
    dataset: DatasetFacts,
    cv: CrossValidation,
    *,
    target: TargetSpec,
    model_kind: ModelKind | None = None,
    device: str | None = None,
) -> ResolvedRun:
    """The train run each fold resolves (and the refit, on every sample), or the first
    :class:`UserError` the request would meet."""
    fixed = sorted(set(config) & set(FIXED_KEYS))
    if fixed:
        raise ConfigError(
            "is set by the cross-validation (cv.group_column names the groups; every model "
            "chooses on one inner split of 20% of them): leave it out",
            field=f"config.{fixed[0]}",
        )
    if model_kind == "auto":
        raise ConfigError(
            "'auto' chooses on the validation split what a cross-validation compares fold by "
            "fold: choose 'aam' or 'ensemble'",
            field="model",
        )
    groups = _groups_at_most(cv, dataset)
    if groups < cv.folds:
        what = f"values of {cv.group_column!r}" if cv.group_column else "samples"
        raise ConfigError(
            f"{cv.folds} folds need at least {cv.folds} {what}; {dataset.where} has {groups}",
            field="cv.folds",
        )
    settings = {**config, "group_column": cv.group_column}
    run = plan_run("train", settings, dataset, target=target, model_kind=model_kind, device=device)
    if cv.pretrain and "aam" in cv.models:
        plan_run("pretrain", pretrain_settings(settings), dataset, device=device)
    return run
