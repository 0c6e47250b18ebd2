from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import f1_score, mean_absolute_error, r2_score, roc_auc_score

from aam_core.train.metrics import ClassificationMetrics, PretrainMetrics, RegressionMetrics


def test_regression_metrics_stream_over_batches() -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(40, 10, size=103)
    pred = true + rng.normal(0, 4, size=103)
    metrics = RegressionMetrics()
    for lo in range(0, 103, 16):  # uneven batches
        metrics.update(pred[lo : lo + 16], true[lo : lo + 16])
    got = metrics.compute()
    assert got["mae"] == pytest.approx(mean_absolute_error(true, pred), rel=1e-12)
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((true - pred) ** 2)), rel=1e-12)
    assert got["r2"] == pytest.approx(r2_score(true, pred), rel=1e-9)
    assert got["pearson_r"] == pytest.approx(pearsonr(true, pred).statistic, rel=1e-9)


def test_classification_metrics_match_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=90)
    logits = rng.normal(size=(90, 3)) + 1.5 * np.eye(3)[labels]
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    metrics, other = ClassificationMetrics(3), ClassificationMetrics(3)
    metrics.update(prob[:50], labels[:50])
    other.update(prob[50:], labels[50:])
    metrics.merge(other)  # as across processes
    got = metrics.compute()
    assert got["accuracy"] == pytest.approx((prob.argmax(1) == labels).mean())
    assert got["macro_f1"] == pytest.approx(f1_score(labels, prob.argmax(1), average="macro"))
    assert got["roc_auc"] == pytest.approx(roc_auc_score(labels, prob, multi_class="ovr"))


def test_binary_auc_and_missing_class() -> None:
    metrics = ClassificationMetrics(2)
    prob = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])
    metrics.update(prob, [0, 1, 1, 0])
    assert metrics.compute()["roc_auc"] == 1.0
    one_class = ClassificationMetrics(2)
    one_class.update(prob, [1, 1, 1, 1])
    assert np.isnan(one_class.compute()["roc_auc"])


def test_pretrain_metrics_over_pairs() -> None:
    true = np.array([[0, 0.2, 0.8], [0.2, 0, 0.6], [0.8, 0.6, 0]])
    pred = np.array([[0, 0.3, 0.7], [0.3, 0, 0.6], [0.7, 0.6, 0]])
    metrics = PretrainMetrics()
    metrics.update_unifrac(pred, true)
    metrics.update_faith_pd([10.0, 12.0], [11.0, 12.0])
    metrics.add_nucleotide_counts(1, 2)  # of two masked positions, one right
    got = metrics.compute()
    # pairs: (0.3 vs 0.2), (0.7 vs 0.8), (0.6 vs 0.6)
    assert got["unifrac_mae"] == pytest.approx(0.2 / 3)
    assert got["unifrac_r2"] == pytest.approx(r2_score([0.2, 0.8, 0.6], [0.3, 0.7, 0.6]))
    assert got["faith_pd_mae"] == pytest.approx(0.5)
    assert got["nucleotide_accuracy"] == 0.5


def test_pearson_r_of_the_pairs_is_reported() -> None:
    true = np.array([[0, 0.2, 0.8], [0.2, 0, 0.6], [0.8, 0.6, 0]])
    pred = 0.5 * true + 0.1  # perfectly correlated, not equal
    metrics = PretrainMetrics()
    predicted_pairs, true_pairs = metrics.update_unifrac(pred, true)
    np.testing.assert_allclose(true_pairs, [0.2, 0.8, 0.6])
    np.testing.assert_allclose(predicted_pairs, [0.2, 0.5, 0.4])
    got = metrics.compute()
    assert got["unifrac_pearson_r"] == pytest.approx(1.0)
    assert got["unifrac_r2"] < 0.5
