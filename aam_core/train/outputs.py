"""What a finished run writes from its best checkpoint: the split, validation predictions,
plots, the baselines on the same split (random forest, constant, sequencing depth alone, with
the depth-confound verdict), per-ASV importances (``importance.tsv``) and the report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from aam_core.checkpoint import Checkpoint, build_model, load_checkpoint, save_checkpoint
from aam_core.io.files import write_json
from aam_core.plan.config import RunConfig, Stage
from aam_core.train import artifacts
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
from aam_core.train.importance import (
    IMPORTANCE_FILE,
    importance_frame,
    linear_importance,
    write_importance,
)
from aam_core.train.loop import FitResult, RunData, evaluate_rows, pair_rows
from aam_core.train.prepare import (
    PreparedData,
    write_split_tsv,
)


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
        artifacts.plot_loss(fit.history, plots / "loss.png", title=f"{stage} loss")
    validation: dict[str, float] = {}
    train: dict[str, float] = {}
    predictions = None
    best = fit.best_checkpoint if fit.best_checkpoint and fit.best_checkpoint.exists() else None
    # read once: the validation predictions and the importances both come from it
    best_checkpoint = load_checkpoint(best) if best is not None else None
    if (
        best_checkpoint is not None
        and data.validation is not None
        and data.validation_collate is not None
    ):
        model = build_model(best_checkpoint).to(device)
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
        _write_validation_outputs(tracker, prepared, stage, out_dir, plots)
        # the same model on (a share of) its own train split, in eval mode as validation
        # is: the gap between the two is what it memorised
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
        if tracker.predictions:
            predictions = np.concatenate(tracker.predictions)
            if prepared.classes is None and predictions.ndim == 2 and predictions.shape[1] == 1:
                predictions = predictions[:, 0]
    if validation:
        brief = brief_metrics(validation)
        log.on_log(f"best checkpoint (epoch {fit.best_epoch}) validation: {brief}")
    baseline = forest = features = constant = None
    n_classes = None if prepared.classes is None else len(prepared.classes)
    depth = confound = None
    if stage == "train" and prepared.targets is not None and split.validation.size:
        constant = constant_baseline(
            prepared.targets, split.train, split.validation, n_classes=n_classes
        )
        target = (best_checkpoint.target or {}) if best_checkpoint is not None else {}
        depth, confound = _depth_baseline(prepared, validation, target.get("column"), log)
    if stage == "train" and (config.baseline or need_forest) and prepared.targets is not None:
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
    if stage == "train":
        kept = best_checkpoint
        if kept is None and fit.last_checkpoint.exists():
            kept = load_checkpoint(fit.last_checkpoint)
        _write_importance(kept, prepared, forest, out_dir / IMPORTANCE_FILE, log)
    return RunOutputs(
        validation, baseline, forest, features, predictions, constant, depth, confound, train
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
    and the forest's importances, whichever exist (see :mod:`aam_core.train.importance`)."""
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
        artifacts.plot_predicted_vs_true(
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
        artifacts.write_predictions_tsv(
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
        artifacts.plot_confusion(
            confusion, classes, plots / "confusion.png", title="Validation confusion matrix"
        )
    else:
        values = predicted[:, 0] if predicted.ndim == 2 and predicted.shape[1] == 1 else predicted
        artifacts.write_predictions_tsv(
            out_dir / "validation_predictions.tsv", ids, true=true, predicted=values
        )
        artifacts.plot_predicted_vs_true(
            true, values, plots / "predicted_vs_true.png", title="Validation: predicted vs true"
        )


def brief_metrics(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.4g}"
        for k, v in metrics.items()
        if isinstance(v, float) and not k.startswith("loss_")
    )
