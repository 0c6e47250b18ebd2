"""The baselines a training run is judged against, on its own split and inputs (docs/design.md
section 11): a random forest, a constant, and sequencing depth alone with its verdict.

On real age data a random forest is hard to beat, so every training run fits one on the same
train/validation rows and the same rarefied relative abundances, and scores it with the same
metric accumulators as the model: the two sets of numbers are directly comparable.
``tune=True`` chooses ``max_features`` and ``min_samples_leaf`` from :data:`GRID` by the
forest's out-of-bag predictions on the train rows: the validation rows stay unseen, so its
validation metrics are as honest as the model's. The constant baseline predicts the train
split's mean or class shares.

Does sequencing depth alone predict the target? Labs often sequence cases and controls, or one
site and another, in separate runs, and runs differ in depth. Then the number of reads per
sample predicts the label, and a model that can read depth (a random forest on raw relative
abundances: a deeper sample shows more rare ASVs) scores well for a reason that will not carry
over to samples sequenced otherwise. On the public ibd2538 study a logistic regression on
log(reads per sample) alone reaches ROC AUC 0.988 on held-out subjects. AAM rarefies every
sample to one depth, so it cannot read the artefact, but the lab still has to know its labels
carry it. :func:`fit_depth_baseline` fits that depth-only model on a run's own split and scores
it with the model's own metric accumulators, so its figures sit beside the model's and the
other baselines'; :func:`depth_confound` judges them. Both take arrays and return plain data,
so a cross-validation engine can call them per fold.

:func:`run_baseline` is the forest alone on a run's preprocessing and split (``aam baseline``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge

from aam_core.io import Inputs
from aam_core.io.errors import InputError
from aam_core.io.types import FeatureTable
from aam_core.plan.config import RunConfig
from aam_core.plan.targets import TargetSpec
from aam_core.train.metrics import ClassificationMetrics, RegressionMetrics
from aam_core.train.prepare import Split, prepare_data, read_split_tsv

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


# -- sequencing depth alone ------------------------------------------------------------

# A one-feature ridge barely shrinks: on the standardised feature the slope is
# sum(z * (y - mean)) / (n_train + alpha), i.e. least squares times n / (n + 1). The penalty
# only keeps the fit defined when every train sample has the same depth (the feature is then
# all zeros and the model the train mean).
RIDGE_ALPHA = 1.0
# Depth alone at or above these is a confound whatever the model does: ROC AUC 0.75 is a
# usable classifier, R² 0.25 explains a quarter of the target's variance.
CONFOUNDED_ROC_AUC = 0.75
CONFOUNDED_R2 = 0.25
# Depth within this of the model on the judged metric means the model adds little beyond what
# depth already says...
NEAR_MODEL = 0.05
# ...but only once depth itself is clearly better than chance (ROC AUC 0.5, R² 0): otherwise a
# useless model and a useless depth model are "within 0.05" of each other and no confound is
# shown.
ABOVE_CHANCE_ROC_AUC = 0.6
ABOVE_CHANCE_R2 = 0.05
FEATURE = "log(reads per sample), standardised on the train rows"
_JUDGED: dict[str, tuple[str, str, float, float]] = {  # task -> metric, its name, thresholds
    "classification": ("roc_auc", "ROC AUC", CONFOUNDED_ROC_AUC, ABOVE_CHANCE_ROC_AUC),
    "regression": ("r2", "R²", CONFOUNDED_R2, ABOVE_CHANCE_R2),
}


def log_depth_feature(
    depths: np.ndarray, train_rows: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """``(z [n], mean, std)``: log(reads) standardised by the train rows' mean and std. A train
    split of one depth has std 0 and keeps scale 1, so z is 0 there rather than NaN."""
    with np.errstate(divide="ignore"):  # rows outside the split may be empty: never read
        log_depth = np.log(depths.astype(np.float64))  # [n]
    mean = float(log_depth[train_rows].mean())
    std = float(log_depth[train_rows].std())
    scale = std if std > 0 else 1.0
    return (log_depth - mean) / scale, mean, std


def fit_depth_baseline(
    depths: np.ndarray,
    targets: np.ndarray,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    *,
    task: Task,
    n_classes: int | None = None,
) -> dict[str, Any]:
    """Fit the depth-only model on ``train_rows`` and score it on ``validation_rows``.

    ``depths`` are the raw reads per sample, before rarefaction (rarefied samples all have one
    depth, so the artefact is gone from them). The one feature is :func:`log_depth_feature`;
    regression fits a :class:`~sklearn.linear_model.Ridge` (alpha :data:`RIDGE_ALPHA`) to the
    ``targets`` in original units (``[n]`` or ``[n, k]``), classification a multinomial
    :class:`~sklearn.linear_model.LogisticRegression` (default L2, C 1) to class indices
    ``0..n_classes-1``. Scored with :class:`RegressionMetrics` / :class:`ClassificationMetrics`
    as the model is.

    Returns ``task``, ``feature``, ``metrics`` (validation; NaN, e.g. ROC AUC with a class
    missing from the validation rows, is ``None``; ``{}`` without validation rows),
    ``train_metrics``, ``coefficients`` (``log_depth_mean``, ``log_depth_std``, and per output
    or class ``intercept`` and ``slope`` per standard deviation of log depth), ``predictions``
    (validation, split order: regression float ``[n_val]`` or ``[n_val, k]``, classification
    the argmax class ``int [n_val]``) and ``probabilities`` (classification ``[n_val, K]``, else
    ``None``).
    """
    d = np.asarray(depths)
    if d.ndim != 1:
        raise ValueError(f"depths must be 1-D reads per sample, got shape {d.shape}")
    y, train, val = check_split(d.size, targets, train_rows, validation_rows, task, n_classes)
    used = d[np.concatenate([train, val])].astype(np.float64)
    bad = int((~np.isfinite(used) | (used <= 0)).sum())
    if bad:
        raise ValueError(
            f"depths must be positive read counts, got {bad} used rows with none (or a "
            "non-finite value): log depth is undefined there"
        )
    z, mean, std = log_depth_feature(d, train)  # [n]
    x = z[:, None]  # [n, 1]
    if task == "regression":
        fitted = _fit_depth_regression(x, y, train, val)
    else:
        assert n_classes is not None
        fitted = _fit_depth_classes(x, y, train, val, n_classes)
    score, predictions, probabilities, coefficients = fitted
    return {
        "task": task,
        "feature": FEATURE,
        "metrics": {k: finite_or_none(v) for k, v in score(val).items()},
        "train_metrics": {k: finite_or_none(v) for k, v in score(train).items()},
        "coefficients": {"log_depth_mean": mean, "log_depth_std": std, **coefficients},
        "predictions": predictions,
        "probabilities": probabilities,
    }


# A fitted depth-only model: (rows -> metrics, validation predictions, validation
# probabilities or None, its coefficients beside the feature's mean and std)
DepthFit = tuple[
    Callable[[np.ndarray], dict[str, float]], np.ndarray, np.ndarray | None, dict[str, Any]
]


def _fit_depth_regression(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray
) -> DepthFit:
    """Ridge on the train rows' targets in original units (``[n]`` or ``[n, k]``)."""
    values = y.astype(np.float64)  # [n] or [n, k]
    flat = values.ndim == 2 and values.shape[1] == 1  # fit a column vector as 1-D
    fit_y = values.ravel() if flat else values
    ridge = Ridge(alpha=RIDGE_ALPHA).fit(x[train], fit_y[train])
    coefficients = {
        "intercept": np.atleast_1d(ridge.intercept_).astype(float).tolist(),
        "slope": np.atleast_1d(ridge.coef_).astype(float).ravel().tolist(),
    }

    def predict(rows: np.ndarray) -> np.ndarray:
        if rows.size == 0:  # scikit-learn refuses to predict no rows
            return np.empty((0, *values.shape[1:]), dtype=np.float64)
        p = np.asarray(ridge.predict(x[rows]), dtype=np.float64)
        return p.reshape(rows.size, *values.shape[1:])  # [n_rows] or [n_rows, k]

    def score(rows: np.ndarray) -> dict[str, float]:
        metrics = RegressionMetrics()
        if rows.size:
            metrics.update(predict(rows), values[rows])
        return metrics.compute()

    return score, predict(val), None, coefficients


def _fit_depth_classes(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, n_classes: int
) -> DepthFit:
    """Logistic regression on the train rows' class indices."""
    labels = np.round(y.astype(np.float64)).astype(np.int64)  # [n]
    proba, coefficients = _fit_classes(x, labels, train, n_classes)

    def score(rows: np.ndarray) -> dict[str, float]:
        metrics = ClassificationMetrics(n_classes)
        if rows.size:
            metrics.update(proba(rows), labels[rows])
        return metrics.compute()

    probabilities = proba(val)  # [n_val, K]
    # argmax, as ClassificationMetrics does, so predictions and accuracy agree
    predictions = probabilities.argmax(axis=1).astype(np.int64)  # [n_val]
    return score, predictions, probabilities, coefficients


def _fit_classes(
    x: np.ndarray, labels: np.ndarray, train: np.ndarray, n_classes: int
) -> tuple[Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """(rows -> probabilities ``[n_rows, K]``, coefficients) of a logistic regression on the
    train rows; its columns are placed among all K classes, as the forest's are."""
    seen = np.unique(labels[train])  # [C] classes present in the train rows
    if seen.size == 1:  # LogisticRegression refuses one class; depth cannot tell it apart
        only = int(seen[0])

        def constant(rows: np.ndarray) -> np.ndarray:
            out = np.zeros((rows.size, n_classes), dtype=np.float64)  # [n_rows, K]
            out[:, only] = 1.0
            return out

        return constant, {"classes": [only], "intercept": [], "slope": []}
    model = LogisticRegression().fit(x[train], labels[train])  # multinomial for K > 2 (lbfgs)
    columns = np.asarray(model.classes_, dtype=np.int64)

    def proba(rows: np.ndarray) -> np.ndarray:
        return class_probabilities(model, x[rows], n_classes)

    # Binary: one row, the log-odds of classes_[1]; K > 2: one row per class.
    return proba, {
        "classes": columns.tolist(),
        "intercept": np.atleast_1d(model.intercept_).astype(float).tolist(),
        "slope": np.asarray(model.coef_, dtype=np.float64).ravel().tolist(),
    }


def depth_confound(
    depth_metrics: Mapping[str, Any],
    model_metrics: Mapping[str, Any] | None,
    task: str,
    *,
    target: str | None = None,
    scope: str = "validation",
) -> dict[str, Any] | None:
    """The verdict on the depth-only model's ``depth_metrics`` beside the model's, both on
    ``scope``'s samples (the validation split; "cross-validated" for out-of-fold figures).

    The judged metric is ROC AUC for classification and R² for regression. The labels are
    flagged as following depth when either

    - depth alone reaches :data:`CONFOUNDED_ROC_AUC` (0.75) / :data:`CONFOUNDED_R2` (0.25) or
      more, or
    - depth alone comes within :data:`NEAR_MODEL` (0.05) of the model, or beats it, while
      itself clearly better than chance: ROC AUC above :data:`ABOVE_CHANCE_ROC_AUC` (0.6), R²
      above :data:`ABOVE_CHANCE_R2` (0.05). Without that floor a useless model beside a
      useless depth model would be "within 0.05" and a confound claimed where there is none.

    Returns ``{"confounded", "metric", "depth", "model", "reason", "message"}``: ``reason``
    says which rule decided, either way; ``message`` is the warning for people (``None`` when
    not confounded). ``None`` when the depth model has no figure on the metric (no validation
    rows, or a class missing from them), so nothing can be judged. ``target`` names the
    target in the message.
    """
    if task not in _JUDGED:
        raise ValueError(f"task must be one of {tuple(_JUDGED)}, got {task!r}")
    metric, title, confounded_at, chance = _JUDGED[task]
    depth = _finite(depth_metrics.get(metric))
    if depth is None:
        return None
    model = _finite((model_metrics or {}).get(metric))
    confounded, reason = _judged(depth, model, title, confounded_at, chance)
    message = None
    if confounded:
        what = "the target" if target is None else repr(target)
        versus = "" if model is None else f" (this model {model:.2f})"
        follows = "labels follow" if task == "classification" else "target follows"
        message = (
            f"sequencing depth alone predicts {what}: a model of log(reads per sample) alone "
            f"reaches {scope} {title} {depth:.2f}{versus}; the {follows} sequencing depth "
            f"(a batch effect), so {scope} figures may not carry over to samples sequenced "
            "otherwise"
        )
    return {
        "confounded": confounded,
        "metric": metric,
        "depth": depth,
        "model": model,
        "reason": reason,
        "message": message,
    }


def _judged(
    depth: float, model: float | None, title: str, confounded_at: float, chance: float
) -> tuple[bool, str]:
    """Whether the depth-only model's figure ``depth`` shows a confound beside the model's
    figure ``model`` (the rules of :func:`depth_confound`), and which rule decided."""
    # the gap is rounded so that figures 0.05 apart by their digits count as within 0.05
    near = model is not None and round(model - depth, 9) <= NEAR_MODEL
    if depth >= confounded_at:
        return True, f"depth alone reaches {title} {depth:.3g} (>= {confounded_at})"
    if near and depth > chance:
        return True, (
            f"depth alone reaches {title} {depth:.3g}, within {NEAR_MODEL} of this model's "
            f"{model:.3g} (or above it) and better than chance (> {chance})"
        )
    reason = f"depth alone reaches {title} {depth:.3g}, below {confounded_at}"
    if near:
        reason += f", and is no better than chance (<= {chance})"
    elif model is not None:
        reason += f", and more than {NEAR_MODEL} below this model's {model:.3g}"
    return False, reason


def _finite(value: Any) -> float | None:
    """A metric as a float; ``None`` when it is missing, not a number or not finite."""
    if value is None or isinstance(value, bool | str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# -- the forest alone (aam baseline) ------------------------------------------------------


def run_baseline(
    inputs: Inputs,
    target: TargetSpec,
    config: RunConfig,
    *,
    split_file: str | Path | None = None,
) -> dict[str, Any]:
    """The random forest alone, on the run's preprocessing and split: the seeded split of
    ``config`` or the one a training run wrote (``split.tsv``)."""
    prepared = prepare_data(inputs, config, target=target)
    split = prepared.split
    if split_file is not None:
        given = read_split_tsv(split_file)
        index = {sid: i for i, sid in enumerate(prepared.table.sample_ids)}
        wanted = [*given.get("train", []), *given.get("validation", [])]
        unknown = [sid for sid in wanted if sid not in index]
        if unknown:
            raise InputError(
                f"{len(unknown)} samples of the split are not usable in this table (missing, "
                f"below the rarefaction depth or without a target): {unknown[:5]}",
                file=Path(split_file).name,
            )
        split = Split(
            np.sort([index[s] for s in given.get("train", [])]).astype(np.int64),
            np.sort([index[s] for s in given.get("validation", [])]).astype(np.int64),
        )
    assert prepared.targets is not None
    result = fit_baseline(
        relative_abundance(prepared.rarefied),
        prepared.targets,
        split.train,
        split.validation,
        task=target.task,
        n_classes=None if prepared.classes is None else len(prepared.classes),
        seed=config.seed,
        tune=True,
    )
    return {
        **to_dict(result),
        "n_train": int(split.train.size),
        "n_validation": int(split.validation.size),
        "rarefaction_depth": prepared.depth,
        "warnings": prepared.report.get("warnings", []),
    }
