"""Scores of a cross-validation: metrics per sample and with each subject (group) weighted
once, summaries over folds, paired bootstrap intervals, the best baseline and the depth check.

Pure functions of arrays and fold records, so that every number a report holds can be checked
by hand. The depth verdict is the product's one rule (:func:`aam_core.train.baselines.
depth_confound`), applied to the cross-validated figures of the depth-only model and AAM.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import f1_score, roc_auc_score

from aam_core.io.predictions import PREDICTION, prediction_frame
from aam_core.train.baselines import depth_confound

PRIMARY = {"regression": "mae", "classification": "roc_auc"}
LOWER_IS_BETTER = frozenset({"mae", "rmse"})
METRICS = {
    "regression": ("mae", "rmse", "r2"),
    "classification": ("accuracy", "macro_f1", "roc_auc"),
}
VIEWS = ("per_sample", "subject_weighted")


def subject_weights(groups: Sequence[str] | np.ndarray) -> np.ndarray:
    """``1 / (samples of the sample's group)``: each group then weighs as much as one sample.

    >>> subject_weights(["a", "a", "b"]).tolist()
    [0.5, 0.5, 1.0]
    """
    _, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def regression_metrics(true: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> dict:
    """Weighted MAE, RMSE and R² (R² against the weighted mean of ``true``; NaN when every
    true value is the same)."""
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    y, error = np.asarray(true, np.float64), np.asarray(predicted, np.float64) - true
    squared = float(np.sum(w * error**2))
    spread = float(np.sum(w * (y - np.sum(w * y)) ** 2))
    return {
        "mae": float(np.sum(w * np.abs(error))),
        "rmse": math.sqrt(squared),
        "r2": 1.0 - squared / spread if spread > 0 else math.nan,
    }


def classification_metrics(
    true: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
    weights: np.ndarray,
) -> dict:
    """Weighted accuracy, macro-F1 (over the classes present in ``true`` or ``labels``) and ROC
    AUC: the positive (second) class's probability for two classes, one-vs-rest macro for
    more; NaN when ``true`` lacks a class the AUC needs."""
    true, labels = np.asarray(true, dtype=object), np.asarray(labels, dtype=object)
    w = np.asarray(weights, dtype=np.float64)
    prob = np.asarray(probabilities, dtype=np.float64)  # [n, K]
    auc = math.nan  # a fold holding one class only has no AUC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # the NaN says it
        try:
            if len(classes) == 2:
                auc = float(roc_auc_score(true == classes[1], prob[:, 1], sample_weight=w))
            else:
                auc = float(
                    roc_auc_score(
                        true, prob, multi_class="ovr", labels=list(classes), sample_weight=w
                    )
                )
        except ValueError:  # one-vs-rest with a class absent from ``true``
            pass
    return {
        "accuracy": float(np.sum(w * (true == labels)) / np.sum(w)),
        "macro_f1": float(
            f1_score(true, labels, average="macro", sample_weight=w, zero_division=0)
        ),
        "roc_auc": auc,
    }


def score(
    task: str,
    true: np.ndarray,
    groups: np.ndarray,
    *,
    values: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    classes: Sequence[str] = (),
) -> dict[str, dict[str, float]]:
    """Metrics per sample and with each group weighted once:
    ``{"per_sample": {...}, "subject_weighted": {...}}``."""
    out = {}
    for view, weights in zip(VIEWS, (np.ones(len(true)), subject_weights(groups)), strict=True):
        if task == "regression":
            assert values is not None
            out[view] = regression_metrics(true, values, weights)
        else:
            assert labels is not None and probabilities is not None
            out[view] = classification_metrics(true, labels, probabilities, classes, weights)
    return out


def mean_sd(records: Sequence[Mapping[str, Any]], task: str) -> tuple[dict, dict]:
    """Mean and sample standard deviation over fold records, per view and metric (NaN folds,
    such as a one-class fold's AUC, left out)."""
    means: dict[str, dict[str, float | None]] = {}
    sds: dict[str, dict[str, float | None]] = {}
    for view in VIEWS:
        means[view], sds[view] = {}, {}
        for metric in METRICS[task]:
            values = np.array([r[view][metric] for r in records], dtype=np.float64)
            values = values[np.isfinite(values)]
            means[view][metric] = float(values.mean()) if values.size else None
            sds[view][metric] = float(values.std(ddof=1)) if values.size > 1 else None
    return means, sds


def bootstrap_interval(
    differences: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Percentile bootstrap interval of the mean of paired per-fold differences: resample the
    differences with replacement ``n_resamples`` times (seeded). Non-finite differences are
    left out. ``below_zero``/``above_zero``: the whole interval lies on that side of 0.

    Folds share training samples and seeds reuse the same samples, so the differences are not
    independent and the interval is narrower than a fully honest one; it is still the paired
    comparison on identical folds the benchmark is for."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"n": 0, "mean": None, "low": None, "high": None}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_resamples, d.size))].mean(axis=1)  # [n_resamples]
    tail = (1.0 - level) / 2 * 100
    low, high = (float(v) for v in np.percentile(means, [tail, 100 - tail]))
    return {
        "n": int(d.size),
        "mean": float(d.mean()),
        "low": low,
        "high": high,
        "below_zero": high < 0,
        "above_zero": low > 0,
    }


def fold_predictions(
    model: str,
    seed: int,
    fold: int,
    sample_ids: Sequence[str],
    groups: np.ndarray,
    true: np.ndarray,
    *,
    values: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    classes: Sequence[str] = (),
) -> pd.DataFrame:
    """One outer test fold's predictions, one row per sample: the model, seed and fold, then
    the prediction table's columns (:func:`aam_core.io.predictions.prediction_frame`) and
    the sample's group."""
    frame = prediction_frame(
        sample_ids,
        true=true,
        values=values,
        labels=labels,
        probabilities=probabilities,
        classes=classes,
    )
    frame.insert(0, "fold", fold)
    frame.insert(0, "seed", seed)
    frame.insert(0, "model", model)
    frame["group"] = list(groups)
    return frame


def score_frame(frame: pd.DataFrame, task: str, classes: Sequence[str]) -> dict:
    """:func:`score` of rows of predictions.tsv (subject weights within these rows)."""
    groups = frame["group"].to_numpy()
    if task == "regression":
        return score(
            task, frame["true"].to_numpy(float), groups, values=frame[PREDICTION].to_numpy(float)
        )
    prob = frame[[f"prob_{c}" for c in classes]].to_numpy(np.float64)
    true, labels = frame["true"].astype(str).to_numpy(), frame[PREDICTION].astype(str).to_numpy()
    return score(task, true, groups, labels=labels, probabilities=prob, classes=classes)


def paired_difference(
    task: str,
    model: Sequence[Mapping[str, Any]],
    reference: Sequence[Mapping[str, Any]],
    *,
    n_resamples: int = 10_000,
) -> dict[str, Any]:
    """Per view, the bootstrap interval of ``model`` minus ``reference`` in the primary metric,
    fold by fold (the two models' records of the same folds, in the same order)."""
    metric = PRIMARY[task]
    pairs = list(zip(model, reference, strict=True))
    assert all((a["seed"], a["fold"]) == (b["seed"], b["fold"]) for a, b in pairs)
    return {
        view: bootstrap_interval(
            [a[view][metric] - b[view][metric] for a, b in pairs], n_resamples=n_resamples
        )
        for view in VIEWS
    }


def best_model(task: str, results: Mapping[str, Any], candidates: Sequence[str]) -> str | None:
    """Of ``candidates`` that were run, the one with the best per-sample mean of the primary
    metric over folds (lowest MAE, highest AUC; the first of equals); None when none has one."""
    metric = PRIMARY[task]
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    scored = [
        (sign * results[m]["mean"]["per_sample"][metric], -k, m)
        for k, m in enumerate(candidates)
        if m in results and results[m]["mean"]["per_sample"][metric] is not None
    ]
    return max(scored)[2] if scored else None


def depth_check(
    task: str,
    results: Mapping[str, Any],
    model: str = "depth",
    *,
    against: str = "aam",
    target: str | None = None,
) -> dict | None:
    """How far the depth model (log reads alone) predicts the target, per view: its mean
    primary metric over folds, and the verdict of :func:`depth_confound` on its mean of the
    judged metric (R², ROC AUC) beside ``against``'s (when it ran). ``flagged``: the
    per-sample verdict. None when the depth model did not run."""
    if model not in results:
        return None
    means = results[model]["mean"]
    other = results.get(against, {}).get("mean")
    verdicts = {
        view: depth_confound(
            means[view],
            None if other is None else other[view],
            task,
            target=target,
            scope="cross-validated",
        )
        for view in VIEWS
    }
    first = verdicts["per_sample"]
    return {
        "model": model,
        "against": against if other is not None else None,
        "primary_metric": PRIMARY[task],
        "primary_mean": {view: means[view][PRIMARY[task]] for view in VIEWS},
        "metric": None if first is None else first["metric"],
        "verdict": verdicts,
        "flagged": bool(first and first["confounded"]),
        "message": None if first is None else first["message"],
    }


def summarise(
    task: str,
    classes: Sequence[str],
    records: Mapping[str, list[dict[str, Any]]],
    predictions: pd.DataFrame,
    *,
    reference: str = "forest",
    baselines: Sequence[str] = (),
    contenders: Sequence[str] = (),
    depth_model: str = "depth",
    pretrained: Sequence[str] = (),
    scratch: str = "aam",
    n_resamples: int = 10_000,
    target: str | None = None,
) -> dict[str, Any]:
    """Per model (``results``): fold records, mean and sd over folds, pooled out-of-fold scores
    per seed and summed seconds. ``differences``: the paired differences of the primary metric
    of every model against ``reference``, and of each of ``contenders`` against the best of
    ``baselines`` (``best_baseline``) and against ``depth_model``, and of each of ``pretrained``
    against ``scratch`` (the same model trained without pretraining). ``depth_check``: see
    :func:`depth_check`."""
    results = {
        model: _model_result(task, classes, folds, predictions[predictions["model"] == model])
        for model, folds in records.items()
    }

    def paired(model: str, other: str) -> dict[str, Any]:
        return paired_difference(task, records[model], records[other], n_resamples=n_resamples)

    differences: dict[str, Any] = {}
    if reference in records:
        for model in records:
            if model != reference:
                differences[f"{model}-{reference}"] = paired(model, reference)
    best = best_model(task, results, baselines)
    for model in (m for m in contenders if m in records):
        if best is not None:
            differences[f"{model}-best_baseline"] = {"baseline": best, **paired(model, best)}
        if depth_model in records:
            differences[f"{model}-{depth_model}"] = paired(model, depth_model)
    for model in (m for m in pretrained if m in records and scratch in records):
        differences[f"{model}-{scratch}"] = paired(model, scratch)
    among = [m for m in baselines if m in records]
    return {
        "results": results,
        "differences": differences,
        "best_baseline": None if best is None else _best_baseline(task, results, best, among),
        "depth_check": depth_check(task, results, depth_model, target=target),
    }


def _model_result(
    task: str, classes: Sequence[str], folds: list[dict[str, Any]], rows: pd.DataFrame
) -> dict[str, Any]:
    """One model's fold records, their mean and sd, its out-of-fold ``rows`` scored per seed,
    and its seconds over all folds."""
    means, sds = mean_sd(folds, task)
    pooled = [
        {"seed": int(seed), **score_frame(seed_rows, task, classes)}
        for seed, seed_rows in rows.groupby("seed")
    ]
    seconds = sum(r["seconds"] for r in folds)
    return {"mean": means, "sd": sds, "pooled": pooled, "seconds": seconds, "folds": folds}


def _best_baseline(
    task: str, results: Mapping[str, Any], best: str, among: list[str]
) -> dict[str, Any]:
    """Which baseline the contenders were compared with, and why."""
    metric = PRIMARY[task]
    return {
        "model": best,
        "among": among,
        "chosen_by": f"best per-sample mean {metric} over folds",
        "mean": {view: results[best]["mean"][view][metric] for view in VIEWS},
    }
