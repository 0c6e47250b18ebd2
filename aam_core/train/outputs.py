"""What a finished run writes from its best checkpoint: the split, validation predictions,
plots, the baselines on the same split (random forest, constant, sequencing depth alone, with
the depth-confound verdict), per-ASV importances and the report (JSON and the metrics log are
written with :mod:`aam_core.io.files`).

Plots use matplotlib's object-oriented ``Figure`` with an Agg canvas and never pyplot:
pyplot keeps global state (the current backend, a registry of open figures) that is neither
thread-safe nor ours to change inside a worker or a user's notebook. matplotlib is imported
inside the plotting functions so that importing this module stays cheap.

``importance.tsv`` holds per-ASV importances of a trained model in q2-sample-classifier's
ImportanceFormat: a header line, then ``feature<TAB>value[<TAB>value...]`` per ASV, every value
a number. Columns, after ``feature`` (the feature table's ID of the ASV):

- ``importance``: the L2 norm of the ASV's weights in the target head's linear base
  (``linear_head``): its weight on log1p(count) / log1p(depth) and its weight on presence
  (absent from checkpoints written before that term), over every output (class). These are on
  the head's output scale (standardised targets for regression, logits for classification), not
  an attribution of the transformer's prediction: an ASV the network relies on may still have
  small linear weights.
- ``random_forest``: the baseline forest's ``feature_importances_`` (mean decrease in
  impurity), when the forest ran.

Rows are the ASVs with reads in the train split (the model's vocabulary), sorted by the first
column descending (ties keep the table's order). A column that does not exist is left out; with
neither, there is no file.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from aam_core.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from aam_core.io.files import atomic_write, write_json
from aam_core.io.predictions import prediction_frame
from aam_core.plan.config import RunConfig, Stage
from aam_core.train.baselines import (
    BaselineResult,
    Task,
    constant_baseline,
    depth_confound,
    fit_baseline,
    fit_depth_baseline,
    relative_abundance,
)
from aam_core.train.baselines import to_dict as baseline_dict
from aam_core.train.callbacks import Callback
from aam_core.train.loop import FitResult, RunData, evaluate_rows, pair_rows
from aam_core.train.metrics import RegressionMetrics
from aam_core.train.prepare import SPLITS, PreparedData, write_split_tsv

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True, eq=False)
class RunOutputs:
    validation: dict[str, float]  # the best checkpoint's validation metrics
    baseline: dict[str, Any] | None  # the random forest's summary (baseline.json)
    forest: BaselineResult | None  # the tuned forest, fitted on the train split
    features: sp.csr_matrix | None  # the forest's inputs: rarefied relative abundances
    predictions: np.ndarray | None  # the model's validation predictions, split order
    constant: dict[str, Any] | None = None  # the constant baseline (train runs)
    depth: dict[str, Any] | None = None  # the depth-only model's summary (train runs)
    depth_confound: dict[str, Any] | None = None  # its verdict (aam_core.train.baselines)
    # the best checkpoint on (up to PAIR_SAMPLES of) its train split, in eval mode
    train: dict[str, float] = dataclasses.field(default_factory=dict)


def write_outputs(
    stage: Stage,
    fit: FitResult,
    prepared: PreparedData,
    config: RunConfig,
    out_dir: Path,
    device: torch.device,
    data: RunData,
    log: Callback,
    *,
    need_forest: bool = False,
) -> RunOutputs:
    """Outputs of a finished run, from its best checkpoint: validation predictions, split,
    baseline (a random forest tuned by its out-of-bag error, with ``config.baseline`` or
    ``need_forest``) and plots."""
    split = prepared.split
    table = prepared.table
    write_split_tsv(
        out_dir / "split.tsv",
        [table.sample_ids[i] for i in split.train],
        [table.sample_ids[i] for i in split.validation],
    )
    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    if any(r.get("loss") is not None for r in fit.history):
        plot_loss(fit.history, plots / "loss.png", title=f"{stage} loss")
    best = fit.best_checkpoint if fit.best_checkpoint and fit.best_checkpoint.exists() else None
    # read once: the validation predictions and the importances both come from it
    best_checkpoint = load_checkpoint(best) if best is not None else None
    outputs = RunOutputs({}, None, None, None, None)
    if (
        best_checkpoint is not None
        and data.validation is not None
        and data.validation_collate is not None
    ):
        outputs = _score_best(
            best_checkpoint, stage, fit, prepared, config, out_dir, device, data, log
        )
    if outputs.validation:
        brief = brief_metrics(outputs.validation)
        log.on_log(f"best checkpoint (epoch {fit.best_epoch}) validation: {brief}")
    if stage != "train":
        return outputs
    outputs = _with_baselines(outputs, best_checkpoint, prepared, config, out_dir, log, need_forest)
    kept = best_checkpoint
    if kept is None and fit.last_checkpoint.exists():
        kept = load_checkpoint(fit.last_checkpoint)
    _write_importance(kept, prepared, outputs.forest, out_dir / IMPORTANCE_FILE, log)
    return outputs


def _score_best(
    checkpoint: Checkpoint,
    stage: Stage,
    fit: FitResult,
    prepared: PreparedData,
    config: RunConfig,
    out_dir: Path,
    device: torch.device,
    data: RunData,
    log: Callback,
) -> RunOutputs:
    """The best checkpoint on the validation split (its predictions written and plotted) and
    on a share of its own train split, in eval mode both: the gap is what it memorised."""
    assert data.validation is not None and data.validation_collate is not None
    model = build_model(checkpoint).to(device)
    tracker = evaluate_rows(
        model,
        data.validation,
        data.validation_collate,
        np.arange(len(data.validation)),
        batch_size=config.batch,
        device=device,
        precision=config.precision,
        keep=True,
    )
    validation = tracker.summary()
    _write_validation_outputs(tracker, prepared, stage, out_dir, out_dir / "plots")
    sample = pair_rows(np.arange(len(data.train)))
    train = evaluate_rows(
        model,
        data.train,
        data.train_collate,
        sample,
        batch_size=config.batch,
        device=device,
        precision=config.precision,
    ).summary()
    log.on_log(
        f"best checkpoint (epoch {fit.best_epoch}) on {sample.size} train samples: "
        f"{brief_metrics(train)}"
    )
    predictions = None
    if tracker.predictions:
        predictions = np.concatenate(tracker.predictions)
        if prepared.classes is None and predictions.ndim == 2 and predictions.shape[1] == 1:
            predictions = predictions[:, 0]
    return RunOutputs(validation, None, None, None, predictions, train=train)


def _with_baselines(
    outputs: RunOutputs,
    best: Checkpoint | None,
    prepared: PreparedData,
    config: RunConfig,
    out_dir: Path,
    log: Callback,
    need_forest: bool,
) -> RunOutputs:
    """``outputs`` with the baselines of a train run on its split: the constant and the
    depth-only model (with a validation split), the random forest (``baseline.json``)."""
    split = prepared.split
    n_classes = None if prepared.classes is None else len(prepared.classes)
    constant = depth = confound = None
    if prepared.targets is not None and split.validation.size:
        constant = constant_baseline(
            prepared.targets, split.train, split.validation, n_classes=n_classes
        )
        target = (best.target or {}) if best is not None else {}
        depth, confound = _depth_baseline(prepared, outputs.validation, target.get("column"), log)
    baseline = forest = features = None
    if (config.baseline or need_forest) and prepared.targets is not None:
        features = relative_abundance(prepared.rarefied)
        forest = fit_baseline(
            features,
            prepared.targets,
            split.train,
            split.validation,
            task="classification" if prepared.classes is not None else "regression",
            n_classes=n_classes,
            seed=config.seed,
            tune=True,
        )
        baseline = baseline_dict(forest)
        write_json(out_dir / "baseline.json", baseline)
        log.on_log(
            f"baseline (random forest, {forest.params}) validation: {brief_metrics(forest.metrics)}"
        )
    return dataclasses.replace(
        outputs,
        baseline=baseline,
        forest=forest,
        features=features,
        constant=constant,
        depth=depth,
        depth_confound=confound,
    )


def _depth_baseline(
    prepared: PreparedData, validation: dict[str, float], column: str | None, log: Callback
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The depth-only model on the run's split, from the kept samples' raw depths (before
    rarefaction, which erases them), and its verdict beside the model's ``validation``
    metrics; both logged, the verdict as a warning when the labels follow depth."""
    assert prepared.targets is not None
    classes = prepared.classes
    task: Task = "classification" if classes is not None else "regression"
    fitted = fit_depth_baseline(
        prepared.table.depths(),
        prepared.targets,
        prepared.split.train,
        prepared.split.validation,
        task=task,
        n_classes=None if classes is None else len(classes),
    )
    summary = {k: fitted[k] for k in ("metrics", "train_metrics", "coefficients", "feature")}
    verdict = depth_confound(summary["metrics"], validation, task, target=column)
    brief = brief_metrics(summary["metrics"])
    log.on_log(f"baseline (log reads per sample alone) validation: {brief}")
    if verdict is not None and verdict["confounded"]:
        log.on_log(f"warning: {verdict['message']}")
    return summary, verdict


def _write_importance(
    checkpoint: Checkpoint | None,
    prepared: PreparedData,
    forest: BaselineResult | None,
    path: Path,
    log: Callback,
) -> None:
    """``importance.tsv`` over the train split's ASVs: the kept checkpoint's linear-term weights
    and the forest's importances, whichever exist (the module docstring describes the file)."""
    vocabulary, rows = prepared.asv_vocabulary()  # rows: [n_features], 1-based, 0 = not seen
    seen = np.flatnonzero(rows)  # [V] feature indices, table order
    model = None
    if checkpoint is not None:
        weights = linear_importance(checkpoint)  # [V] in vocabulary order
        if weights is not None and checkpoint.vocabulary == vocabulary:
            model = weights[rows[seen] - 1]
        elif weights is not None:  # a resumed run on other data: its rows mean other ASVs
            log.on_log("importance: the checkpoint's ASV vocabulary is not this run's; left out")
    by_forest = None
    if forest is not None and forest.forest is not None:
        by_forest = np.asarray(forest.forest.feature_importances_, dtype=np.float64)[seen]
    features = [prepared.rarefied.feature_ids[f] for f in seen]
    frame = importance_frame(features, importance=model, random_forest=by_forest)
    if frame is not None:
        write_importance(path, frame)


def record_baselines(best: Path | None, outputs: RunOutputs) -> None:
    """Write the baselines' validation metrics into the best checkpoint (``metrics
    ["baselines"]``: ``random_forest``, ``constant`` and ``depth``; the depth verdict as
    ``metrics["depth_confound"]``), so that the model's card, row and pages set them beside
    the model's own from the file alone. A run without a best checkpoint has no validation
    split, hence no baselines to record."""
    baselines: dict[str, Any] = {}
    if outputs.baseline is not None:
        baselines["random_forest"] = {
            "validation": outputs.baseline["metrics"],
            "train": outputs.baseline["train_metrics"],
            "n_estimators": outputs.baseline["n_estimators"],
            "params": outputs.baseline["params"],
        }
    if outputs.constant is not None:
        baselines["constant"] = {
            "validation": outputs.constant["metrics"],
            "prediction": outputs.constant["prediction"],
        }
    if outputs.depth is not None:
        baselines["depth"] = {
            "validation": outputs.depth["metrics"],
            "train": outputs.depth["train_metrics"],
            "coefficients": outputs.depth["coefficients"],
        }
    if best is None or not baselines or not best.exists():
        return
    checkpoint = load_checkpoint(best)
    metrics = {**checkpoint.metrics, "baselines": baselines}
    if outputs.depth_confound is not None:
        metrics["depth_confound"] = outputs.depth_confound
    save_checkpoint(dataclasses.replace(checkpoint, metrics=metrics), best)


def write_report(
    report: dict[str, Any], fit: FitResult, outputs: RunOutputs, out_dir: Path
) -> None:
    report.update(
        stopped=fit.stopped,
        epochs_run=fit.epochs_run,
        steps=fit.steps,
        monitor=fit.monitor,
        best_epoch=fit.best_epoch,
        best_value=fit.best_value,
        validation=outputs.validation,
        baseline=None if outputs.baseline is None else outputs.baseline.get("metrics"),
        depth_baseline=outputs.depth,
        depth_confound=outputs.depth_confound,
        train_evaluation=outputs.train,
    )
    verdict = outputs.depth_confound
    if verdict is not None and verdict["confounded"]:  # a new list: the run's own is shared
        report["warnings"] = [*report.get("warnings", []), verdict["message"]]
    write_json(out_dir / "report.json", report)


# Pairs drawn in the predicted-vs-true distance plot (a validation split of 2,000 samples has
# two million); its title's MAE and R² are those of the pairs drawn.
PLOTTED_PAIRS = 20_000


def _write_validation_outputs(
    tracker: Any, prepared: PreparedData, stage: Stage, out_dir: Path, plots: Path
) -> None:
    ids = tracker.sample_ids
    if tracker.distance_pairs is not None:
        predicted_pairs, true_pairs = tracker.distance_pairs
        chosen = np.random.default_rng(0).permutation(true_pairs.size)[:PLOTTED_PAIRS]
        plot_predicted_vs_true(
            true_pairs[chosen],
            predicted_pairs[chosen],
            plots / "unifrac_distances.png",
            title=f"Validation: UniFrac distance, predicted vs true ({true_pairs.size} pairs)",
        )
    if stage == "pretrain" or not tracker.predictions:
        return
    predicted = np.concatenate(tracker.predictions)
    true = np.concatenate(tracker.truths)
    if prepared.classes is not None:
        classes = list(prepared.classes)
        write_predictions_tsv(
            out_dir / "validation_predictions.tsv",
            ids,
            true=true,
            predicted=predicted.argmax(1),
            classes=classes,
            probabilities=predicted,
        )
        k = len(classes)
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (true.astype(np.int64), predicted.argmax(1)), 1)
        plot_confusion(
            confusion, classes, plots / "confusion.png", title="Validation confusion matrix"
        )
    else:
        values = predicted[:, 0] if predicted.ndim == 2 and predicted.shape[1] == 1 else predicted
        write_predictions_tsv(
            out_dir / "validation_predictions.tsv", ids, true=true, predicted=values
        )
        plot_predicted_vs_true(
            true, values, plots / "predicted_vs_true.png", title="Validation: predicted vs true"
        )


def brief_metrics(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.4g}"
        for k, v in metrics.items()
        if isinstance(v, float) and not k.startswith("loss_")
    )


# -- importance.tsv ----------------------------------------------------------------------

IMPORTANCE_FILE = "importance.tsv"
# [V + 1, out_dim] each; row 0: ASVs outside the vocabulary. The presence term is absent from
# checkpoints written before it.
LINEAR_WEIGHTS = ("target_head.linear.weight", "target_head.linear.presence")


def linear_importance(checkpoint: Checkpoint) -> np.ndarray | None:
    """``float64 [V]``: per ASV of ``checkpoint.vocabulary`` (in its order), the L2 norm of its
    linear-term weights (log abundance and presence) over the outputs; None for a model
    without the linear term (no vocabulary, or a checkpoint older than the term)."""
    found = [checkpoint.state_dict.get(key) for key in LINEAR_WEIGHTS]
    weights = [w.detach().cpu().double().numpy()[1:] for w in found if w is not None]
    if not weights or checkpoint.vocabulary is None:
        return None
    rows = np.concatenate(weights, axis=1)  # [V, terms * out_dim]
    if rows.shape[0] != len(checkpoint.vocabulary):
        raise ValueError(
            f"the linear term has {rows.shape[0]} ASV rows, the vocabulary lists "
            f"{len(checkpoint.vocabulary)} ASVs"
        )
    return np.linalg.norm(rows, axis=1)  # [V]


def importance_frame(
    features: Sequence[str],
    *,
    importance: np.ndarray | None = None,
    random_forest: np.ndarray | None = None,
) -> pd.DataFrame | None:
    """The table ``importance.tsv`` holds, indexed by ``feature``; None without a column or
    without features. Each column is ``[len(features)]``, finite."""
    columns = {
        name: np.asarray(values, dtype=np.float64)
        for name, values in (("importance", importance), ("random_forest", random_forest))
        if values is not None
    }
    if not columns or not features:
        return None
    for name, values in columns.items():
        if values.shape != (len(features),):
            raise ValueError(
                f"{name} holds {values.shape} values, expected one per feature ({len(features)})"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} holds non-finite values")
    bad = [f for f in features if "\t" in f or "\n" in f or "\r" in f]
    if bad:
        raise ValueError(f"feature IDs may not hold tabs or line breaks, got {bad[:3]!r}")
    frame = pd.DataFrame(columns, index=pd.Index(list(features), name="feature"))
    first = next(iter(columns))
    return frame.sort_values(first, ascending=False, kind="mergesort")


def write_importance(path: str | Path, frame: pd.DataFrame) -> None:
    """``frame`` (from :func:`importance_frame`) as TSV; values written as the shortest text
    that reads back as the same float64."""
    with atomic_write(path) as fh:
        fh.write("\t".join([str(frame.index.name), *map(str, frame.columns)]) + "\n")
        for feature, values in zip(frame.index, frame.to_numpy(), strict=True):
            fh.write("\t".join([str(feature), *(repr(float(v)) for v in values)]) + "\n")


# -- files and plots ---------------------------------------------------------------------

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
    """Per-sample predictions in the one prediction table layout
    (:func:`aam_core.io.predictions.prediction_frame`): ``sample_id, true, prediction``
    (``true_0..``, ``prediction_0..`` for several outputs); with ``classes``, class names in
    ``true`` and ``prediction`` (indices are mapped), then ``prob_<class>`` per class. Columns
    whose values are not given are left out (unlabelled samples have no ``true``)."""
    n = len(sample_ids)
    if classes is None:
        if probabilities is not None:
            raise ValueError("probabilities need class names (classes=...)")
        values = {
            name: None if v is None else _column(v, n, name).astype(np.float64)
            for name, v in (("true", true), ("predicted", predicted))
        }
        frame = prediction_frame(sample_ids, true=values["true"], values=values["predicted"])
    else:
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be unique, got {classes}")
        names = {
            name: None if v is None else _names(_column(v, n, name).ravel(), classes, name)
            for name, v in (("true", true), ("predicted", predicted))
        }
        prob = None
        if probabilities is not None:
            prob = _column(probabilities, n, "probabilities").astype(np.float64)
            if prob.ndim != 2 or prob.shape[1] != len(classes):
                raise ValueError(
                    f"probabilities must be [n, {len(classes)}] (one column per class), "
                    f"got shape {prob.shape}"
                )
        frame = prediction_frame(
            sample_ids,
            true=names["true"],
            labels=names["predicted"],
            probabilities=prob,
            classes=classes,
        )
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
