"""The figures of a cross-validation, drawn with matplotlib's object-oriented API on an Agg
canvas (never pyplot, whose global state is not ours to change); the same results give the
same picture.

- ``fold_scores``: per model and view, the fold values of the primary metric (points) with
  their mean and bootstrap 95% interval (bar);
- ``oof_predicted_vs_true`` (regression): each model's out-of-fold predictions of the first
  repeat against the truth;
- ``roc`` (classification): each model's ROC curve over the pooled out-of-fold probabilities
  of the first repeat (the positive class; one-vs-rest, micro-averaged, for more classes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import auc, roc_curve

from aam_core.crossval.scoring import PRIMARY, VIEWS, bootstrap_interval
from aam_core.io.predictions import PREDICTION

Records = Mapping[str, Sequence[Mapping[str, Any]]]


def _figure(panels: int, height: float = 4.8) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * panels, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def _save(fig: Any, path: Path, title: str) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _first_repeat(predictions: pd.DataFrame, model: str) -> pd.DataFrame:
    rows = predictions[predictions["model"] == model]
    return rows[rows["seed"] == rows["seed"].min()] if len(rows) else rows


def draw_fold_scores(axes: Sequence[Any], task: str, records: Records) -> None:
    metric = PRIMARY[task]
    jitter = np.random.default_rng(0)  # fixed: the same results give the same picture
    for ax, view in zip(axes, VIEWS, strict=False):
        for x, model in enumerate(records):
            values = np.array([r[view][metric] for r in records[model]], dtype=np.float64)
            values = values[np.isfinite(values)]
            if not values.size:
                continue
            ax.scatter(x + jitter.uniform(-0.15, 0.15, values.size), values, s=14, alpha=0.6)
            ci = bootstrap_interval(values)
            bar = [[ci["mean"] - ci["low"]], [ci["high"] - ci["mean"]]]
            ax.errorbar(x + 0.3, ci["mean"], yerr=bar, fmt="o", color="black", capsize=4)
        ax.set_xticks(range(len(records)), list(records))
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per fold ({view.replace('_', ' ')})")
        ax.grid(alpha=0.3)


def draw_predicted_vs_true(ax: Any, model: str, rows: pd.DataFrame) -> None:
    true, predicted = rows["true"].to_numpy(float), rows[PREDICTION].to_numpy(float)
    ax.scatter(true, predicted, s=8, alpha=0.5)
    low = float(min(true.min(), predicted.min()))
    high = float(max(true.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=1)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted (out of fold, first repeat)")
    ax.set_title(f"{model}: predicted vs true")


def fold_scores(path: Path, title: str, task: str, records: Records) -> Path:
    fig, axes = _figure(len(VIEWS))
    draw_fold_scores(axes, task, records)
    return _save(fig, path, title)


def oof_predicted_vs_true(
    path: Path, title: str, predictions: pd.DataFrame, models: Sequence[str]
) -> Path:
    shown = [(m, _first_repeat(predictions, m)) for m in models]
    shown = [(m, rows) for m, rows in shown if len(rows)]
    fig, axes = _figure(max(len(shown), 1))
    for ax, (model, rows) in zip(axes, shown, strict=False):
        draw_predicted_vs_true(ax, model, rows)
    return _save(fig, path, title)


def roc(
    path: Path,
    title: str,
    predictions: pd.DataFrame,
    classes: Sequence[str],
    models: Sequence[str],
) -> Path:
    fig, axes = _figure(1, height=5.0)
    ax = axes[0]
    for model in models:
        rows = _first_repeat(predictions, model)
        if not len(rows):
            continue
        prob = rows[[f"prob_{c}" for c in classes]].to_numpy(np.float64)  # [n, K]
        truth = rows["true"].astype(str).to_numpy()
        if len(classes) == 2:
            hits, scores = truth == classes[1], prob[:, 1]
        else:  # one-vs-rest, every (sample, class) pair pooled
            hits = (truth[:, None] == np.array(classes)[None, :]).ravel()
            scores = prob.ravel()
        if hits.all() or not hits.any():
            continue
        fpr, tpr, _ = roc_curve(hits, scores)
        ax.plot(fpr, tpr, label=f"{model} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    positive = classes[1] if len(classes) == 2 else "one-vs-rest, micro-averaged"
    ax.set_title(f"ROC, out of fold, first repeat ({positive})")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path, title)


def quality_figure(
    path: Path, title: str, task: str, records: Records, predictions: pd.DataFrame
) -> Path:
    """The benchmark's one figure: :func:`fold_scores`'s panels, and for regression AAM's and
    the forest's out-of-fold predictions of the first repeat against the truth."""
    scatter = []
    for model in ("aam", "forest") if task == "regression" else ():
        rows = _first_repeat(predictions, model)
        if len(rows):
            scatter.append((model, rows))
    fig, axes = _figure(len(VIEWS) + len(scatter))
    draw_fold_scores(axes, task, records)
    for ax, (model, rows) in zip(axes[len(VIEWS) :], scatter, strict=True):
        draw_predicted_vs_true(ax, model, rows)
    return _save(fig, path, title)
