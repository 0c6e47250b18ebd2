"""The ensemble model kind: AAM and a tuned random forest, blended evenly (``auto``: chosen on the
validation split).

After AAM has trained (early-stopped on the validation split), the forest is tuned by its
out-of-bag error on the train split, so its validation predictions are held out too. The
ensemble predicts ``w * AAM + (1 - w) * forest`` (probabilities for a classifier).

- ``model="ensemble"``: the even blend, ``w = 0.5``. The weight is not fitted: the validation
  split already chose AAM's epoch, so AAM scores better there than on new samples, and a weight
  fitted on a few validation subjects leaned towards AAM. On ECAM (bench/quality.py, 3 seeds x
  5 folds, CPU) weights fitted from 0.1 to 0.9 gave MAE 2.79 against the forest's 2.81; the
  even blend (with the target head's linear term, which also moved AAM) 2.69 against 2.81.
- ``model="auto"``: AAM alone (``w = 1``), the forest alone (``w = 0``) or the even blend,
  whichever scores best on the validation split (mean absolute error for regression, log loss
  for classification); the run's report says which and why.

The served forest is then refit with the chosen settings on every sample of the run (train
and validation), as the forest a lab would fit on all its data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from aam_core.checkpoint import load_checkpoint, save_checkpoint
from aam_core.errors import ConfigError
from aam_core.forest import ForestPart
from aam_core.plan import ModelKind
from aam_core.plan.config import RunConfig
from aam_core.train.baselines import BaselineResult, forest_class
from aam_core.train.callbacks import Callback
from aam_core.train.loop import FitResult
from aam_core.train.metrics import ClassificationMetrics, RegressionMetrics
from aam_core.train.outputs import RunOutputs
from aam_core.train.prepare import PreparedData

EVEN = 0.5
AUTO_WEIGHTS = (0.0, EVEN, 1.0)  # the forest, the even blend, AAM


@dataclass(frozen=True)
class Blend:
    weight: float
    choice: str  # aam | forest | ensemble
    validation: dict[str, dict[str, float]]  # metrics of "aam", "forest", "ensemble"
    reason: str


def _score(prediction: np.ndarray, truth: np.ndarray, classes: tuple[str, ...] | None) -> float:
    """Lower is better: MAE, or log loss of the true class."""
    if classes is None:
        return float(np.mean(np.abs(prediction.reshape(truth.shape) - truth)))
    picked = prediction[np.arange(truth.size), truth.astype(np.int64)]
    return float(np.mean(-np.log(np.clip(picked, 1e-6, 1.0))))


def _metrics(
    prediction: np.ndarray, truth: np.ndarray, classes: tuple[str, ...] | None
) -> dict[str, float]:
    accumulator: RegressionMetrics | ClassificationMetrics
    accumulator = RegressionMetrics() if classes is None else ClassificationMetrics(len(classes))
    accumulator.update(prediction, truth)
    return accumulator.compute()


def choose_blend(
    aam: np.ndarray,
    forest: np.ndarray,
    truth: np.ndarray,
    classes: tuple[str, ...] | None,
    kind: ModelKind,
) -> Blend:
    """The weight of AAM: the even blend for ``ensemble``; for ``auto`` the candidate whose
    validation predictions score best (ties: the larger weight). ``aam``/``forest``: values
    ``[n]`` or probabilities ``[n, K]``."""
    weights = list(AUTO_WEIGHTS) if kind == "auto" else [EVEN]
    scores = [_score(w * aam + (1 - w) * forest, truth, classes) for w in weights]
    best = min(range(len(weights)), key=lambda i: (scores[i], -weights[i]))
    weight = weights[best]
    choice = "aam" if weight == 1.0 else "forest" if weight == 0.0 else "ensemble"
    name = "mean absolute error" if classes is None else "log loss"
    alone = {
        "aam": _score(aam, truth, classes),
        "forest": _score(forest, truth, classes),
    }
    reason = (
        f"validation {name}: AAM {alone['aam']:.4g}, forest {alone['forest']:.4g}, "
        f"blend with AAM weight {weight:g} {scores[best]:.4g}"
        + (f"; model 'auto' chose {choice}" if kind == "auto" else "")
    )
    validation = {
        "aam": _metrics(aam, truth, classes),
        "forest": _metrics(forest, truth, classes),
        "ensemble": _metrics(weight * aam + (1 - weight) * forest, truth, classes),
    }
    return Blend(weight, choice, validation, reason)


def fit_ensemble(
    prepared: PreparedData,
    aam_validation: np.ndarray,
    forest: BaselineResult,
    features: Any,
    kind: ModelKind,
    seed: int,
) -> tuple[ForestPart, Blend]:
    """Blend AAM's validation predictions with the tuned forest's, then refit the forest on
    every sample of the run. ``features``: the rarefied relative abundances of
    ``prepared.table`` (the forest's inputs)."""
    split = prepared.split
    assert prepared.targets is not None
    truth = prepared.targets[split.validation]
    forest_validation = forest.predictions if prepared.classes is None else forest.probabilities
    assert forest_validation is not None
    blend = choose_blend(
        aam_validation, np.asarray(forest_validation), truth, prepared.classes, kind
    )
    rows = np.sort(np.concatenate([split.train, split.validation]))
    task = "regression" if prepared.classes is None else "classification"
    target = prepared.targets[rows]
    if task == "regression":
        target = target.astype(np.float64).reshape(rows.size, -1)
        target = target.ravel() if target.shape[1] == 1 else target
    refit = forest_class(task)(
        n_estimators=forest.n_estimators, random_state=seed, **forest.params
    ).fit(features[rows], target)
    refit.set_params(n_jobs=1)  # one prediction at a time in a service: no process pool
    part = ForestPart(
        weight=blend.weight,
        choice=blend.choice,
        features=prepared.sequences,
        task=task,
        forest=refit,
        params=dict(forest.params),
        reason=blend.reason,
    )
    return part, blend


def attach_ensemble(
    fit: FitResult,
    prepared: PreparedData,
    config: RunConfig,
    outputs: RunOutputs,
    model_kind: ModelKind,
    log: Callback,
) -> dict[str, Any]:
    """Blend the best checkpoint with the tuned forest (aam_core.train.ensemble) and write
    the forest into that checkpoint; the blend's summary for the report."""
    if fit.best_checkpoint is None or outputs.predictions is None or outputs.forest is None:
        raise ConfigError(
            f"model {model_kind!r} needs a validation split to blend on; this run has none "
            "(too few samples or validation_fraction)",
            field="model",
        )
    assert outputs.features is not None
    part, blend = fit_ensemble(
        prepared, outputs.predictions, outputs.forest, outputs.features, model_kind, config.seed
    )
    summary = {
        "model": model_kind,
        "choice": blend.choice,
        "weight": blend.weight,
        "reason": blend.reason,
        "forest": dict(part.params),
        "validation": blend.validation,
    }
    checkpoint = load_checkpoint(fit.best_checkpoint)
    metrics = {**checkpoint.metrics, "ensemble": summary}
    save_checkpoint(
        dataclasses.replace(checkpoint, forest=part, metrics=metrics), fit.best_checkpoint
    )
    log.on_log(f"ensemble: {blend.reason}")
    return summary
