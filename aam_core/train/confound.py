"""Does sequencing depth alone predict the target? (docs/design.md section 11.3)

Labs often sequence cases and controls, or one site and another, in separate runs, and runs
differ in depth. Then the number of reads per sample predicts the label, and a model that can
read depth (a random forest on raw relative abundances: a deeper sample shows more rare ASVs)
scores well for a reason that will not carry over to samples sequenced otherwise. On the public
ibd2538 study a logistic regression on log(reads per sample) alone reaches ROC AUC 0.988 on
held-out subjects. AAM rarefies every sample to one depth, so it cannot read the artefact, but
the lab still has to know its labels carry it.

:func:`fit_depth_baseline` fits that depth-only model on a run's own split and scores it with
the model's own metric accumulators, so its figures sit beside the model's and the other
baselines'; :func:`depth_confound` judges them. Both take arrays and return plain data, so a
cross-validation engine can call them per fold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge

from aam_core.train.baseline import check_split, class_probabilities, finite_or_none
from aam_core.train.metrics import ClassificationMetrics, RegressionMetrics

Task = Literal["regression", "classification"]

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
    coefficients: dict[str, Any] = {"log_depth_mean": mean, "log_depth_std": std}
    probabilities: np.ndarray | None = None
    if task == "regression":
        values = y.astype(np.float64)  # [n] or [n, k]
        flat = values.ndim == 2 and values.shape[1] == 1  # fit a column vector as 1-D
        fit_y = values.ravel() if flat else values
        ridge = Ridge(alpha=RIDGE_ALPHA).fit(x[train], fit_y[train])
        coefficients |= {
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

        predictions = predict(val)
    else:
        assert n_classes is not None
        labels = np.round(y.astype(np.float64)).astype(np.int64)  # [n]
        proba, coefficients = _fit_classes(x, labels, train, n_classes, coefficients)

        def score(rows: np.ndarray) -> dict[str, float]:
            metrics = ClassificationMetrics(n_classes)
            if rows.size:
                metrics.update(proba(rows), labels[rows])
            return metrics.compute()

        probabilities = proba(val)  # [n_val, K]
        # argmax, as ClassificationMetrics does, so predictions and accuracy agree
        predictions = probabilities.argmax(axis=1).astype(np.int64)  # [n_val]
    return {
        "task": task,
        "feature": FEATURE,
        "metrics": {k: finite_or_none(v) for k, v in score(val).items()},
        "train_metrics": {k: finite_or_none(v) for k, v in score(train).items()},
        "coefficients": coefficients,
        "predictions": predictions,
        "probabilities": probabilities,
    }


def _fit_classes(
    x: np.ndarray,
    labels: np.ndarray,
    train: np.ndarray,
    n_classes: int,
    coefficients: dict[str, Any],
) -> tuple[Any, dict[str, Any]]:
    """(rows -> probabilities ``[n_rows, K]``, coefficients) of a logistic regression on the
    train rows; its columns are placed among all K classes, as the forest's are."""
    seen = np.unique(labels[train])  # [C] classes present in the train rows
    if seen.size == 1:  # LogisticRegression refuses one class; depth cannot tell it apart
        only = int(seen[0])

        def constant(rows: np.ndarray) -> np.ndarray:
            out = np.zeros((rows.size, n_classes), dtype=np.float64)  # [n_rows, K]
            out[:, only] = 1.0
            return out

        return constant, {**coefficients, "classes": [only], "intercept": [], "slope": []}
    model = LogisticRegression().fit(x[train], labels[train])  # multinomial for K > 2 (lbfgs)
    columns = np.asarray(model.classes_, dtype=np.int64)

    def proba(rows: np.ndarray) -> np.ndarray:
        return class_probabilities(model, x[rows], n_classes)

    # Binary: one row, the log-odds of classes_[1]; K > 2: one row per class.
    return proba, {
        **coefficients,
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
    # the gap is rounded so that figures 0.05 apart by their digits count as within 0.05
    near = model is not None and round(model - depth, 9) <= NEAR_MODEL
    if depth >= confounded_at:
        confounded, reason = True, f"depth alone reaches {title} {depth:.3g} (>= {confounded_at})"
    elif near and depth > chance:
        confounded = True
        reason = (
            f"depth alone reaches {title} {depth:.3g}, within {NEAR_MODEL} of this model's "
            f"{model:.3g} (or above it) and better than chance (> {chance})"
        )
    else:
        confounded = False
        reason = f"depth alone reaches {title} {depth:.3g}, below {confounded_at}"
        if near:
            reason += f", and is no better than chance (<= {chance})"
        elif model is not None:
            reason += f", and more than {NEAR_MODEL} below this model's {model:.3g}"
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


def _finite(value: Any) -> float | None:
    """A metric as a float; ``None`` when it is missing, not a number or not finite."""
    if value is None or isinstance(value, bool | str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
