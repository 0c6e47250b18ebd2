from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from aam_core.data.rarefy import rarefy
from aam_core.data.synthetic import SyntheticSpec, generate
from aam_core.io.types import FeatureTable
from aam_core.train.baselines import fit_baseline, relative_abundance, to_dict
from aam_core.train.metrics import ClassificationMetrics, RegressionMetrics

N_TREES = 50


def _table(counts: np.ndarray) -> FeatureTable:
    n, f = counts.shape
    return FeatureTable(
        tuple(f"s{i}" for i in range(n)), tuple(f"f{j}" for j in range(f)), sp.csr_matrix(counts)
    )


def _regression_problem(n: int = 240, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """y = 10 + 50 * (share of feature 0) + small noise; 19 other features are noise."""
    rng = np.random.default_rng(seed)
    share = rng.uniform(0.0, 0.6, size=n)  # [n]
    rest = rng.dirichlet(np.ones(19), size=n) * (1 - share)[:, None]  # [n, 19]
    counts = np.stack([rng.multinomial(2000, p) for p in np.column_stack([share, rest])])
    x = relative_abundance(_table(counts))
    y = 10.0 + 50.0 * x[:, 0].toarray().ravel() + rng.normal(0, 0.5, size=n)
    return x, y


def _classification_problem(n: int = 150, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """Class c is dominated by feature c (3 classes, 10 features)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    weights = np.ones((n, 10))
    weights[np.arange(n), labels] = 8.0
    counts = np.stack([rng.multinomial(1000, w / w.sum()) for w in weights])
    return relative_abundance(_table(counts)), labels


def test_relative_abundance_is_counts_over_depth_and_keeps_empty_rows() -> None:
    counts = np.array([[3, 0, 1], [0, 0, 0], [5, 5, 10]])
    rel = relative_abundance(_table(counts))
    assert isinstance(rel, sp.csr_matrix) and rel.dtype == np.float64
    np.testing.assert_allclose(
        rel.toarray(),
        np.array([[0.75, 0, 0.25], [0, 0, 0], [0.25, 0.25, 0.5]]),
        rtol=0,
        atol=1e-15,
    )
    np.testing.assert_allclose(np.asarray(rel.sum(axis=1)).ravel(), [1.0, 0.0, 1.0])


def test_regression_beats_the_train_mean_and_uses_the_model_metrics() -> None:
    x, y = _regression_problem()
    train, val = np.arange(180), np.arange(180, 240)
    result = fit_baseline(x, y, train, val, task="regression", n_estimators=N_TREES)
    assert result.predictions.shape == (60,) and result.probabilities is None
    mean_mae = np.abs(y[val] - y[train].mean()).mean()
    assert result.metrics["mae"] * 2 < mean_mae  # about 0.46 against 7.5
    expected = RegressionMetrics()
    expected.update(result.predictions, y[val])
    assert result.metrics == expected.compute()
    assert set(result.metrics) == {"mae", "rmse", "r2", "pearson_r"}
    assert result.metrics["r2"] > 0.9
    assert result.train_metrics["mae"] < result.metrics["mae"]  # in-sample is optimistic
    assert result.task == "regression" and result.n_estimators == N_TREES
    assert result.seconds > 0


def test_regression_on_rarefied_synthetic_study_beats_the_mean() -> None:
    study = generate(SyntheticSpec(n_samples=120, n_asvs=100, asvs_per_sample=25, seed=3))
    rarefied = rarefy(study.table, 2000, seed=0)
    meta = study.metadata.loc[list(rarefied.table.sample_ids)]
    ages, subjects = meta["age"].to_numpy(), meta["subject"].to_numpy()
    # Hold out whole subjects: a subject's repeated samples on both sides would leak its age.
    held = np.random.default_rng(0).permutation(np.unique(subjects))[:7]
    val = np.flatnonzero(np.isin(subjects, held))
    train = np.flatnonzero(~np.isin(subjects, held))
    x = relative_abundance(rarefied.table)
    result = fit_baseline(x, ages, train, val, task="regression", n_estimators=N_TREES, seed=1)
    mean_mae = np.abs(ages[val] - ages[train].mean()).mean()
    assert result.metrics["mae"] < 0.7 * mean_mae  # about 9.6 against 18.7 years


def test_multi_output_regression_keeps_the_target_shape() -> None:
    x, y = _regression_problem(n=120)
    train, val = np.arange(90), np.arange(90, 120)
    two = np.column_stack([y, -2.0 * y])  # [n, 2]
    result = fit_baseline(x, two, train, val, task="regression", n_estimators=N_TREES)
    assert result.predictions.shape == (30, 2)
    expected = RegressionMetrics()
    expected.update(result.predictions, two[val])
    assert result.metrics == expected.compute()
    column = fit_baseline(x, y[:, None], train, val, task="regression", n_estimators=N_TREES)
    assert column.predictions.shape == (30, 1)
    flat = fit_baseline(x, y, train, val, task="regression", n_estimators=N_TREES)
    np.testing.assert_array_equal(column.predictions[:, 0], flat.predictions)


def test_classification_with_a_class_missing_from_train_keeps_all_columns() -> None:
    x, labels = _classification_problem()
    train = np.flatnonzero(labels[:120] != 2)  # class 2 never seen in training
    val = np.arange(120, 150)
    result = fit_baseline(
        x, labels, train, val, task="classification", n_classes=3, n_estimators=N_TREES
    )
    assert result.probabilities is not None
    assert result.probabilities.shape == (30, 3)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(result.probabilities[:, 2], 0.0)
    assert result.predictions.dtype == np.int64
    np.testing.assert_array_equal(result.predictions, result.probabilities.argmax(axis=1))
    seen = labels[val] != 2
    assert (result.predictions[seen] == labels[val][seen]).mean() == 1.0
    expected = ClassificationMetrics(3)
    expected.update(result.probabilities, labels[val])
    got, want = result.metrics, expected.compute()
    assert got["accuracy"] == want["accuracy"] == pytest.approx(2 / 3)  # class 2 all wrong
    assert got["macro_f1"] == want["macro_f1"]
    assert got["roc_auc"] == want["roc_auc"]


def test_classification_metrics_match_classification_metrics() -> None:
    x, labels = _classification_problem(seed=1)
    train, val = np.arange(120), np.arange(120, 150)
    result = fit_baseline(
        x, labels, train, val, task="classification", n_classes=3, n_estimators=N_TREES
    )
    assert result.probabilities is not None
    expected = ClassificationMetrics(3)
    expected.update(result.probabilities, labels[val])
    assert result.metrics == expected.compute()
    assert result.metrics["accuracy"] >= 0.9


def test_seeded_runs_reproduce_and_seeds_differ() -> None:
    x, y = _regression_problem(n=120)
    train, val = np.arange(90), np.arange(90, 120)
    runs = [
        fit_baseline(x, y, train, val, task="regression", n_estimators=N_TREES, seed=s)
        for s in (7, 7, 8)
    ]
    np.testing.assert_array_equal(runs[0].predictions, runs[1].predictions)
    assert runs[0].metrics == runs[1].metrics
    assert not np.array_equal(runs[0].predictions, runs[2].predictions)


def test_empty_validation_gives_empty_metrics() -> None:
    x, y = _regression_problem(n=60)
    empty = np.array([], dtype=np.int64)
    reg = fit_baseline(x, y, np.arange(60), empty, task="regression", n_estimators=N_TREES)
    assert reg.metrics == {} and reg.predictions.shape == (0,)
    assert reg.train_metrics["r2"] > 0.9
    xc, labels = _classification_problem(n=30)
    cls = fit_baseline(
        xc, labels, np.arange(30), empty, task="classification", n_classes=3, n_estimators=N_TREES
    )
    assert cls.metrics == {} and cls.predictions.shape == (0,)
    assert cls.probabilities is not None and cls.probabilities.shape == (0, 3)
    assert cls.train_metrics["accuracy"] == 1.0


def test_to_dict_is_json_with_nan_as_null() -> None:
    x, labels = _classification_problem(n=60)
    val = np.flatnonzero(labels == 0)[:5]  # one class only: ROC AUC is undefined (NaN)
    train = np.setdiff1d(np.arange(60), val)
    result = fit_baseline(
        x, labels, train, val, task="classification", n_classes=3, n_estimators=N_TREES
    )
    assert np.isnan(result.metrics["roc_auc"])
    summary = json.loads(json.dumps(to_dict(result), allow_nan=False))
    assert summary["metrics"]["roc_auc"] is None
    assert summary["metrics"]["accuracy"] == result.metrics["accuracy"]
    assert summary["task"] == "classification" and summary["n_estimators"] == N_TREES
    assert set(summary) == {"task", "metrics", "train_metrics", "n_estimators", "params", "seconds"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"task": "ranking"},
            "task must be one of ('regression', 'classification'), got 'ranking'",
        ),
        ({"task": "classification"}, "n_classes is required for classification"),
        ({"targets": np.zeros(5)}, "number of targets (5) must match feature rows (6)"),
        ({"train_rows": []}, "train_rows is empty"),
        (
            {"validation_rows": [5, 9]},
            "validation_rows must index the 6 feature rows, got out-of-range rows [9]",
        ),
        ({"validation_rows": [3, 4]}, "train_rows and validation_rows overlap in 1 rows, e.g. [3]"),
        ({"targets": np.array([1.0, np.nan, 0, 0, 0, 0])}, "targets hold 1 missing or non-finite"),
        (
            {"task": "classification", "n_classes": 2, "targets": np.array([0, 1, 2, 0, 1, 0])},
            "classification targets must be class indices in [0, 1], got values in [0, 2]",
        ),
        ({"n_estimators": 0}, "n_estimators must be >= 1, got 0"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs: dict, message: str) -> None:
    args: dict = {
        "features": sp.csr_matrix(np.eye(6)),
        "targets": np.arange(6, dtype=np.float64),
        "train_rows": np.arange(4),
        "validation_rows": np.array([4, 5]),
        "task": "regression",
        "n_estimators": 5,
    }
    args.update(kwargs)
    with pytest.raises(ValueError) as caught:
        fit_baseline(**args)
    assert str(caught.value).startswith(message)
