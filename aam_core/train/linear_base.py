"""AAM's linear base: a ridge or logistic regression on the ASVs of the train split, fitted in
closed form before the network trains, so that AAM starts as (and can fall back to) a linear
model of the counts it reads.

On the public studies a linear model of rarefied counts rivals a tuned random forest, and a
transformer trained from scratch on a few hundred samples learnt that linear signal slowly and
noisily: its linear term shared AdamW, the gradient clip and early stopping with the network.
Here the linear model is fitted to convergence first (L2 chosen on the run's validation split,
as a careful analyst would), written into the target head's :class:`LinearBase` buffers, and
the network (whose output layer starts at zero) trains on what it leaves. Early stopping then
compares every epoch with epoch 0, the linear base alone.

Features, per ASV of the vocabulary: its presence and its ``log1p(count) / log1p(depth)``, read
from the samples exactly as the head reads them (the top ``token_limit`` ASVs of a sample, the
depth over those). Presence and log abundance beside each other were the best or near the best
of five feature sets (presence, log, CLR, relative abundance, square-root abundance) on every
task of the public data pack, on splits no reported figure uses.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss, roc_auc_score

from aam_core.data.batching import SampleDataset
from aam_core.model.aam import SequenceRegressor
from aam_core.model.heads import LinearBase
from aam_core.plan.config import RunConfig
from aam_core.train.loop import RunData
from aam_core.train.metrics import ClassificationMetrics, RegressionMetrics
from aam_core.train.prepare import PreparedData

# L2 grids, searched on the validation split. Ridge fits the standardised target; its features
# number two per ASV (thousands), each in [0, 1].
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4)
LOGISTIC_CS = (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)
LOGISTIC_MAX_ITER = 2000
# scikit-learn solves a sparse ridge iteratively (conjugate gradients); its default tolerance
# (1e-4) leaves the coefficients ~1e-4 from the exact solution
RIDGE_TOL = 1e-8


@dataclass(frozen=True, eq=False)
class LinearFit:
    """A fitted linear base, in the head's layout (row r - 1 is vocabulary row r)."""

    presence: np.ndarray  # float64 [V, out_dim]
    weight: np.ndarray  # float64 [V, out_dim]: per unit of log1p(count) / log1p(depth)
    intercept: np.ndarray  # float64 [out_dim]
    penalty: dict[str, float]  # {"alpha": a} (ridge) or {"C": c} (logistic)
    # validation score of every grid point (MAE, or -ROC AUC / log loss): lower is better
    search: list[dict[str, float]] = field(default_factory=list)
    validation: dict[str, float] = field(default_factory=dict)  # the chosen fit's metrics


def linear_features(
    dataset: SampleDataset, rows: np.ndarray, vocabulary: np.ndarray, token_limit: int
) -> sp.csr_matrix:
    """``float64 [len(rows), 2 V]``: per sample of ``dataset`` at ``rows``, the presence (the
    first V columns) and ``log1p(count) / log1p(depth)`` (the last V) of each vocabulary ASV
    among its top ``token_limit`` (``vocabulary [n_features]``: each feature's 1-based row, 0
    for none), as :class:`aam_core.model.heads.LinearBase` reads a batch."""
    size = int(vocabulary.max(initial=0))
    data: list[np.ndarray] = []
    columns: list[np.ndarray] = []
    indptr = [0]
    for row in rows:
        sample = dataset[int(row)]
        counts = sample.counts[:token_limit].astype(np.float64)  # [k]
        ids = vocabulary[sample.features[:token_limit]]  # [k]
        depth = max(float(np.log1p(counts.sum())), 1e-6)
        known = ids > 0
        ids, counts = ids[known] - 1, counts[known]
        data += [np.ones(ids.size), np.log1p(counts) / depth]
        columns += [ids, ids + size]
        indptr.append(indptr[-1] + 2 * ids.size)
    if len(rows) == 0:
        return sp.csr_matrix((0, 2 * size))
    return sp.csr_matrix(
        (np.concatenate(data), np.concatenate(columns), np.array(indptr)),
        shape=(len(rows), 2 * size),
    )


def fit_linear_base(
    train_x: sp.csr_matrix,
    train_y: np.ndarray,
    validation_x: sp.csr_matrix,
    validation_y: np.ndarray,
    *,
    n_classes: int | None,
    target_mean: np.ndarray | None = None,
    target_std: np.ndarray | None = None,
    balanced: bool = False,
    penalty: float | None = None,
) -> LinearFit:
    """Fit the linear base on the train rows, its L2 chosen on the validation rows (or given as
    ``penalty``: ridge's alpha or logistic regression's C).

    Regression (``n_classes`` None): ridge on the target standardised by ``target_mean`` and
    ``target_std`` (the model's own normaliser, so the base is in the head's units), chosen by
    validation MAE. Classification: multinomial logistic regression on class indices, chosen
    by validation ROC AUC for two classes present in the validation rows, else by log loss;
    ``balanced`` weighs classes as the model's loss does.
    """
    with warnings.catch_warnings():
        # a weakly penalised logistic regression on separable data never converges: its
        # larger C values then only lose the search
        warnings.simplefilter("ignore", ConvergenceWarning)
        if n_classes is None:
            assert target_mean is not None and target_std is not None
            alphas = RIDGE_ALPHAS if penalty is None else [penalty]
            mean, std = np.asarray(target_mean), np.asarray(target_std)
            return _fit_ridge(train_x, train_y, validation_x, validation_y, mean, std, alphas)
        cs = LOGISTIC_CS if penalty is None else [penalty]
        return _fit_logistic(train_x, train_y, validation_x, validation_y, n_classes, balanced, cs)


def _fit_ridge(
    train_x: sp.csr_matrix,
    train_y: np.ndarray,
    validation_x: sp.csr_matrix,
    validation_y: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    grid: Sequence[float],
) -> LinearFit:
    """Ridge on the standardised target, alpha chosen by validation MAE."""
    y = (np.asarray(train_y, np.float64).reshape(len(train_y), -1) - mean) / std
    fits = [Ridge(alpha=a, tol=RIDGE_TOL).fit(train_x, y) for a in grid]
    scores = [
        _mae(validation_x, validation_y, f, mean, std) if validation_x.shape[0] else 0.0
        for f in fits
    ]
    best = int(np.argmin(scores))
    model = fits[best]
    coef = np.asarray(model.coef_, dtype=np.float64).reshape(y.shape[1], -1).T  # [2V, k]
    intercept = np.atleast_1d(np.asarray(model.intercept_, dtype=np.float64))  # [k]
    regression = RegressionMetrics()
    if validation_x.shape[0]:
        predicted = (validation_x @ coef + intercept) * std + mean
        regression.update(predicted, np.asarray(validation_y, np.float64))
    return _linear_fit(
        coef,
        intercept,
        {"alpha": float(grid[best])},
        [{"alpha": a, "mae": s} for a, s in zip(grid, scores, strict=True)],
        regression.compute(),
    )


def _fit_logistic(
    train_x: sp.csr_matrix,
    train_y: np.ndarray,
    validation_x: sp.csr_matrix,
    validation_y: np.ndarray,
    n_classes: int,
    balanced: bool,
    grid: Sequence[float],
) -> LinearFit:
    """Multinomial logistic regression on class indices, C chosen by
    :func:`_classification_loss` on the validation rows."""
    labels = np.asarray(train_y, dtype=np.int64)
    fits = [_logistic(c, balanced).fit(train_x, labels) for c in grid]
    scores = [_classification_loss(validation_x, validation_y, f, n_classes) for f in fits]
    best = int(np.argmin(scores))
    coef, intercept = _logits(fits[best], n_classes)  # [2V, K], [K]
    classification = ClassificationMetrics(n_classes)
    if validation_x.shape[0]:
        classification.update(_softmax(validation_x @ coef + intercept), validation_y)
    return _linear_fit(
        coef,
        intercept,
        {"C": float(grid[best])},
        [{"C": c, "loss": s} for c, s in zip(grid, scores, strict=True)],
        classification.compute(),
    )


def _linear_fit(
    coef: np.ndarray,
    intercept: np.ndarray,
    penalty: dict[str, float],
    search: list[dict[str, float]],
    validation: dict[str, float],
) -> LinearFit:
    """``coef [2V, out_dim]`` (presence rows, then log-abundance rows) in the head's layout."""
    size = coef.shape[0] // 2
    return LinearFit(
        presence=coef[:size],
        weight=coef[size:],
        intercept=intercept,
        penalty=penalty,
        search=search,
        validation=validation,
    )


def _mae(x: sp.csr_matrix, y: np.ndarray, model: Any, mean: np.ndarray, std: np.ndarray) -> float:
    predicted = np.asarray(model.predict(x)).reshape(x.shape[0], -1) * std + mean  # [n, k]
    return float(np.mean(np.abs(predicted - np.asarray(y, np.float64).reshape(predicted.shape))))


def _logistic(c: float, balanced: bool) -> LogisticRegression:
    return LogisticRegression(
        C=c, max_iter=LOGISTIC_MAX_ITER, class_weight="balanced" if balanced else None
    )


def _logits(model: LogisticRegression, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The model's decision function as per-class logits over all K classes: ``coef [2V, K]``
    and ``intercept [K]`` (binary: class 0 at 0, so that softmax gives its probabilities; a
    class the train rows lack gets a very low logit)."""
    seen = np.asarray(model.classes_, dtype=np.int64)
    w = np.asarray(model.coef_, dtype=np.float64)  # [C, 2V] (binary: [1, 2V])
    b = np.asarray(model.intercept_, dtype=np.float64)  # [C] (binary: [1])
    coef = np.zeros((w.shape[1], n_classes))
    intercept = np.full(n_classes, -30.0)  # exp(-30): a class never seen in training
    if seen.size == 2 and w.shape[0] == 1:
        coef[:, seen[1]], intercept[seen] = w[0], (0.0, b[0])
    else:
        coef[:, seen], intercept[seen] = w.T, b
    return coef, intercept


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))  # [n, K]
    return shifted / shifted.sum(axis=1, keepdims=True)


def _classification_loss(
    x: sp.csr_matrix, y: np.ndarray, model: LogisticRegression, n_classes: int
) -> float:
    """-ROC AUC with two classes both present in ``y``, else log loss (0 without rows)."""
    if x.shape[0] == 0:
        return 0.0
    coef, intercept = _logits(model, n_classes)
    probabilities = _softmax(x @ coef + intercept)  # [n, K]
    labels = np.asarray(y, dtype=np.int64)
    if n_classes == 2 and np.unique(labels).size == 2:
        return -float(roc_auc_score(labels, probabilities[:, 1]))
    return float(log_loss(labels, probabilities, labels=range(n_classes)))


def install(head: LinearBase, fit: LinearFit) -> None:
    """Write ``fit`` into the target head's linear base (row 0, unknown ASVs, stays zero)."""
    assert head.presence is not None and head.intercept is not None, "a fitted base's head"
    with torch.no_grad():
        for buffer, values in ((head.presence, fit.presence), (head.weight, fit.weight)):
            buffer.zero_()
            buffer[1:] = torch.from_numpy(values).to(buffer)
        head.intercept.copy_(torch.from_numpy(fit.intercept).to(head.intercept))


def fit_model_base(
    model: SequenceRegressor,
    data: RunData,
    prepared: PreparedData,
    config: RunConfig,
    vocabulary: np.ndarray,
    *,
    penalty: float | None = None,
) -> LinearFit:
    """Fit ``model``'s linear base on the run's train split (L2 chosen on its validation
    split, or ``penalty``) and install it; ``vocabulary [n_features]``: each feature's row."""
    head = model.target_head.linear
    assert head is not None
    split, limit = prepared.split, config.token_limit
    assert prepared.targets is not None
    train_x = linear_features(data.train, np.arange(len(data.train)), vocabulary, limit)
    validation_x = sp.csr_matrix((0, train_x.shape[1]))
    if data.validation is not None:
        validation_x = linear_features(
            data.validation, np.arange(len(data.validation)), vocabulary, limit
        )
    classes = prepared.classes
    fit = fit_linear_base(
        train_x,
        prepared.targets[split.train],
        validation_x,
        prepared.targets[split.validation],
        n_classes=None if classes is None else len(classes),
        target_mean=model.target_norm.mean.double().cpu().numpy(),
        target_std=model.target_norm.std.double().cpu().numpy(),
        balanced=config.class_weights == "balanced",
        penalty=penalty,
    )
    install(head, fit)
    return fit
