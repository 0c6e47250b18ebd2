"""The two training stages as single calls, used by the command-line tool and the worker:

- :func:`run_pretrain`: a SequenceEncoder on UniFrac (+ masked nucleotides, optional Faith PD);
- :func:`run_train`: a regressor or classifier, from scratch or from a pretrained encoder
  (``freeze_base`` true or false), with a random-forest baseline on the same split.

A run writes into ``out_dir``: ``checkpoints/best.pt`` and ``last.pt``, ``metrics.jsonl``,
``validation_predictions.tsv``, ``split.tsv``, ``baseline.json``, ``report.json`` and
``plots/*.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aam_core import __version__
from aam_core.checkpoint import (
    CheckpointError,
    LoadReport,
    build_model,
    load_checkpoint,
    load_encoder,
)
from aam_core.io import Inputs
from aam_core.model import AAMConfig, SequenceEncoder, SequenceRegressor, TargetConfig
from aam_core.model.config import ConfigError
from aam_core.train import artifacts
from aam_core.train.baseline import fit_baseline, relative_abundance
from aam_core.train.baseline import to_dict as baseline_dict
from aam_core.train.callbacks import Callback, CallbackList
from aam_core.train.config import RunConfig, Stage
from aam_core.train.distributed import DistContext, init_distributed
from aam_core.train.loop import FitResult, RunData, Trainer, evaluate_rows
from aam_core.train.prepare import PreparedData, TargetSpec, prepare_data

Model = SequenceEncoder | SequenceRegressor


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    kind: str  # encoder | regressor | classifier
    best_checkpoint: Path | None
    last_checkpoint: Path
    fit: FitResult
    validation: dict[str, float]  # metrics of the best checkpoint on the validation split
    baseline: dict[str, Any] | None
    report: dict[str, Any]


def run_pretrain(
    inputs: Inputs,
    config: RunConfig,
    out_dir: str | Path,
    *,
    callbacks: Callback | None = None,
    resume: bool = False,
    device: str | None = None,
    dataset_sha256: dict[str, str] | None = None,
    ctx: DistContext | None = None,
) -> RunResult:
    torch.manual_seed(config.seed)  # the initial weights are part of the run's seed
    model_config = config.model_config("pretrain")
    weights = model_config.loss_weights
    prepared = prepare_data(
        inputs, config, need_unifrac=weights.unifrac > 0, need_faith_pd=weights.faith_pd > 0
    )
    model = SequenceEncoder(model_config)
    return _run(
        "pretrain",
        model,
        prepared,
        config,
        Path(out_dir),
        callbacks=callbacks,
        resume=resume,
        device=device,
        dataset_sha256=dataset_sha256,
        ctx=ctx,
        target=None,
        extra_report={},
    )


def run_train(
    inputs: Inputs,
    target: TargetSpec,
    config: RunConfig,
    out_dir: str | Path,
    *,
    base_checkpoint: str | Path | None = None,
    freeze_base: bool = False,
    callbacks: Callback | None = None,
    resume: bool = False,
    device: str | None = None,
    dataset_sha256: dict[str, str] | None = None,
    ctx: DistContext | None = None,
) -> RunResult:
    log = CallbackList([callbacks] if callbacks else [])
    base = None
    extra: dict[str, Any] = {}
    if base_checkpoint is not None:
        base = load_checkpoint(base_checkpoint)
        config = adopt_encoder_preprocessing(config, base.config, base.preprocessing, log)
    elif freeze_base:
        raise ConfigError("freeze_base needs a pretrained encoder to start from")
    weights = config.weights("train")
    prepared = prepare_data(
        inputs,
        config,
        target=target,
        need_unifrac=weights.unifrac > 0,
        need_faith_pd=weights.faith_pd > 0,
    )
    out_dim = len(prepared.classes) if prepared.classes is not None else 1
    head = TargetConfig(
        task=target.task,
        out_dim=out_dim,
        hidden=config.dim if base is None else base.config.dim,
        loss=config.target_loss,
    )
    if base is None:
        model_config = config.model_config("train", head)
    else:
        model_config = AAMConfig(
            nucleotide=base.config.nucleotide,
            sample=base.config.sample,
            target=head,
            loss_weights=weights,
            nucleotide_mask_fraction=base.config.nucleotide_mask_fraction,
            count_mask_fraction=base.config.count_mask_fraction,
        )
    torch.manual_seed(config.seed)  # the initial weights are part of the run's seed
    model = SequenceRegressor(model_config, freeze_base=freeze_base)
    if base is not None:
        loaded: LoadReport = load_encoder(model, base, name=str(base_checkpoint))
        extra["base_checkpoint"] = {
            "path": str(base_checkpoint),
            "kind": base.kind,
            "matched_keys": len(loaded.matched),
            "missing_keys": loaded.missing,
            "skipped_keys": len(loaded.skipped),
            "freeze_base": freeze_base,
        }
        log.on_log(
            f"loaded encoder {base_checkpoint}: {len(loaded.matched)} tensors matched, "
            f"{len(loaded.missing)} missing, {len(loaded.skipped)} skipped"
            + ("; encoder frozen" if freeze_base else "")
        )
    return _run(
        "train",
        model,
        prepared,
        config,
        Path(out_dir),
        callbacks=log,
        resume=resume,
        device=device,
        dataset_sha256=dataset_sha256,
        ctx=ctx,
        target=target,
        extra_report=extra,
    )


def adopt_encoder_preprocessing(
    config: RunConfig,
    encoder: AAMConfig,
    preprocessing: dict[str, Any],
    log: Callback,
) -> RunConfig:
    """Fine-tuning reads ASVs the way the encoder was trained to: its max_bp and token limit
    (and its rarefaction depth unless the run sets one). Architecture overrides must match."""
    overrides = config.architecture_overrides()
    have = {
        "embedding_dim": encoder.dim,
        "layers": encoder.sample.layers,
        "nucleotide_layers": encoder.nucleotide.layers,
        "heads": encoder.sample.heads,
    }
    clash = {k: (v, have[k]) for k, v in overrides.items() if k in have and have[k] != v}
    if clash:
        detail = ", ".join(f"{k}={v} (encoder has {h})" for k, (v, h) in clash.items())
        raise ConfigError(f"architecture settings differ from the pretrained encoder: {detail}")
    changes: dict[str, Any] = {
        "max_bp": encoder.nucleotide.max_bp,
        "token_limit": encoder.sample.token_limit,
        "truncate": bool(preprocessing.get("truncate", config.truncate)),
    }
    if config.rarefaction_depth is None and preprocessing.get("rarefaction_depth"):
        changes["rarefaction_depth"] = int(preprocessing["rarefaction_depth"])
    differing = {k: v for k, v in changes.items() if getattr(config, k) != v}
    if differing:
        log.on_log(
            "using the encoder's preprocessing: "
            + ", ".join(f"{k}={v}" for k, v in differing.items())
        )
    return config.replace(**changes)


def _fit_normalisers(model: Model, prepared: PreparedData) -> None:
    train = prepared.split.train
    base = model.base if isinstance(model, SequenceRegressor) else model
    weights = model.config.loss_weights
    if weights.faith_pd > 0 and prepared.engine is not None:
        faith = prepared.engine.faith_pd(prepared.rarefied.counts[train])
        base.faith_norm.fit(faith.float())
    if isinstance(model, SequenceRegressor) and prepared.classes is None:
        assert prepared.targets is not None
        model.target_norm.fit(torch.from_numpy(prepared.targets[train]).float())


def _class_weights(config: RunConfig, prepared: PreparedData) -> torch.Tensor | None:
    if config.class_weights != "balanced" or prepared.classes is None:
        return None
    assert prepared.targets is not None
    counts = np.bincount(prepared.targets[prepared.split.train], minlength=len(prepared.classes))
    weights = len(prepared.split.train) / (len(prepared.classes) * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def _run(
    stage: Stage,
    model: Model,
    prepared: PreparedData,
    config: RunConfig,
    out_dir: Path,
    *,
    callbacks: Callback | None,
    resume: bool,
    device: str | None,
    dataset_sha256: dict[str, str] | None,
    ctx: DistContext | None,
    target: TargetSpec | None,
    extra_report: dict[str, Any],
) -> RunResult:
    ctx = ctx or init_distributed(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = CallbackList([callbacks] if callbacks else [])
    report = {**prepared.report, **extra_report, "stage": stage}
    if ctx.is_main:
        for warning in prepared.report.get("warnings", []):
            log.on_log(f"warning: {warning}")
    _fit_normalisers(model, prepared)
    split = prepared.split
    data = RunData(
        train=prepared.dataset(split.train, config),
        validation=prepared.dataset(split.validation, config) if split.validation.size else None,
        train_collate=prepared.collator(config, split.train),
        validation_collate=prepared.collator(config, split.validation)
        if split.validation.size
        else None,
    )
    target_info = None
    if target is not None:
        target_info = {
            "column": target.column,
            "task": target.task,
            "classes": None if prepared.classes is None else list(prepared.classes),
        }

    def checkpoint_fields() -> dict[str, Any]:
        return {
            "preprocessing": {
                "max_bp": config.max_bp,
                "token_limit": config.token_limit,
                "truncate": config.truncate,
                "rarefaction_depth": prepared.depth,
            },
            "target": target_info,
            "training": {
                "stage": stage,
                "n_train": int(split.train.size),
                "n_validation": int(split.validation.size),
                "dataset_sha256": dict(dataset_sha256 or {}),
                "run_config": config.to_dict(),
                "library_version": __version__,
            },
        }

    resume_state = None
    last = out_dir / "checkpoints" / "last.pt"
    if resume and last.exists():
        checkpoint = load_checkpoint(last)
        if checkpoint.kind != (model.kind if isinstance(model, SequenceRegressor) else "encoder"):
            raise CheckpointError(f"{last}: a {checkpoint.kind} checkpoint cannot resume this run")
        model.load_state_dict(checkpoint.state_dict)
        resume_state = checkpoint.resume
    trainer = Trainer(
        model,
        data,
        config,
        stage=stage,
        out_dir=out_dir,
        checkpoint_fields=checkpoint_fields,
        callbacks=log,
        ctx=ctx,
        class_weights=_class_weights(config, prepared),
    )
    if ctx.is_main:
        log.on_log(
            f"{stage}: {split.train.size} train / {split.validation.size} validation samples, "
            f"depth {prepared.depth}, {trainer.total_steps} optimiser steps on {ctx.device}"
            + (f" x {ctx.world_size} processes" if ctx.enabled else "")
        )
    fit = trainer.fit(resume_state)
    kind = model.kind if isinstance(model, SequenceRegressor) else "encoder"
    if not ctx.is_main:
        return RunResult(
            out_dir, kind, fit.best_checkpoint, fit.last_checkpoint, fit, {}, None, report
        )
    validation, baseline = _finish(
        stage, fit, prepared, config, out_dir, ctx.device, report, data, log
    )
    return RunResult(
        out_dir, kind, fit.best_checkpoint, fit.last_checkpoint, fit, validation, baseline, report
    )


def _finish(
    stage: Stage,
    fit: FitResult,
    prepared: PreparedData,
    config: RunConfig,
    out_dir: Path,
    device: torch.device,
    report: dict[str, Any],
    data: RunData,
    log: Callback,
) -> tuple[dict[str, float], dict[str, Any] | None]:
    """Outputs of a finished run, from its best checkpoint: validation predictions, split,
    baseline, plots and the report."""
    split = prepared.split
    table = prepared.table
    artifacts.write_split_tsv(
        out_dir / "split.tsv",
        [table.sample_ids[i] for i in split.train],
        [table.sample_ids[i] for i in split.validation],
    )
    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    if any(r.get("loss") is not None for r in fit.history):
        artifacts.plot_loss(fit.history, plots / "loss.png", title=f"{stage} loss")
    validation: dict[str, float] = {}
    best = fit.best_checkpoint if fit.best_checkpoint and fit.best_checkpoint.exists() else None
    if best is not None and data.validation is not None and data.validation_collate is not None:
        model = build_model(load_checkpoint(best)).to(device)
        tracker = evaluate_rows(
            model,
            data.validation,
            data.validation_collate,
            np.arange(len(data.validation)),
            batch_size=config.batch_size,
            device=device,
            precision=config.precision,
            keep=True,
        )
        validation = tracker.summary()
        _write_validation_outputs(tracker, prepared, stage, out_dir, plots)
    baseline = None
    if stage == "train" and config.baseline and prepared.targets is not None:
        result = fit_baseline(
            relative_abundance(prepared.rarefied),
            prepared.targets,
            split.train,
            split.validation,
            task="classification" if prepared.classes is not None else "regression",
            n_classes=None if prepared.classes is None else len(prepared.classes),
            seed=config.seed,
        )
        baseline = baseline_dict(result)
        artifacts.write_json(out_dir / "baseline.json", baseline)
        log.on_log(f"baseline (random forest) validation: {_brief(result.metrics)}")
    report.update(
        stopped=fit.stopped,
        epochs_run=fit.epochs_run,
        steps=fit.steps,
        monitor=fit.monitor,
        best_epoch=fit.best_epoch,
        best_value=fit.best_value,
        validation=validation,
        baseline=None if baseline is None else baseline.get("metrics"),
    )
    artifacts.write_json(out_dir / "report.json", report)
    if validation:
        log.on_log(f"best checkpoint (epoch {fit.best_epoch}) validation: {_brief(validation)}")
    return validation, baseline


def _write_validation_outputs(
    tracker: Any, prepared: PreparedData, stage: Stage, out_dir: Path, plots: Path
) -> None:
    ids = tracker.sample_ids
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


def _brief(metrics: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.4g}"
        for k, v in metrics.items()
        if isinstance(v, float) and not k.startswith("loss_")
    )


def run_baseline(
    inputs: Inputs,
    target: TargetSpec,
    config: RunConfig,
    *,
    split_file: str | Path | None = None,
) -> dict[str, Any]:
    """The random forest alone, on the run's preprocessing and split: the seeded split of
    ``config`` or the one a training run wrote (``split.tsv``)."""
    from aam_core.io.errors import InputError
    from aam_core.train.splits import Split

    prepared = prepare_data(inputs, config, target=target)
    split = prepared.split
    if split_file is not None:
        given = artifacts.read_split_tsv(split_file)
        index = {sid: i for i, sid in enumerate(prepared.table.sample_ids)}
        wanted = [*given.get("train", []), *given.get("validation", [])]
        unknown = [sid for sid in wanted if sid not in index]
        if unknown:
            raise InputError(
                f"{len(unknown)} samples of the split are not usable in this table (missing, "
                f"below the rarefaction depth or without a target): {unknown[:5]}",
                file=Path(split_file).name,
            )
        split = Split(
            np.sort([index[s] for s in given.get("train", [])]).astype(np.int64),
            np.sort([index[s] for s in given.get("validation", [])]).astype(np.int64),
        )
    assert prepared.targets is not None
    result = fit_baseline(
        relative_abundance(prepared.rarefied),
        prepared.targets,
        split.train,
        split.validation,
        task=target.task,
        n_classes=None if prepared.classes is None else len(prepared.classes),
        seed=config.seed,
    )
    return {
        **baseline_dict(result),
        "n_train": int(split.train.size),
        "n_validation": int(split.validation.size),
        "rarefaction_depth": prepared.depth,
        "warnings": prepared.report.get("warnings", []),
    }
