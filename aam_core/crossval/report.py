"""A cross-validation's figures in the service's terms (``report.cross_validation`` of a
cross_validate job, ``report.json`` of ``aam cross-validate``).

``models``: per model the mean over folds of each metric, per sample and with each subject
weighted once, their standard deviations, and the per-fold figures; ``best``: the best model
per metric (the mean per sample); ``differences``: AAM minus each other model in the primary
metric, fold by fold, with a bootstrap 95% interval; ``confounds.depth``: whether sequencing
depth alone predicts the target (:func:`aam_core.train.baselines.depth_confound` on the
cross-validated figures).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aam_core.crossval.engine import Result
from aam_core.crossval.models import DEPTH_FREE, READS
from aam_core.crossval.scoring import (
    LOWER_IS_BETTER,
    METRICS,
    PRIMARY,
    VIEWS,
    paired_difference,
)
from aam_core.io.files import to_jsonable


def _best(task: str, models: dict[str, Any]) -> dict[str, str]:
    """Per metric, the model with the best per-sample mean (the first of equals)."""
    best = {}
    for metric in METRICS[task]:
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        scored = [
            (sign * entry["per_sample"][metric], -k, name)
            for k, (name, entry) in enumerate(models.items())
            if entry["per_sample"].get(metric) is not None
        ]
        if scored:
            best[metric] = max(scored)[2]
    return best


def cv_report(result: Result, *, estimate: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report of a finished run (``result.summary`` set)."""
    assert result.summary is not None, "a stopped run has no summary"
    study, options = result.study, result.options
    task = study.target.task
    metric = PRIMARY[task]
    models = _models(result.summary["results"], options.first_seed)
    differences = _aam_differences(task, result.records)
    confounds = _confounds(result.summary["depth_check"])
    best_baseline = result.summary["best_baseline"]
    report = {
        "folds": options.folds,
        "repeats": options.repeats,
        "first_seed": options.first_seed,
        "n_samples": int(study.y.size),
        "n_groups": int(np.unique(study.groups).size),
        "group_column": study.group,
        "target": {"column": study.target.column, "task": task},
        "classes": list(study.classes) or None,
        "samples_left_out": study.notes,
        "primary_metric": metric,
        "models": models,
        "best": _best(task, models),
        "best_baseline": None if best_baseline is None else best_baseline["model"],
        "depth_free_baselines": [m for m in DEPTH_FREE if m in models],
        "differences": differences,
        "confounds": confounds,
        "fold_sizes": _fold_sizes(result),
        "estimate": estimate,
        "seconds": result.seconds,
        "folds_reused": result.reused,
        "refit_model_id": None,
    }
    return to_jsonable(report)


def _models(results: dict[str, Any], first_seed: int) -> dict[str, Any]:
    """Per model, its mean and sd over folds, pooled scores, figures per fold and seconds."""
    models: dict[str, Any] = {}
    for name, entry in results.items():
        per_fold = [
            {
                "repeat": r["seed"] - first_seed + 1,
                "seed": r["seed"],
                "fold": r["fold"],
                **r["per_sample"],
                "subject_weighted": r["subject_weighted"],
                "n_test": r["n_test"],
                "seconds": r["seconds"],
            }
            for r in entry["folds"]
        ]
        models[name] = {
            "per_sample": entry["mean"]["per_sample"],
            "subject_weighted": entry["mean"]["subject_weighted"],
            "sd": entry["sd"],
            "pooled": entry["pooled"],
            "per_fold": per_fold,
            "seconds": entry["seconds"],
            "reads": READS.get(name),
        }
    return models


def _aam_differences(task: str, records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """AAM minus each other model in the primary metric, with which side of zero it lies on
    (none when AAM did not run)."""
    metric = PRIMARY[task]
    differences = {}
    if "aam" in records:
        for name in records:
            if name == "aam":
                continue
            paired = paired_difference(task, records["aam"], records[name])
            first = paired["per_sample"]
            differences[f"aam-{name}"] = {
                "metric": metric,
                "mean": first["mean"],
                "low": first["low"],
                "high": first["high"],
                "n": first["n"],
                "better": _verdict(metric, first),
                **{v: paired[v] for v in VIEWS},
            }
    return differences


def _confounds(check: dict[str, Any] | None) -> dict[str, Any]:
    """The depth check's verdict per sample, in the report's terms (none without a check)."""
    confounds: dict[str, Any] = {}
    if check is not None:
        verdict = check["verdict"]["per_sample"]
        confounds["depth"] = {
            "metric": check["metric"],
            "value": None if verdict is None else verdict["depth"],
            "flagged": check["flagged"],
            "message": check["message"],
            "reason": None if verdict is None else verdict["reason"],
            "subject_weighted": check["verdict"]["subject_weighted"],
        }
    return confounds


def _fold_sizes(result: Result) -> list[dict[str, Any]]:
    first = result.options.first_seed
    return [
        {
            "repeat": f.seed - first + 1,
            "fold": f.index,
            "n_train": int(f.train.size),
            "n_test": int(f.test.size),
            "depth": f.depth,
            "n_kept": int(f.kept.size),
        }
        for f in result.folds
    ]


def _verdict(metric: str, interval: dict[str, Any]) -> str | None:
    """ "aam", "other" or "neither": which side of zero the whole interval lies on."""
    if interval.get("mean") is None:
        return None
    aam_lower = interval["below_zero"]
    aam_higher = interval["above_zero"]
    if metric in LOWER_IS_BETTER:
        return "aam" if aam_lower else "other" if aam_higher else "neither"
    return "aam" if aam_higher else "other" if aam_lower else "neither"


def card_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a refitted model's card cites of its cross-validation: the design, each model's
    mean figures, AAM's paired differences and the depth verdict."""
    depth = report["confounds"].get("depth") or {}
    return {
        "folds": report["folds"],
        "repeats": report["repeats"],
        "n_samples": report["n_samples"],
        "n_groups": report["n_groups"],
        "group_column": report["group_column"],
        "primary_metric": report["primary_metric"],
        "models": {
            name: {"per_sample": entry["per_sample"], "subject_weighted": entry["subject_weighted"]}
            for name, entry in report["models"].items()
        },
        "differences": {
            name: {k: d[k] for k in ("metric", "mean", "low", "high", "better")}
            for name, d in report["differences"].items()
        },
        "depth_confound": {"flagged": depth.get("flagged"), "message": depth.get("message")},
    }
