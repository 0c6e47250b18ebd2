"""AAM's linear base (aam_core.train.linear_base): its features are the head's, its fit is a
ridge or logistic regression with the L2 chosen on validation, and a train run begins as it
(epoch 0), so that a network that never beats it on validation is not kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression

from aam_core.data.batching import Collator, SampleDataset
from aam_core.data.rarefy import rarefy
from aam_core.data.synthetic import SyntheticSpec, generate
from aam_core.data.tokens import tokenize
from aam_core.io import Inputs
from aam_core.model.heads import LinearBase
from aam_core.plan import TargetSpec
from aam_core.train.linear_base import (
    LOGISTIC_CS,
    RIDGE_ALPHAS,
    LinearFit,
    fit_linear_base,
    install,
    linear_features,
)
from aam_core.train.loop import Progress
from aam_core.train.run import run_train
from tests.conftest import train_plan

TOKEN_LIMIT = 12  # below the samples' ~20 ASVs: the features must truncate as the head does


@pytest.fixture(scope="module")
def dataset() -> tuple[SampleDataset, np.ndarray, Collator]:
    study = generate(SyntheticSpec(n_samples=40, n_asvs=60, asvs_per_sample=20, seed=3))
    table = rarefy(study.table, 1000, seed=0).table
    vocabulary = np.zeros(table.n_features, dtype=np.int64)
    seen = np.arange(0, table.n_features, 2)  # every other ASV has a row; the rest: unknown
    vocabulary[seen] = np.arange(1, seen.size + 1)
    ages = study.metadata.loc[list(table.sample_ids), "age"].to_numpy(np.float32)
    data = SampleDataset(table, targets=ages)
    tokens = tokenize(table.feature_ids, max_bp=150)
    return data, vocabulary, Collator(tokens, token_limit=TOKEN_LIMIT, vocabulary=vocabulary)


def test_the_fit_reads_each_sample_as_the_head_does(
    dataset: tuple[SampleDataset, np.ndarray, Collator],
) -> None:
    data, vocabulary, collate = dataset
    size, k = int(vocabulary.max()), 2
    rows = np.arange(len(data))
    x = linear_features(data, rows, vocabulary, TOKEN_LIMIT)  # [n, 2V]
    assert x.shape == (len(data), 2 * size)
    generator = np.random.default_rng(0)
    coef = generator.normal(size=(2 * size, k))
    intercept = np.array([0.5, -1.0])
    head = LinearBase(size, k, presence=True)
    install(head, LinearFit(coef[:size], coef[size:], intercept, {"alpha": 1.0}))
    batch = collate([data[int(i)] for i in rows])
    with torch.no_grad():
        got = head(batch.identity, batch.abundance[..., 0], batch.mask).double().numpy()
    np.testing.assert_allclose(got, x @ coef + intercept, rtol=1e-5, atol=1e-5)
    # presence columns are 0/1 and count the known ASVs among the top TOKEN_LIMIT
    known = [(vocabulary[data[int(i)].features[:TOKEN_LIMIT]] > 0).sum() for i in rows]
    np.testing.assert_array_equal(np.asarray(x[:, :size].sum(axis=1)).ravel(), known)


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge with an unpenalised intercept, in closed form: centre, then solve."""
    mean_x, mean_y = x.mean(axis=0), y.mean()
    xc = x - mean_x
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return w, float(mean_y - mean_x @ w)


def test_ridge_takes_the_alpha_with_the_lowest_validation_mae() -> None:
    generator = np.random.default_rng(1)
    x = (generator.random((90, 16)) < 0.3).astype(np.float64)
    y = 40 + 10 * x[:, :4].sum(axis=1) + generator.normal(scale=3.0, size=90)
    train, validation = np.arange(60), np.arange(60, 90)
    mean, std = np.array([y[train].mean()]), np.array([y[train].std()])
    fit = fit_linear_base(
        sp.csr_matrix(x[train]), y[train], sp.csr_matrix(x[validation]), y[validation],
        n_classes=None, target_mean=mean, target_std=std,
    )  # fmt: skip
    maes = []
    for alpha in RIDGE_ALPHAS:
        w, b = _ridge(x[train], (y[train] - mean[0]) / std[0], alpha)
        maes.append(np.mean(np.abs((x[validation] @ w + b) * std[0] + mean[0] - y[validation])))
    best = int(np.argmin(maes))
    assert fit.penalty == {"alpha": RIDGE_ALPHAS[best]}
    assert [s["mae"] for s in fit.search] == pytest.approx(maes, rel=1e-6)
    w, b = _ridge(x[train], (y[train] - mean[0]) / std[0], RIDGE_ALPHAS[best])
    coef = np.concatenate([fit.presence[:, 0], fit.weight[:, 0]])  # the fit's column order
    np.testing.assert_allclose(coef, w, rtol=1e-5, atol=1e-8)
    assert fit.intercept[0] == pytest.approx(b, rel=1e-6)
    assert fit.validation["mae"] == pytest.approx(maes[best], rel=1e-6)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_logits_give_scikit_learn_s_probabilities(n_classes: int) -> None:
    generator = np.random.default_rng(2)
    x = (generator.random((120, 10)) < 0.4).astype(np.float64)
    labels = (x[:, 0] + x[:, 1] * (n_classes - 1) + generator.random(120) > 1.2).astype(int)
    labels = np.minimum(labels + (x[:, 2] > 0.5) * (n_classes == 3), n_classes - 1)
    train, validation = np.arange(80), np.arange(80, 120)
    fit = fit_linear_base(
        sp.csr_matrix(x[train]), labels[train], sp.csr_matrix(x[validation]),
        labels[validation], n_classes=n_classes,
    )  # fmt: skip
    c = fit.penalty["C"]
    assert c in LOGISTIC_CS
    reference = LogisticRegression(C=c, max_iter=2000).fit(x[train], labels[train])
    logits = x[validation] @ np.concatenate([fit.presence, fit.weight]) + fit.intercept
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        probabilities, reference.predict_proba(x[validation]), rtol=1e-6, atol=1e-8
    )


def test_epoch_zero_is_a_candidate_that_later_epochs_must_beat() -> None:
    progress = Progress()
    assert progress.finish_epoch([{"epoch": 0}], 2.0, "min", count=False)
    assert (progress.epoch, progress.best_epoch, progress.bad_epochs) == (0, 0, 0)
    assert not progress.finish_epoch([{"epoch": 1}], 2.5, "min")
    assert not progress.finish_epoch([{"epoch": 2}], 2.0, "min")  # a tie is no gain
    assert (progress.epoch, progress.best_epoch, progress.bad_epochs) == (2, 0, 2)
    assert progress.finish_epoch([{"epoch": 3}], 1.5, "min")
    assert (progress.best_epoch, progress.best_value) == (3, 1.5)


AGE = TargetSpec("age", "regression")


def test_a_train_run_begins_as_its_linear_base(study_inputs: Inputs, tmp_path: Path) -> None:
    run = run_train(study_inputs, train_plan(study_inputs, AGE, epochs=2), tmp_path / "run")
    base = run.report["linear_base"]
    assert set(base["penalty"]) == {"alpha"} and base["penalty"]["alpha"] in RIDGE_ALPHAS
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [(r["epoch"], r["split"]) for r in history][:2] == [(0, "validation"), (1, "train")]
    epoch0 = history[0]
    # the model before any step is the linear base: the same validation figures, computed
    # once from the fit's sparse features and once by the model's forward pass
    for metric in ("mae", "rmse", "r2"):
        assert epoch0[metric] == pytest.approx(base["validation"][metric], rel=1e-4)
    best = min(r["mae"] for r in history if r["split"] == "validation")
    assert run.fit.best_value == pytest.approx(best)
