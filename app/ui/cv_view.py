"""What a cross_validate job's page shows of ``report.cross_validation``
(:func:`aam_core.crossval.report.cv_report`): each model's mean per metric (per sample, and
with each subject weighted once), the best model per metric marked, AAM's paired differences
with their 95% intervals and which side wins, the plots, and the depth verdict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aam_core.model_card.text import model_title
from aam_core.plan.config import MAXIMISED
from app.api.schemas import JobOut, Progress
from app.contracts import JobKind

PLOT_CAPTIONS = {
    "fold_scores": "Score per fold (mean and 95% interval)",
    "oof_predicted_vs_true": "Out-of-fold predictions against the truth",
    "roc": "ROC curves of the out-of-fold predictions",
}


def label(model: str) -> str:
    """The model card's name for the model, as a table heading."""
    title = model_title(model)
    return title[:1].upper() + title[1:]


def fold_label(progress: Progress) -> str:
    """``fold 3 of 5`` while the folds run, ``refit on every sample`` past them (job.js says
    the same as progress events arrive); ``""`` before the first fold."""
    if not progress.folds or not progress.fold:
        return ""
    if progress.phase == "refit":
        return "refit on every sample"
    return f"fold {progress.fold} of {progress.folds}"


@dataclass(frozen=True)
class Cell:
    """One model's figure on one metric: means over folds and the per-sample sd."""

    per_sample: float | None
    subject_weighted: float | None
    sd: float | None
    best: bool


@dataclass(frozen=True)
class ModelRow:
    name: str
    label: str
    cells: list[Cell]
    seconds: float | None
    reads: str | None


@dataclass(frozen=True)
class Difference:
    """AAM minus ``other`` on ``metric``, fold by fold: the mean and its bootstrap interval."""

    other: str
    label: str
    metric: str
    mean: float | None
    low: float | None
    high: float | None
    n: int | None
    better: str | None  # "aam", "other", "neither" (None: too few folds to tell)
    verdict: str


@dataclass(frozen=True)
class CrossValidationView:
    report: dict[str, Any]
    metrics: list[str]  # the table's columns, the primary metric first
    lower_is_better: frozenset[str]
    rows: list[ModelRow]
    differences: list[Difference]
    depth_warning: str | None
    depth_reason: str | None
    best_baseline: str | None  # its label
    left_out: list[tuple[str, int]]  # (why, samples): the reasons that left some out
    plots: list[tuple[str, str]]  # (name, caption): /jobs/{id}/plots/{name}.png
    predictions: bool
    refit_model_id: str | None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _verdict(better: str | None, other: str) -> str:
    if better == "aam":
        return "AAM better"
    if better == "other":
        return f"{other} better"
    if better == "neither":
        return "no clear winner: the interval spans 0"
    return "not known (too few folds)"


def _metrics(report: Mapping[str, Any], models: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for entry in models.values():
        names.extend(n for n in (entry.get("per_sample") or {}) if n not in names)
    primary = report.get("primary_metric")
    names.sort(key=lambda n: n != primary)  # stable: the primary metric first
    return names


def cross_validation_view(job: JobOut) -> CrossValidationView | None:
    """The view of a cross_validate job's report; None for other kinds and until it has one."""
    if job.kind != JobKind.cross_validate:
        return None
    report = (job.report or {}).get("cross_validation")
    if not isinstance(report, Mapping):
        return None
    models: Mapping[str, Any] = report.get("models") or {}
    metrics = _metrics(report, models)
    best = report.get("best") or {}
    rows = [_model_row(name, entry, metrics, best) for name, entry in models.items()]
    differences = [_difference(k, entry) for k, entry in (report.get("differences") or {}).items()]
    depth = (report.get("confounds") or {}).get("depth") or {}
    flagged = bool(depth.get("flagged")) and bool(depth.get("message"))
    outputs = set(job.outputs)
    plots = sorted(o.removeprefix("plot_") for o in outputs if o.startswith("plot_"))
    refit = report.get("refit_model_id") or job.model_id
    baseline = report.get("best_baseline")
    left_out = [
        (str(why), n)
        for why, n in (report.get("samples_left_out") or {}).items()
        if isinstance(n, int) and n > 0
    ]
    return CrossValidationView(
        report=dict(report),
        metrics=metrics,
        lower_is_better=frozenset(m for m in metrics if m not in MAXIMISED),
        rows=rows,
        differences=differences,
        depth_warning=str(depth["message"]) if flagged else None,
        depth_reason=None if depth.get("reason") is None else str(depth["reason"]),
        best_baseline=None if baseline is None else label(str(baseline)),
        left_out=left_out,
        plots=[(p, PLOT_CAPTIONS.get(p, p.replace("_", " "))) for p in plots],
        predictions="predictions" in outputs,
        refit_model_id=None if refit is None else str(refit),
    )


def _model_row(
    name: str, entry: Mapping[str, Any], metrics: list[str], best: Mapping[str, Any]
) -> ModelRow:
    """One model's row: its figures per metric, marked where it is the best model."""
    per_sample = entry.get("per_sample") or {}
    subject = entry.get("subject_weighted") or {}
    sd = (entry.get("sd") or {}).get("per_sample") or {}
    cells = [
        Cell(
            per_sample=_number(per_sample.get(m)),
            subject_weighted=_number(subject.get(m)),
            sd=_number(sd.get(m)),
            best=best.get(m) == name,
        )
        for m in metrics
    ]
    reads = entry.get("reads")
    return ModelRow(
        name=name,
        label=label(name),
        cells=cells,
        seconds=_number(entry.get("seconds")),
        reads=None if reads is None else str(reads),
    )


def _difference(key: str, entry: Mapping[str, Any]) -> Difference:
    """AAM's paired difference from the model ``key`` names (``aam-<model>``)."""
    other = key.removeprefix("aam-")
    better = entry.get("better")
    n = entry.get("n")
    return Difference(
        other=other,
        label=label(other),
        metric=str(entry.get("metric", "")),
        mean=_number(entry.get("mean")),
        low=_number(entry.get("low")),
        high=_number(entry.get("high")),
        n=n if isinstance(n, int) else None,
        better=better,
        verdict=_verdict(better, label(other)),
    )
