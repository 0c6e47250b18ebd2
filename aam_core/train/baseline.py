"""Random-forest baseline on the transformer's own split and inputs (docs/design.md section
11.2), and the constant one (the train split's mean or class shares).

On real age data a random forest is hard to beat, so every training run fits one on the same
train/validation rows and the same rarefied relative abundances, and scores it with the same
metric accumulators as the model: the two sets of numbers are directly comparable.

``tune=True`` chooses ``max_features`` and ``min_samples_leaf`` from :data:`GRID` by the
forest's out-of-bag predictions on the train rows: the validation rows stay unseen, so its
validation metrics are as honest as the model's.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from aam_core.io.types import FeatureTable
from aam_core.train.metrics import ClassificationMetrics, RegressionMetrics

Task = Literal["regression", "classification"]
TASKS: tuple[str, ...] = ("regression", "classification")
GRID: tuple[tuple[str | float, int], ...] = tuple(
    (features, leaf) for features in ("sqrt", 0.3, 1.0) for leaf in (1, 3, 5)
)  # (max_features, min_samples_leaf)
TUNING_TREES = 100  # per grid point: enough for a stable out-of-bag error


def relative_abundance(table: FeatureTable) -> sp.csr_matrix:
    """``count / depth`` per sample, CSR ``float64 [n_samples, n_features]``; an empty sample
    stays a row of zeros rather than becoming NaN."""
    counts = table.counts.tocsr().astype(np.float64)
    depths = np.asarray(counts.sum(axis=1)).ravel()  # [n_samples]
    scale = np.divide(1.0, depths, out=np.zeros_like(depths), where=depths > 0)
    return sp.csr_matrix(sp.diags(scale) @ counts)


@dataclass(frozen=True, eq=False)
class BaselineResult:
    task: Task
    metrics: dict[str, float]  # validation; {} when there are no validation rows
    train_metrics: dict[str, float]  # in-sample, so optimistic: a forest nearly memorises
    predictions: np.ndarray  # regression float [n_val] or [n_val, k]; classification int [n_val]
    probabilities: np.ndarray | None  # classification float [n_val, K]; None for regression
    n_estimators: int
    seconds: float  # fit plus predict, wall clock
    params: dict[str, Any]  # max_features, min_samples_leaf (chosen when tuned)
    forest: Any = None  # the fitted scikit-learn forest (train rows)


def _rows(rows: np.ndarray, n: int, name: str) -> np.ndarray:
    out = np.asarray(rows).ravel()
    if out.size == 0:
        return out.astype(np.int64)
    if not np.issubdtype(out.dtype, np.integer):
        raise ValueError(f"{name} must be integer row indices, got dtype {out.dtype}")
    out = out.astype(np.int64)
    bad = out[(out < 0) | (out >= n)]
    if bad.size:
        raise ValueError(
            f"{name} must index the {n} feature rows, got out-of-range rows {bad[:5].tolist()}"
        )
    return out


def check_split(
    n: int,
    targets: np.ndarray,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    task: str,
    n_classes: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a baseline's targets and split over ``n`` feature rows at the boundary (the
    forest's and the depth model's alike); returns (targets, train_rows, validation_rows) as
    arrays."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "classification" and n_classes is None:
        raise ValueError("n_classes is required for classification")
    if n_classes is not None and n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    y = np.asarray(targets)
    if y.shape[0] != n:
        raise ValueError(f"number of targets ({y.shape[0]}) must match feature rows ({n})")
    train = _rows(train_rows, n, "train_rows")
    val = _rows(validation_rows, n, "validation_rows")
    if train.size == 0:
        raise ValueError("train_rows is empty: the baseline needs at least one training sample")
    shared = np.intersect1d(train, val)
    if shared.size:  # a sample on both sides would inflate the validation metrics
        raise ValueError(
            f"train_rows and validation_rows overlap in {shared.size} rows, "
            f"e.g. {shared[:5].tolist()}"
        )
    used = y[np.concatenate([train, val])].astype(np.float64)
    n_bad = int((~np.isfinite(used)).sum())
    if n_bad:
        raise ValueError(f"targets hold {n_bad} missing or non-finite values in the used rows")
    if task == "classification":
        assert n_classes is not None
        if np.any(used != np.round(used)) or np.any((used < 0) | (used >= n_classes)):
            raise ValueError(
                f"classification targets must be class indices in [0, {n_classes - 1}], "
                f"got values in [{used.min():g}, {used.max():g}]"
            )
        if y.ndim != 1:
            raise ValueError(f"classification targets must be 1-D, got shape {y.shape}")
    return y, train, val


def _regression(
    x: sp.csr_matrix, y: np.ndarray, train: np.ndarray, val: np.ndarray, seed: int, **rf: Any
) -> tuple[dict[str, float], dict[str, float], np.ndarray, Any]:
    y = y.astype(np.float64)
    flat = y.ndim == 2 and y.shape[1] == 1  # sklearn warns on a column vector; fit it as 1-D
    fit_y = y.ravel() if flat else y  # [n] or [n, k]
    forest = RandomForestRegressor(random_state=seed, **rf).fit(x[train], fit_y[train])

    def predict(rows: np.ndarray) -> np.ndarray:
        if rows.size == 0:
            return np.empty((0, *y.shape[1:]), dtype=np.float64)
        p = np.asarray(forest.predict(x[rows]), dtype=np.float64)
        return p.reshape(rows.size, *y.shape[1:])

    def score(rows: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
        metrics = RegressionMetrics()
        if rows.size:
            metrics.update(predicted, y[rows])
        return metrics.compute()

    val_pred = predict(val)
    return score(val, val_pred), score(train, predict(train)), val_pred, forest


def _classification(
    x: sp.csr_matrix,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    n_classes: int,
    seed: int,
    **rf: Any,
) -> tuple[dict[str, float], dict[str, float], np.ndarray, Any]:
    labels = np.round(y.astype(np.float64)).astype(np.int64)  # [n]
    forest = RandomForestClassifier(random_state=seed, **rf).fit(x[train], labels[train])

    def proba(rows: np.ndarray) -> np.ndarray:
        return class_probabilities(forest, x[rows], n_classes)

    def score(rows: np.ndarray, prob: np.ndarray) -> dict[str, float]:
        metrics = ClassificationMetrics(n_classes)
        if rows.size:
            metrics.update(prob, labels[rows])
        return metrics.compute()

    val_prob = proba(val)
    return score(val, val_prob), score(train, proba(train)), val_prob, forest


def class_probabilities(model: Any, x: Any, n_classes: int) -> np.ndarray:
    """``model.predict_proba(x)`` placed among all K classes, ``[n, K]``: a fitted classifier
    knows only the classes of its train rows (a class it never saw gets 0)."""
    out = np.zeros((x.shape[0], n_classes), dtype=np.float64)  # [n, K]
    if x.shape[0]:
        out[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(x)
    return out


def fit_baseline(
    features: sp.csr_matrix,
    targets: np.ndarray,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    *,
    task: Task,
    n_classes: int | None = None,
    seed: int = 0,
    n_estimators: int = 500,
    n_jobs: int | None = None,
    tune: bool = False,
) -> BaselineResult:
    """Fit a seeded random forest on ``train_rows`` (its settings chosen from :data:`GRID` by
    out-of-bag error with ``tune``) and score it on ``validation_rows``.

    ``features`` are the rarefied relative abundances (:func:`relative_abundance`).
    Regression ``targets`` are in original units (``[n]`` or ``[n, k]``), never standardised,
    so the metrics read in the same units as the model's de-standardised ones. Classification
    ``targets`` are class indices ``0..n_classes-1``.
    """
    x = sp.csr_matrix(features)
    if n_estimators < 1:
        raise ValueError(f"n_estimators must be >= 1, got {n_estimators}")
    y, train, val = check_split(x.shape[0], targets, train_rows, validation_rows, task, n_classes)
    start = time.perf_counter()
    params = _tuned(x, y, train, task, seed, n_jobs) if tune else {}
    rf: dict[str, Any] = {"n_estimators": n_estimators, "n_jobs": n_jobs, **params}
    probabilities: np.ndarray | None = None
    if task == "regression":
        metrics, train_metrics, predictions, forest = _regression(x, y, train, val, seed, **rf)
    else:
        assert n_classes is not None
        metrics, train_metrics, probabilities, forest = _classification(
            x, y, train, val, n_classes, seed, **rf
        )
        # argmax, as ClassificationMetrics does, so predictions and accuracy always agree
        predictions = probabilities.argmax(axis=1).astype(np.int64)  # [n_val]
    return BaselineResult(
        task=task,
        metrics=metrics,
        train_metrics=train_metrics,
        predictions=predictions,
        probabilities=probabilities,
        n_estimators=n_estimators,
        seconds=time.perf_counter() - start,
        params=params,
        forest=forest,
    )


def forest_class(task: str) -> Any:
    return RandomForestRegressor if task == "regression" else RandomForestClassifier


def _tuned(
    x: sp.csr_matrix, y: np.ndarray, train: np.ndarray, task: str, seed: int, n_jobs: int | None
) -> dict[str, Any]:
    """The grid point whose out-of-bag predictions on the train rows score best: mean absolute
    error (regression) or log loss (classification)."""
    scores = []
    target = y[train].astype(np.float64) if task == "regression" else np.round(y[train])
    if task == "regression" and target.ndim == 2 and target.shape[1] == 1:
        target = target.ravel()
    for max_features, leaf in GRID:
        forest = forest_class(task)(
            n_estimators=TUNING_TREES,
            max_features=max_features,
            min_samples_leaf=leaf,
            oob_score=True,
            random_state=seed,
            n_jobs=n_jobs,
        )
        with warnings.catch_warnings():  # rows never out of bag: NaN, left out below
            warnings.simplefilter("ignore", UserWarning)
            forest.fit(x[train], target)
        if task == "regression":
            oob = np.asarray(forest.oob_prediction_).reshape(target.shape)
            error = np.abs(oob - target)
            scores.append(float(np.nanmean(error)))
        else:
            proba = np.asarray(forest.oob_decision_function_)  # [n, seen classes]
            index = np.searchsorted(forest.classes_, target)
            picked = proba[np.arange(target.size), index]
            scores.append(float(np.nanmean(-np.log(np.clip(picked, 1e-6, 1.0)))))
    max_features, leaf = GRID[int(np.nanargmin(scores))]
    return {"max_features": max_features, "min_samples_leaf": leaf}


def constant_baseline(
    targets: np.ndarray,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    *,
    n_classes: int | None = None,
) -> dict[str, Any]:
    """The floor any model must clear: every validation sample gets the train split's mean
    (regression) or its class shares as probabilities (classification, so its accuracy is the
    majority class's share and its ROC AUC 0.5), scored with the model's accumulators.
    ``{"prediction": mean or class shares, "metrics": validation metrics}``."""
    y = np.asarray(targets)
    train, val = np.asarray(train_rows), np.asarray(validation_rows)
    if train.size == 0:
        raise ValueError("train_rows is empty: the constant baseline needs training samples")
    if n_classes is None:
        mean = y[train].astype(np.float64).mean(axis=0)  # [] or [k]
        regression = RegressionMetrics()
        if val.size:
            regression.update(np.broadcast_to(mean, y[val].shape), y[val].astype(np.float64))
        metrics, prediction = regression.compute(), mean.tolist()
    else:
        labels = np.round(y.astype(np.float64)).astype(np.int64)
        shares = np.bincount(labels[train], minlength=n_classes) / train.size  # [K]
        classification = ClassificationMetrics(n_classes)
        if val.size:
            classification.update(np.tile(shares, (val.size, 1)), labels[val])
        metrics, prediction = classification.compute(), shares.tolist()
    return {
        "prediction": prediction,
        "metrics": {k: finite_or_none(v) for k, v in metrics.items()},
    }


def finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def to_dict(result: BaselineResult) -> dict[str, Any]:
    """JSON-ready summary (no per-sample arrays); NaN metrics, such as ROC AUC with a class
    missing from the validation rows, become ``None``."""
    return {
        "task": result.task,
        "metrics": {k: finite_or_none(v) for k, v in result.metrics.items()},
        "train_metrics": {k: finite_or_none(v) for k, v in result.train_metrics.items()},
        "n_estimators": result.n_estimators,
        "params": dict(result.params),
        "seconds": result.seconds,
    }
