from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aam_core.train import outputs
from aam_core.train.metrics import RegressionMetrics
from aam_core.train.outputs import (
    confusion_figure,
    identity_limits,
    loss_figure,
    plot_confusion,
    plot_loss,
    plot_predicted_vs_true,
    predicted_vs_true_figure,
    write_predictions_tsv,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which always follows the 8-byte signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC and head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(
        path, sep="\t", dtype={"sample_id": str}, keep_default_na=False, na_values=[""]
    )


def test_importing_the_module_does_not_import_matplotlib() -> None:
    code = "import sys, aam_core.train.outputs; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_regression_predictions_tsv_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ids = ["001", "NA", "s3"]  # IDs that pandas would turn into 1 or NaN unless kept as text
    true, predicted = rng.normal(40, 10, size=3), rng.normal(40, 10, size=3)
    true[1] = np.nan  # an unknown target stays empty
    path = tmp_path / "predictions.tsv"
    write_predictions_tsv(path, ids, true=true, predicted=predicted)
    frame = _read_tsv(path)
    assert list(frame.columns) == ["sample_id", "true", "prediction"]
    assert frame["sample_id"].tolist() == ids
    # Full precision is written; 1e-15 allows for pandas 2's default parser (last-digit rounding).
    np.testing.assert_allclose(frame["true"].to_numpy(), true, rtol=1e-15)  # NaN stays NaN
    np.testing.assert_allclose(frame["prediction"].to_numpy(), predicted, rtol=1e-15)


def test_multi_output_predictions_tsv(tmp_path: Path) -> None:
    true = np.arange(6, dtype=np.float64).reshape(3, 2)
    path = tmp_path / "predictions.tsv"
    write_predictions_tsv(path, ["a", "b", "c"], true=true, predicted=true + 0.25)
    frame = _read_tsv(path)
    assert list(frame.columns) == ["sample_id", "true_0", "true_1", "prediction_0", "prediction_1"]
    np.testing.assert_array_equal(frame[["true_0", "true_1"]].to_numpy(), true)
    np.testing.assert_array_equal(frame[["prediction_0", "prediction_1"]].to_numpy(), true + 0.25)


def test_classification_predictions_tsv_uses_class_names(tmp_path: Path) -> None:
    classes = ["gut", "oral", "skin"]
    prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    path = tmp_path / "predictions.tsv"
    write_predictions_tsv(
        path,
        ["a", "b"],
        true=np.array([0, 1]),
        predicted=prob.argmax(1),
        classes=classes,
        probabilities=prob,
    )
    frame = _read_tsv(path)
    assert list(frame.columns) == [
        "sample_id",
        "true",
        "prediction",
        "prob_gut",
        "prob_oral",
        "prob_skin",
    ]
    assert frame["true"].tolist() == ["gut", "oral"]
    assert frame["prediction"].tolist() == ["gut", "skin"]
    np.testing.assert_array_equal(frame[["prob_gut", "prob_oral", "prob_skin"]].to_numpy(), prob)
    # Names are accepted as they are; no true column when labels are unknown.
    write_predictions_tsv(path, ["a", "b"], predicted=["skin", "gut"], classes=classes)
    frame = _read_tsv(path)
    assert list(frame.columns) == ["sample_id", "prediction"]
    assert frame["prediction"].tolist() == ["skin", "gut"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"predicted": [1.0, 2.0]}, "predicted has 2 rows, expected 3 (one per sample ID)"),
        ({"predicted": [0, 1, 3], "classes": ["a", "b"]}, "predicted holds class indices [3]"),
        ({"true": ["a", "c", "a"], "classes": ["a", "b"]}, "true holds unknown class names ['c']"),
        (
            {"probabilities": np.ones((3, 3)), "classes": ["a", "b"]},
            "probabilities must be [n, 2] (one column per class), got shape (3, 3)",
        ),
        ({"probabilities": np.ones((3, 2))}, "probabilities need class names"),
    ],
)
def test_predictions_tsv_rejects_mismatched_inputs(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        write_predictions_tsv(tmp_path / "p.tsv", ["x", "y", "z"], **kwargs)
    assert str(caught.value).startswith(message)


HISTORY = [
    {"epoch": 2, "split": "train", "loss": 0.4},
    {"epoch": 1, "split": "train", "loss": 0.9},
    {"epoch": 1, "split": "validation", "loss": 1.1, "mae": 5.0},
    {"epoch": 2, "split": "validation", "loss": float("nan")},  # skipped
    {"epoch": 3, "split": "validation", "loss": 0.7},
]


def test_loss_figure_draws_one_sorted_line_per_split(tmp_path: Path) -> None:
    fig = loss_figure(HISTORY, title="Fine-tune loss")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["train", "validation"]
    np.testing.assert_array_equal(lines["train"].get_xdata(), [1, 2])
    np.testing.assert_array_equal(lines["train"].get_ydata(), [0.9, 0.4])
    np.testing.assert_array_equal(lines["validation"].get_xdata(), [1, 3])
    np.testing.assert_array_equal(lines["validation"].get_ydata(), [1.1, 0.7])
    assert ax.get_title() == "Fine-tune loss"
    out = plot_loss(HISTORY, tmp_path / "loss.png")
    assert out == tmp_path / "loss.png"
    assert _png_size(out) == (700, 450)
    with pytest.raises(ValueError, match="history has no finite 'r2' values to plot"):
        loss_figure(HISTORY, key="r2")


def test_identity_limits_span_both_axes() -> None:
    assert identity_limits(np.array([2.0, 5.0]), np.array([-1.0, 4.0])) == (-1.0, 5.0)
    assert identity_limits(np.array([3.0]), np.array([3.0])) == (2.5, 3.5)


def test_predicted_vs_true_draws_identity_and_reports_metrics(tmp_path: Path) -> None:
    true = np.array([10.0, 20.0, 30.0, 40.0, np.nan])
    predicted = np.array([12.0, 18.0, 33.0, 45.0, 1.0])  # the NaN pair is left out
    fig = predicted_vs_true_figure(true, predicted, title="Age", units="years")
    ax = fig.axes[0]
    (identity,) = [line for line in ax.get_lines() if line.get_label() == "y = x"]
    np.testing.assert_array_equal(identity.get_xdata(), [10.0, 45.0])
    np.testing.assert_array_equal(identity.get_ydata(), [10.0, 45.0])
    np.testing.assert_array_equal(np.asarray(ax.collections[0].get_offsets())[:, 0], true[:4])
    expected = RegressionMetrics()
    expected.update(predicted[:4], true[:4])
    scores = expected.compute()  # MAE 3.0, R² 1 - 42/500 = 0.916
    assert scores["mae"] == 3.0 and scores["r2"] == pytest.approx(0.916)
    assert ax.get_title() == "Age\nMAE 3 years, R² 0.916, n = 4"
    assert ax.get_xlabel() == "true (years)"
    out = plot_predicted_vs_true(true, predicted, tmp_path / "scatter.png", title="Age")
    assert _png_size(out) == (600, 600)
    from matplotlib.image import imread

    assert imread(out).shape[:2] == (600, 600)


def test_confusion_figure_annotates_counts(tmp_path: Path) -> None:
    confusion = np.array([[5, 1, 0], [2, 7, 0], [0, 0, 3]])
    fig = confusion_figure(confusion, ["gut", "oral", "skin"], title="Site")
    ax = fig.axes[0]
    cells = {(t.get_position()[1], t.get_position()[0]): t.get_text() for t in ax.texts}
    assert cells == {(i, j): str(confusion[i, j]) for i in range(3) for j in range(3)}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["gut", "oral", "skin"]
    out = plot_confusion(confusion, ["gut", "oral", "skin"], tmp_path / "c.png", title="Site")
    assert outputs.confusion_size(3) == (5.0, 4.0)
    assert _png_size(out) == (500, 400)
    with pytest.raises(ValueError, match=r"confusion must be \[2, 2\] for 2 class names"):
        confusion_figure(confusion, ["a", "b"], title="x")
