"""Files a training run writes: predictions and plots. The split is written with
:mod:`aam_core.train.prepare`, JSON and the metrics log with :mod:`aam_core.io.files`.

Plots use matplotlib's object-oriented ``Figure`` with an Agg canvas and never pyplot:
pyplot keeps global state (the current backend, a registry of open figures) that is neither
thread-safe nor ours to change inside a worker or a user's notebook. matplotlib is imported
inside the plotting functions so that importing this module stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aam_core.io.files import atomic_write
from aam_core.train.metrics import RegressionMetrics
from aam_core.train.prepare import SPLITS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
LOSS_SIZE = (7.0, 4.5)  # inches; 700 x 450 pixels at DPI
SCATTER_SIZE = (6.0, 6.0)  # 600 x 600 pixels


def _column(values: Any, n: int, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.shape[0] != n:
        raise ValueError(f"{name} has {array.shape[0]} rows, expected {n} (one per sample ID)")
    return array


def _names(values: np.ndarray, classes: Sequence[str], name: str) -> list[str]:
    """Class indices -> names; names pass through after a check."""
    if np.issubdtype(values.dtype, np.integer):
        bad = values[(values < 0) | (values >= len(classes))]
        if bad.size:
            raise ValueError(f"{name} holds class indices {bad[:5].tolist()} outside classes")
        return [classes[i] for i in values]
    unknown = sorted(set(map(str, values)) - set(classes))
    if unknown:
        raise ValueError(f"{name} holds unknown class names {unknown[:5]}")
    return [str(v) for v in values]


def write_predictions_tsv(
    path: str | Path,
    sample_ids: Sequence[str],
    *,
    true: Any = None,
    predicted: Any = None,
    classes: Sequence[str] | None = None,
    probabilities: Any = None,
) -> None:
    """Per-sample predictions. Regression: ``sample_id, true, predicted`` (``true_0..`` and
    ``predicted_0..`` for several outputs). Classification (``classes`` given): class names in
    ``true`` and ``predicted`` (indices are mapped), then ``prob_<class>`` per class. Columns
    whose values are not given are left out (prediction on unlabelled samples has no ``true``)."""
    n = len(sample_ids)
    frame = pd.DataFrame({"sample_id": [str(s) for s in sample_ids]})
    if classes is not None:
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be unique, got {classes}")
        for name, values in (("true", true), ("predicted", predicted)):
            if values is not None:
                frame[name] = _names(_column(values, n, name).ravel(), classes, name)
        if probabilities is not None:
            prob = _column(probabilities, n, "probabilities").astype(np.float64)
            if prob.ndim != 2 or prob.shape[1] != len(classes):
                raise ValueError(
                    f"probabilities must be [n, {len(classes)}] (one column per class), "
                    f"got shape {prob.shape}"
                )
            for k, name in enumerate(classes):
                frame[f"prob_{name}"] = prob[:, k]
    else:
        if probabilities is not None:
            raise ValueError("probabilities need class names (classes=...)")
        for name, values in (("true", true), ("predicted", predicted)):
            if values is None:
                continue
            array = _column(values, n, name).astype(np.float64).reshape(n, -1)  # [n, k]
            if array.shape[1] == 1:
                frame[name] = array[:, 0]
            else:
                for k in range(array.shape[1]):
                    frame[f"{name}_{k}"] = array[:, k]
    with atomic_write(path) as fh:
        frame.to_csv(fh, sep="\t", index=False)


def _new_figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """PNG at a fixed pixel size (figsize x DPI; no tight bbox, which would change it)."""
    fig.savefig(path, dpi=DPI, format="png")
    fig.clear()  # the figure is not registered anywhere; clearing frees its artists now
    return Path(path)


def loss_figure(
    history: Sequence[Mapping[str, Any]], *, title: str = "Loss", key: str = "loss"
) -> Figure:
    """One line per split of ``record[key]`` against epoch; records without a finite value
    (an epoch that skipped validation) are left out."""
    series: dict[str, list[tuple[float, float]]] = {}
    for record in history:
        value = record.get(key)
        if value is None or not math.isfinite(float(value)) or "epoch" not in record:
            continue
        series.setdefault(str(record.get("split", "train")), []).append(
            (float(record["epoch"]), float(value))
        )
    if not series:
        raise ValueError(f"history has no finite {key!r} values to plot")
    fig = _new_figure(LOSS_SIZE)
    ax = fig.add_subplot()
    order = [s for s in SPLITS if s in series] + sorted(set(series) - set(SPLITS))
    for split in order:
        epochs, values = zip(*sorted(series[split]), strict=True)
        ax.plot(epochs, values, marker="o", markersize=3, label=split)
    ax.set(xlabel="epoch", ylabel=key, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_loss(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str = "Loss",
    key: str = "loss",
) -> Path:
    return save_figure(loss_figure(history, title=title, key=key), path)


def identity_limits(true: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Ends of the y = x line: the joint range of both axes, widened when it is a point."""
    lo = float(min(np.min(true), np.min(predicted)))
    hi = float(max(np.max(true), np.max(predicted)))
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def predicted_vs_true_figure(
    true: Any, predicted: Any, *, title: str, units: str | None = None
) -> Figure:
    """Scatter of one output with the identity line; MAE and R² (via RegressionMetrics, the
    same numbers the run reports) in the title."""
    t = np.asarray(true, dtype=np.float64).ravel()
    p = np.asarray(predicted, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"true ({t.size}) and predicted ({p.size}) must have equal lengths")
    keep = np.isfinite(t) & np.isfinite(p)
    t, p = t[keep], p[keep]
    if t.size == 0:
        raise ValueError("no finite (true, predicted) pairs to plot")
    metrics = RegressionMetrics()
    metrics.update(p, t)
    scores = metrics.compute()
    suffix = f" {units}" if units else ""
    fig = _new_figure(SCATTER_SIZE)
    ax = fig.add_subplot()
    ax.scatter(t, p, s=12, alpha=0.6, edgecolors="none")
    lo, hi = identity_limits(t, p)
    ax.plot([lo, hi], [lo, hi], color="0.3", linestyle="--", linewidth=1, label="y = x")
    pad = 0.03 * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    unit_label = f" ({units})" if units else ""
    ax.set(xlabel=f"true{unit_label}", ylabel=f"predicted{unit_label}")
    ax.set_title(f"{title}\nMAE {scores['mae']:.3g}{suffix}, R² {scores['r2']:.3f}, n = {t.size}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_predicted_vs_true(
    true: Any, predicted: Any, path: str | Path, *, title: str, units: str | None = None
) -> Path:
    return save_figure(predicted_vs_true_figure(true, predicted, title=title, units=units), path)


def confusion_size(n_classes: int) -> tuple[float, float]:
    """Inches: grows with the class count so that cell labels stay readable, within limits."""
    side = min(max(4.0, 1.5 + 0.6 * n_classes), 16.0)
    return side + 1.0, side  # the extra width holds the colour bar


def confusion_figure(confusion: Any, class_names: Sequence[str], *, title: str) -> Figure:
    """Counts, rows = true class, columns = predicted class, each cell annotated."""
    counts = np.asarray(confusion)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"confusion must be [{k}, {k}] for {k} class names, got {counts.shape}")
    fig = _new_figure(confusion_size(k))
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(k)
    ax.set_xticks(ticks, labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(class_names))
    ax.set(xlabel="predicted", ylabel="true", title=title)
    threshold = counts.max() / 2 if counts.size else 0
    for i in range(k):
        for j in range(k):
            colour = "white" if counts[i, j] > threshold else "black"
            ax.text(j, i, f"{counts[i, j]:g}", ha="center", va="center", color=colour)
    fig.tight_layout()
    return fig


def plot_confusion(
    confusion: Any, class_names: Sequence[str], path: str | Path, *, title: str
) -> Path:
    return save_figure(confusion_figure(confusion, class_names, title=title), path)
