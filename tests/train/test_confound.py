"""The depth-only baseline against a direct scikit-learn fit or the ridge formula, and the
depth-confound verdict at the edges of its rules, with its message pinned."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from aam_core.train.baselines import (
    ABOVE_CHANCE_R2,
    ABOVE_CHANCE_ROC_AUC,
    CONFOUNDED_R2,
    CONFOUNDED_ROC_AUC,
    NEAR_MODEL,
    RIDGE_ALPHA,
    depth_confound,
    fit_depth_baseline,
)
from aam_core.train.metrics import ClassificationMetrics, RegressionMetrics

TRAIN, VALIDATION = np.arange(0, 40), np.arange(40, 60)


def _depths(n: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(800, 40_000, size=n)  # [n] raw reads


def _standardised(depths: np.ndarray) -> np.ndarray:
    """log depth minus the train rows' mean, over their population std: by hand."""
    log_depth = np.log(depths.astype(np.float64))
    train = log_depth[TRAIN]
    mean = train.sum() / train.size
    std = math.sqrt(((train - mean) ** 2).sum() / train.size)
    return (log_depth - mean) / std


def test_regression_is_the_one_feature_ridge_formula() -> None:
    depths = _depths()
    rng = np.random.default_rng(1)
    ages = 20.0 + 6.0 * np.log(depths) + rng.normal(0, 3.0, size=depths.size)  # [n]
    result = fit_depth_baseline(depths, ages, TRAIN, VALIDATION, task="regression")
    z = _standardised(depths)
    # Centred feature with sum(z²) = n_train: intercept = mean(y), slope = sum(z y_c) / (n + alpha)
    mean = ages[TRAIN].mean()
    slope = (z[TRAIN] * (ages[TRAIN] - mean)).sum() / (TRAIN.size + RIDGE_ALPHA)
    expected = mean + slope * z[VALIDATION]  # [n_val]
    np.testing.assert_allclose(result["predictions"], expected, rtol=1e-10)
    assert result["predictions"].shape == (VALIDATION.size,)
    assert result["coefficients"]["intercept"] == [pytest.approx(mean, rel=1e-10)]
    assert result["coefficients"]["slope"] == [pytest.approx(slope, rel=1e-10)]
    log_train = np.log(depths[TRAIN].astype(np.float64))
    assert result["coefficients"]["log_depth_mean"] == pytest.approx(log_train.mean())
    assert result["coefficients"]["log_depth_std"] == pytest.approx(log_train.std())
    truth = ages[VALIDATION]
    r2 = 1 - ((truth - expected) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert result["metrics"]["r2"] == pytest.approx(r2, rel=1e-9)
    assert result["metrics"]["mae"] == pytest.approx(np.abs(truth - expected).mean(), rel=1e-9)
    assert result["metrics"]["r2"] > CONFOUNDED_R2  # the target was made to follow depth
    assert result["probabilities"] is None and result["task"] == "regression"
    in_sample = RegressionMetrics()
    in_sample.update(mean + slope * z[TRAIN], ages[TRAIN])
    assert result["train_metrics"] == pytest.approx(in_sample.compute(), rel=1e-9)


def test_regression_keeps_several_outputs_and_a_column_vector_shape() -> None:
    depths = _depths()
    two = np.column_stack([np.log(depths), -2.0 * np.log(depths)])  # [n, 2]
    both = fit_depth_baseline(depths, two, TRAIN, VALIDATION, task="regression")
    assert both["predictions"].shape == (VALIDATION.size, 2)
    assert len(both["coefficients"]["slope"]) == 2
    first = fit_depth_baseline(depths, two[:, 0], TRAIN, VALIDATION, task="regression")
    np.testing.assert_allclose(both["predictions"][:, 0], first["predictions"], rtol=1e-10)
    column = fit_depth_baseline(depths, two[:, :1], TRAIN, VALIDATION, task="regression")
    assert column["predictions"].shape == (VALIDATION.size, 1)
    assert column["metrics"] == first["metrics"]


def test_binary_classification_is_a_direct_logistic_regression() -> None:
    depths = _depths()
    rng = np.random.default_rng(2)
    # deep samples are mostly cases: depth carries the label, with some noise
    labels = (np.log(depths) + rng.normal(0, 0.6, size=depths.size) > 9.3).astype(np.int64)
    result = fit_depth_baseline(
        depths, labels, TRAIN, VALIDATION, task="classification", n_classes=2
    )
    z = _standardised(depths)[:, None]  # [n, 1]
    direct = LogisticRegression().fit(z[TRAIN], labels[TRAIN])
    expected = direct.predict_proba(z[VALIDATION])  # [n_val, 2]
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-9)
    np.testing.assert_array_equal(result["predictions"], expected.argmax(axis=1))
    assert result["coefficients"]["classes"] == [0, 1]
    assert result["coefficients"]["slope"] == [pytest.approx(direct.coef_[0, 0], rel=1e-9)]
    metrics = ClassificationMetrics(2)
    metrics.update(expected, labels[VALIDATION])
    assert result["metrics"] == pytest.approx(metrics.compute(), rel=1e-12)
    assert result["metrics"]["roc_auc"] > CONFOUNDED_ROC_AUC


def test_labels_sorted_by_depth_give_roc_auc_one() -> None:
    depths = np.arange(1, 61) * 500  # [60] every sample deeper than the last
    labels = (depths > 15_000).astype(np.int64)
    train, validation = np.arange(0, 60, 2), np.arange(1, 60, 2)
    result = fit_depth_baseline(
        depths, labels, train, validation, task="classification", n_classes=2
    )
    assert result["metrics"]["roc_auc"] == 1.0


def test_multinomial_places_columns_among_all_classes() -> None:
    depths = _depths()
    labels = np.digitize(np.log(depths), [8.5, 9.5]) * 2  # classes 0, 2 and 4 of 5
    result = fit_depth_baseline(
        depths, labels, TRAIN, VALIDATION, task="classification", n_classes=5
    )
    z = _standardised(depths)[:, None]
    direct = LogisticRegression().fit(z[TRAIN], labels[TRAIN])
    probabilities = result["probabilities"]
    assert probabilities.shape == (VALIDATION.size, 5)
    np.testing.assert_allclose(probabilities[:, [0, 2, 4]], direct.predict_proba(z[VALIDATION]))
    assert not probabilities[:, [1, 3]].any()  # classes unseen in training get nothing
    assert result["coefficients"]["classes"] == [0, 2, 4]
    assert len(result["coefficients"]["slope"]) == 3  # one per class: multinomial
    assert result["metrics"]["roc_auc"] is None  # classes 1 and 3 never occur: NaN -> None
    assert result["metrics"]["accuracy"] == pytest.approx(
        (probabilities.argmax(1) == labels[VALIDATION]).mean()
    )


def test_one_class_or_one_depth_in_training_is_still_defined() -> None:
    depths = _depths()
    labels = np.zeros(depths.size, dtype=np.int64)
    labels[VALIDATION[:5]] = 1
    one_class = fit_depth_baseline(
        depths, labels, TRAIN, VALIDATION, task="classification", n_classes=2
    )
    assert (one_class["probabilities"] == [1.0, 0.0]).all()
    assert one_class["metrics"]["accuracy"] == 0.75 and one_class["metrics"]["roc_auc"] == 0.5

    flat = np.full(depths.size, 5000)
    ages = np.arange(depths.size, dtype=np.float64)
    same = fit_depth_baseline(flat, ages, TRAIN, VALIDATION, task="regression")
    assert same["coefficients"]["log_depth_std"] == 0.0
    np.testing.assert_allclose(same["predictions"], ages[TRAIN].mean())  # the train mean


def test_without_validation_rows_there_are_no_metrics() -> None:
    depths = _depths()
    result = fit_depth_baseline(
        depths, np.log(depths), TRAIN, np.array([], dtype=np.int64), task="regression"
    )
    assert result["metrics"] == {} and result["predictions"].shape == (0,)
    assert depth_confound(result["metrics"], {"r2": 0.5}, "regression") is None


def test_inputs_are_checked_at_the_boundary() -> None:
    depths = _depths()
    ages = np.log(depths)
    empty = depths.copy()
    empty[[3, 45]] = 0
    with pytest.raises(ValueError) as error:
        fit_depth_baseline(empty, ages, TRAIN, VALIDATION, task="regression")
    assert str(error.value) == (
        "depths must be positive read counts, got 2 used rows with none (or a non-finite "
        "value): log depth is undefined there"
    )
    unused = fit_depth_baseline(empty, ages, TRAIN[4:], VALIDATION[6:], task="regression")
    assert unused["metrics"]["r2"] is not None  # rows outside the split may be empty
    with pytest.raises(ValueError, match=r"number of targets \(59\) must match feature rows"):
        fit_depth_baseline(depths, ages[:-1], TRAIN, VALIDATION, task="regression")
    with pytest.raises(ValueError, match=r"depths must be 1-D reads per sample, got shape"):
        fit_depth_baseline(depths[:, None], ages, TRAIN, VALIDATION, task="regression")
    with pytest.raises(ValueError, match="overlap in 1 rows"):
        fit_depth_baseline(depths, ages, TRAIN, np.array([39, 40]), task="regression")
    with pytest.raises(ValueError, match="n_classes is required for classification"):
        fit_depth_baseline(depths, ages, TRAIN, VALIDATION, task="classification")


def _verdict(depth: float | None, model: float | None, task: str = "classification") -> bool:
    metric = "roc_auc" if task == "classification" else "r2"
    verdict = depth_confound({metric: depth}, {metric: model}, task)
    assert verdict is not None
    return bool(verdict["confounded"])


def test_thresholds_at_their_edges() -> None:
    assert (CONFOUNDED_ROC_AUC, CONFOUNDED_R2, NEAR_MODEL) == (0.75, 0.25, 0.05)
    assert (ABOVE_CHANCE_ROC_AUC, ABOVE_CHANCE_R2) == (0.6, 0.05)
    # depth alone at the threshold, however good the model
    assert _verdict(0.75, 0.99) and not _verdict(0.7499, 0.99)
    assert _verdict(0.25, 0.9, "regression") and not _verdict(0.2499, 0.9, "regression")
    # within 0.05 of the model (a gap that reads 0.05 counts), depth better than chance
    assert _verdict(0.65, 0.70) and not _verdict(0.65, 0.7001)
    assert _verdict(0.20, 0.25, "regression") and not _verdict(0.20, 0.2501, "regression")
    assert _verdict(0.70, 0.55)  # depth beats the model
    # ...but not when depth is no better than chance: two useless models are not a confound
    assert not _verdict(0.60, 0.62) and _verdict(0.6001, 0.62)
    assert not _verdict(0.05, 0.06, "regression") and _verdict(0.0501, 0.06, "regression")
    assert not _verdict(0.5, 0.5) and not _verdict(-0.2, -0.1, "regression")
    # no model figure: only the threshold decides
    assert not _verdict(0.7, None) and _verdict(0.8, None) and not _verdict(0.7, math.nan)


def test_the_verdict_and_its_message() -> None:
    verdict = depth_confound(
        {"accuracy": 0.95, "roc_auc": 0.988}, {"roc_auc": 0.62}, "classification", target="ibd"
    )
    assert verdict == {
        "confounded": True,
        "metric": "roc_auc",
        "depth": 0.988,
        "model": 0.62,
        "reason": "depth alone reaches ROC AUC 0.988 (>= 0.75)",
        "message": "sequencing depth alone predicts 'ibd': a model of log(reads per sample) "
        "alone reaches validation ROC AUC 0.99 (this model 0.62); the labels follow "
        "sequencing depth (a batch effect), so validation figures may not carry over to "
        "samples sequenced otherwise",
    }
    near = depth_confound({"r2": 0.3125}, {"r2": 0.34375}, "regression")
    assert near is not None and near["confounded"]
    assert near["message"] == (
        "sequencing depth alone predicts the target: a model of log(reads per sample) alone "
        "reaches validation R² 0.31 (this model 0.34); the target follows sequencing depth (a "
        "batch effect), so validation figures may not carry over to samples sequenced otherwise"
    )
    close = depth_confound({"r2": 0.125}, {"r2": 0.15625}, "regression")
    assert close is not None and close["reason"] == (
        "depth alone reaches R² 0.125, within 0.05 of this model's 0.156 (or above it) and "
        "better than chance (> 0.05)"
    )
    clear = depth_confound({"roc_auc": 0.5625}, {"roc_auc": 0.875}, "classification")
    assert clear == {
        "confounded": False,
        "metric": "roc_auc",
        "depth": 0.5625,
        "model": 0.875,
        "reason": "depth alone reaches ROC AUC 0.562, below 0.75, and more than 0.05 below "
        "this model's 0.875",
        "message": None,
    }
    useless = depth_confound({"roc_auc": 0.5}, {"roc_auc": 0.53}, "classification")
    assert useless is not None and useless["reason"] == (
        "depth alone reaches ROC AUC 0.5, below 0.75, and is no better than chance (<= 0.6)"
    )
    alone = depth_confound({"roc_auc": 0.9}, None, "classification")
    assert alone is not None and alone["model"] is None
    assert "reaches validation ROC AUC 0.90; the labels" in str(alone["message"])
    assert depth_confound({"roc_auc": None}, {"roc_auc": 0.9}, "classification") is None
    with pytest.raises(ValueError, match="task must be one of"):
        depth_confound({"r2": 0.5}, None, "pretrain")
