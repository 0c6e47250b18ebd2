"""What the command-line tool prints: JSON, run, prediction and checkpoint summaries."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aam_core.io.files import atomic_write, json_text

if TYPE_CHECKING:  # the heavy modules load when a command runs, so that --help is quick
    from aam_core.checkpoint import Checkpoint
    from aam_core.predict import PredictionResult, Predictor
    from aam_core.train.run import RunResult


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _brief(metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return "none"
    shown = [
        f"{k} {v:.4g}"
        for k, v in metrics.items()
        if isinstance(v, int | float) and not k.startswith("loss_")
    ]
    return ", ".join(shown) or "none"


def run_summary(result: RunResult) -> str:
    fit = result.fit
    lines = [
        f"{result.report.get('stage', result.kind)} {fit.stopped}: {fit.epochs_run} epochs, "
        f"{fit.steps} optimiser steps; best epoch {fit.best_epoch} "
        f"({fit.monitor} {_number(fit.best_value)})"
    ]
    if fit.stopped == "requested":
        lines.append("stopped on request: run the same command with --resume to continue")
    if result.validation:
        lines.append(f"validation ({result.kind}): {_brief(result.validation)}")
    if result.baseline is not None:
        lines.append(f"baseline (random forest): {_brief(result.baseline.get('metrics'))}")
    best = result.best_checkpoint if result.best_checkpoint else None
    lines.append(f"checkpoints: best {best or '(none yet)'}, last {result.last_checkpoint}")
    lines.append(f"outputs: {result.out_dir}")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def load_predictor(path: Path, device: str, precision: str) -> Predictor:
    from aam_core.checkpoint import load_checkpoint
    from aam_core.predict import Predictor
    from aam_core.train.distributed import resolve_device

    checkpoint = load_checkpoint(path, name=str(path))
    return Predictor(checkpoint, device=resolve_device(device), precision=precision)


def prediction_note(result: PredictionResult, out: Path) -> str:
    warned = [s for s in result.samples if s.warnings]
    n_warnings = sum(len(s.warnings) for s in warned)
    return (
        f"predicted {len(result.samples)} samples with a {result.kind} -> {out} "
        f"({n_warnings} warnings on {len(warned)} samples)"
    )


def json_output(obj: Any, out: Path | None) -> str:
    """The JSON text a command prints, also written to ``out`` when given."""
    text = json_text(obj, indent=2)
    if out is not None:
        with atomic_write(out) as handle:
            handle.write(text + "\n")
    return text


def output_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    return "json" if path.suffix.lower() == ".json" else "tsv"


def checkpoint_summary(checkpoint: Checkpoint, parameters: Mapping[str, int]) -> dict[str, Any]:
    training = checkpoint.training
    return {
        "kind": checkpoint.kind,
        "target": checkpoint.target,
        "freeze_base": checkpoint.freeze_base,
        "architecture": {
            "embedding_dim": checkpoint.config.dim,
            "sample_layers": checkpoint.config.sample.layers,
            "nucleotide_layers": checkpoint.config.nucleotide.layers,
            "heads": checkpoint.config.sample.heads,
        },
        "preprocessing": checkpoint.preprocessing,
        "training": {
            k: training.get(k) for k in ("stage", "n_train", "n_validation", "dataset_sha256")
        },
        "metrics": checkpoint.metrics,
        "parameters": dict(parameters),
        "library_version": checkpoint.library_version,
        "format_version": checkpoint.format_version,
    }


def format_checkpoint_summary(info: Mapping[str, Any]) -> str:
    lines = [f"kind: {info['kind']}"]
    target = info.get("target")
    if target:
        lines.append(f"target: {target.get('column')} ({target.get('task')})")
        if target.get("classes"):
            lines.append(f"classes: {', '.join(map(str, target['classes']))}")
    arch = info["architecture"]
    lines.append(
        f"architecture: dim {arch['embedding_dim']}, {arch['sample_layers']} sample layers, "
        f"{arch['nucleotide_layers']} nucleotide layers, {arch['heads']} heads"
        + (", encoder frozen" if info.get("freeze_base") else "")
    )
    pre = info["preprocessing"]
    lines.append("preprocessing: " + ", ".join(f"{k} {v}" for k, v in pre.items()))
    training = info["training"]
    lines.append(
        f"training: stage {training.get('stage')}, {training.get('n_train')} train / "
        f"{training.get('n_validation')} validation samples"
    )
    best = info["metrics"].get("best") or {}
    if best:
        lines.append(f"best epoch {best.get('epoch')} (monitor {best.get('monitor')})")
        for split in ("validation", "train"):
            if best.get(split):
                lines.append(f"  {split}: {_brief(best[split])}")
    params = info["parameters"]
    lines.append(f"parameters: {params['total']:,} total, {params['trainable']:,} trainable")
    width = max(len(k) for k in params)
    lines.extend(
        f"  {k:<{width}}  {v:>12,}" for k, v in params.items() if k not in ("total", "trainable")
    )
    lines.append(
        f"written by aam {info['library_version']}, checkpoint format {info['format_version']}"
    )
    return "\n".join(lines)


def _difference(entry: Mapping[str, Any] | None, name: str) -> str:
    """AAM minus ``name`` in the primary metric: mean [low, high] and which side wins."""
    if entry is None or entry.get("mean") is None:
        return ""
    verdict = {"aam": "aam better", "other": f"{name} better"}.get(entry.get("better") or "")
    return (
        f"{entry['mean']:+.4g} [{_number(entry.get('low'))}, {_number(entry.get('high'))}] "
        f"{verdict or 'no clear difference'}"
    )


def cv_summary(
    report: Mapping[str, Any], files: Mapping[str, Path], refit: RunResult | None = None
) -> str:
    """A finished cross-validation: per model the mean of the primary metric per sample and
    with each subject weighted once, AAM's paired differences with their 95% intervals, the
    depth verdict when it flags the target, and the files written."""
    metric, target = report["primary_metric"], report["target"]
    group = report["group_column"]
    subjects = f"subjects ({group})" if group else "subjects (one per sample)"
    lines = [
        f"cross-validated {target['column']} ({target['task']}): {report['n_samples']} samples "
        f"of {report['n_groups']} {subjects}, {report['folds']} folds x {report['repeats']} "
        f"repeat{'s' if report['repeats'] != 1 else ''}"
    ]
    left_out = [f"{n} {why}" for why, n in (report.get("samples_left_out") or {}).items() if n]
    if left_out:
        lines.append(f"left out: {', '.join(left_out)}")
    header = ("model", f"{metric} per sample", f"{metric} subject-weighted")
    rows = [(*header, "aam minus model [95% interval]")]
    for name, entry in report["models"].items():
        rows.append(
            (
                name,
                _number(entry["per_sample"].get(metric)),
                _number(entry["subject_weighted"].get(metric)),
                _difference(report["differences"].get(f"aam-{name}"), name),
            )
        )
    widths = [max(len(row[k]) for row in rows) for k in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        lines.append("  ".join([*cells, row[3]]).rstrip())
    depth = report["confounds"].get("depth") or {}
    if depth.get("flagged"):
        lines.append(f"depth confound: {depth.get('message')}")
    lines.append(f"report: {files['report']}")
    lines.append(f"predictions: {files['predictions']}")
    plots = [str(path) for name, path in files.items() if name.startswith("plot_")]
    lines.append(f"plots: {', '.join(plots)}")
    if refit is not None:
        lines.append(f"refit model: {refit.best_checkpoint or refit.last_checkpoint}")
    return "\n".join(lines)
