"""The two training stages as single calls, used by the command-line tool and the worker
(planned by :func:`aam_core.train.local_plan.plan_local`):

- :func:`run_pretrain`: a SequenceEncoder on UniFrac (+ masked nucleotides, optional Faith PD),
  from scratch or continued from an encoder;
- :func:`run_train`: a regressor or classifier, from scratch or from a pretrained encoder
  (frozen or trained on), beginning as its linear base, with a random forest, a constant and
  sequencing depth alone as baselines on the same split; with ``refit``, trained again on the
  train and validation samples together.

A run writes into ``out_dir``: ``checkpoints/best.pt`` and ``last.pt`` (and ``refit.pt``),
``metrics.jsonl``, ``validation_predictions.tsv``, ``split.tsv``, ``baseline.json``,
``report.json`` and ``plots/*.png``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aam_core import __version__
from aam_core.checkpoint import (
    CheckpointError,
    build_model,
    checkpoint_from_model,
    load_checkpoint,
    save_checkpoint,
)
from aam_core.io import Inputs
from aam_core.model.aam import SequenceEncoder, SequenceRegressor
from aam_core.plan import (
    ModelKind,
    ResolvedRun,
    TargetSpec,
)
from aam_core.plan.config import RunConfig, Stage
from aam_core.train.callbacks import Callback, CallbackList
from aam_core.train.distributed import (
    DistContext,
    barrier,
    broadcast_object,
    init_distributed,
    require_same,
)
from aam_core.train.ensemble import attach_ensemble
from aam_core.train.linear_base import fit_model_base
from aam_core.train.loop import FitResult, RunData, Trainer
from aam_core.train.outputs import brief_metrics, record_baselines, write_outputs, write_report
from aam_core.train.prepare import PreparedData, prepare_data
from aam_core.train.provenance import training_facts
from aam_core.train.splits import Split
from aam_core.train.start import Vocabulary, encoder_for, fit_statistics, regressor_for

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
    run: ResolvedRun,
    out_dir: str | Path,
    *,
    callbacks: Callback | None = None,
    resume: bool = False,
    device: str | None = None,
    dataset_sha256: dict[str, str] | None = None,
    ctx: DistContext | None = None,
) -> RunResult:
    assert run.kind == "pretrain" and run.model is not None
    config = run.config
    weights = run.model.loss_weights
    prepared = prepare_data(
        inputs, config, need_unifrac=weights.unifrac > 0, need_faith_pd=weights.faith_pd > 0
    )
    log = CallbackList([callbacks] if callbacks else [])
    model, vocabulary, extra = encoder_for(run, prepared, log)
    return _run(
        "pretrain",
        model,
        prepared,
        config,
        Path(out_dir),
        callbacks=log,
        resume=resume,
        device=device,
        dataset_sha256=dataset_sha256,
        ctx=ctx,
        target=None,
        extra_report=extra,
        vocabulary=vocabulary,
    )


def run_train(
    inputs: Inputs,
    run: ResolvedRun,
    out_dir: str | Path,
    *,
    callbacks: Callback | None = None,
    resume: bool = False,
    device: str | None = None,
    dataset_sha256: dict[str, str] | None = None,
    ctx: DistContext | None = None,
    cross_validation: dict[str, Any] | None = None,
) -> RunResult:
    """Train ``run.target``; from ``run.base`` (a checkpoint file) when the run has one.
    ``cross_validation``: the figures of a cross-validation of this recipe, which the
    checkpoint's training facts (and so its model card) and the report then cite."""
    assert run.kind == "train" and run.model is not None and run.target is not None
    config, target = run.config, run.target
    log = CallbackList([callbacks] if callbacks else [])
    for note in run.notes:
        log.on_log(note)
    weights = config.weights("train")
    prepared = prepare_data(
        inputs,
        config,
        target=target,
        need_unifrac=weights.unifrac > 0,
        need_faith_pd=weights.faith_pd > 0,
    )
    model, vocabulary, extra = regressor_for(run, prepared, log)
    if cross_validation is not None:
        extra = {**extra, "cross_validation": cross_validation}
    ctx = ctx or init_distributed(device)
    result = _run(
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
        model_kind=run.model_kind,
        vocabulary=vocabulary,
    )
    if config.refit == "none" or result.best_checkpoint is None:
        return result
    if config.refit == "linear":
        refit = _refit_linear(config, prepared, result, vocabulary, Path(out_dir), log, ctx)
    else:
        refit = _refit(run, prepared, result, Path(out_dir), log, ctx, dataset_sha256)
    return dataclasses.replace(result, best_checkpoint=refit)


def _whole(prepared: PreparedData) -> PreparedData:
    """``prepared`` with its train and validation samples in one train split."""
    split = prepared.split
    whole = np.sort(np.concatenate([split.train, split.validation]))
    return dataclasses.replace(
        prepared, split=Split(whole, np.empty(0, dtype=np.int64), split.method)
    )


def _refit_linear(
    config: RunConfig,
    prepared: PreparedData,
    first: RunResult,
    vocabulary: Vocabulary | None,
    out_dir: Path,
    log: Callback,
    ctx: DistContext,
) -> Path:
    """``refit: linear``: the selected model with its linear base fitted again on the train
    and validation samples together, at the L2 validation chose (the network as trained);
    ``checkpoints/refit.pt``, with the selected model's validation figures. ASVs that only the
    validation samples hold stay outside the base's vocabulary."""
    assert first.best_checkpoint is not None
    path = out_dir / "checkpoints" / "refit.pt"
    checkpoint = load_checkpoint(first.best_checkpoint)
    model = build_model(checkpoint)
    assert isinstance(model, SequenceRegressor)
    if model.target_head.fitted_base is None:  # no base to fit again: the selected model stays
        barrier(ctx)
        return first.best_checkpoint
    if not ctx.is_main:
        barrier(ctx)
        return path
    assert vocabulary is not None  # a fitted base is built on the train split's vocabulary
    everything = _whole(prepared)
    rows, fixed = everything.split.train, config.replace(rerarefy=False)
    data = RunData(
        everything.dataset(rows, fixed),
        None,
        everything.collator(fixed, rows, vocabulary[1]),
        None,
    )
    penalty = next(iter(first.report["linear_base"]["penalty"].values()))
    fit_model_base(model, data, everything, config, vocabulary[1], penalty=penalty)
    refit = {"what": "linear", "n_train": int(rows.size), "selected_on": "validation"}
    metrics = {**checkpoint.metrics, "refit": refit}
    save_checkpoint(
        dataclasses.replace(checkpoint, state_dict=model.state_dict(), metrics=metrics), path
    )
    log.on_log(f"refit: the linear base on {rows.size} train + validation samples; saved {path}")
    barrier(ctx)
    return path


def _facts(
    prepared: PreparedData, ctx: DistContext, extra_report: dict[str, Any]
) -> dict[str, Any]:
    facts = training_facts(prepared, ctx.device, ctx.world_size)
    if "base_checkpoint" in extra_report:  # fine-tuning: which encoder, by its file's digest
        base = extra_report["base_checkpoint"]
        facts["base_model"] = {k: base[k] for k in ("kind", "sha256", "freeze_base")}
    if "cross_validation" in extra_report:
        facts["cross_validation"] = extra_report["cross_validation"]
    return facts


def _checkpoint_fields(
    stage: Stage,
    config: RunConfig,
    prepared: PreparedData,
    target: TargetSpec | None,
    vocabulary: Vocabulary | None,
    dataset_sha256: dict[str, str] | None,
    facts: dict[str, Any],
) -> dict[str, Any]:
    """What a run's checkpoints hold beside the weights and metrics."""
    target_info = None
    if target is not None:
        classes = None if prepared.classes is None else list(prepared.classes)
        target_info = {"column": target.column, "task": target.task, "classes": classes}
    return {
        "preprocessing": {
            "max_bp": config.max_bp,
            "token_limit": config.token_limit,
            "truncate": config.truncate,
            "rarefaction_depth": prepared.depth,
        },
        "target": target_info,
        "vocabulary": None if vocabulary is None else vocabulary[0],
        "training": {
            "stage": stage,
            "n_train": int(prepared.split.train.size),
            "n_validation": int(prepared.split.validation.size),
            "dataset_sha256": dict(dataset_sha256 or {}),
            "run_config": config.to_dict(),
            "library_version": __version__,
            **facts,
        },
    }


def _refit(
    run: ResolvedRun,
    prepared: PreparedData,
    first: RunResult,
    out_dir: Path,
    log: Callback,
    ctx: DistContext,
    dataset_sha256: dict[str, str] | None,
) -> Path:
    """``refit: all``: a model of the same settings trained on the train and validation
    samples together, for the epochs the first run chose (its best epoch; 0: the linear base
    alone) at its batch size, with the linear base's L2 chosen there. Saved as
    ``checkpoints/refit.pt`` with the first model's validation figures, the only honest ones
    (the refit has seen those samples); the refit's own training writes into ``refit/``."""
    split = prepared.split
    everything = _whole(prepared)
    whole = everything.split.train
    batch = run.config.resolved("train", int(split.train.size), ctx.world_size).batch_size
    epochs = first.fit.best_epoch
    config = run.config.replace(batch_size=batch, epochs=max(epochs, 1), patience=0)
    log.on_log(
        f"refit: {whole.size} train + validation samples, {epochs} epochs (the best epoch of "
        "the first run)"
    )
    model, vocabulary, extra = regressor_for(
        dataclasses.replace(run, config=config), everything, log
    )
    assert vocabulary is not None or model.target_head.fitted_base is None
    fit_statistics(model, everything, config.seed)
    rows = None if vocabulary is None else vocabulary[1]
    data = RunData(
        everything.dataset(whole, config), None, everything.collator(config, whole, rows), None
    )
    if model.target_head.fitted_base is not None:
        assert rows is not None
        penalty = next(iter(first.report["linear_base"]["penalty"].values()))
        fit_model_base(model, data, everything, config, rows, penalty=penalty)
    fields = functools.partial(
        _checkpoint_fields, "train", config, everything, run.target, vocabulary, dataset_sha256,
        _facts(everything, ctx, extra),
    )  # fmt: skip
    weights: Model = model
    if epochs > 0:
        trainer = Trainer(
            model, data, config, stage="train", out_dir=out_dir / "refit",
            checkpoint_fields=fields, callbacks=log, ctx=ctx,
            class_weights=_class_weights(config, everything),
        )  # fmt: skip
        trainer.fit()
        weights = trainer.weights
    path = out_dir / "checkpoints" / "refit.pt"
    if ctx.is_main:
        assert first.best_checkpoint is not None
        chosen = load_checkpoint(first.best_checkpoint).metrics
        refit = {
            "what": "all", "epochs": epochs, "n_train": int(whole.size),
            "selected_on": "validation",
        }  # fmt: skip
        save_checkpoint(
            checkpoint_from_model(weights, metrics={**chosen, "refit": refit}, **fields()), path
        )
        log.on_log(f"refit: saved {path}")
    barrier(ctx)
    return path


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
    model_kind: ModelKind = "aam",
    vocabulary: Vocabulary | None = None,
) -> RunResult:
    ctx = ctx or init_distributed(device)
    # the batch size and epochs left unset, decided once for the run (and its record)
    config = config.resolved(stage, int(prepared.split.train.size), ctx.world_size)
    base = extra_report.get("base_checkpoint") or {}
    require_same(
        {
            **{f"file {role}": digest for role, digest in (dataset_sha256 or {}).items()},
            "file base checkpoint": base.get("sha256"),
            **{f"setting {key}": value for key, value in config.to_dict().items()},
        },
        ctx,
    )
    if ctx.is_main:  # the only rank that writes: other hosts need no run directory
        out_dir.mkdir(parents=True, exist_ok=True)
    log = CallbackList([callbacks] if callbacks else [])
    report = {**prepared.report, **extra_report, "stage": stage}
    if ctx.is_main:
        for warning in prepared.report.get("warnings", []):
            log.on_log(f"warning: {warning}")
    fit_statistics(model, prepared, config.seed)
    split = prepared.split
    rows = None if vocabulary is None else vocabulary[1]
    fixed = config.replace(rerarefy=False)  # validation reads one rarefaction throughout
    data = RunData(
        train=prepared.dataset(split.train, config),
        validation=prepared.dataset(split.validation, fixed) if split.validation.size else None,
        train_collate=prepared.collator(config, split.train, rows),
        validation_collate=prepared.collator(fixed, split.validation, rows)
        if split.validation.size
        else None,
    )
    if isinstance(model, SequenceRegressor) and model.target_head.fitted_base is not None:
        assert rows is not None, "a linear base reads the ASV vocabulary"
        linear = fit_model_base(model, data, prepared, config, rows)
        report["linear_base"] = {
            "penalty": linear.penalty,
            "validation": linear.validation,
            "search": linear.search,
        }
        if ctx.is_main:
            penalty = ", ".join(f"{k} {v:g}" for k, v in linear.penalty.items())
            log.on_log(f"linear base ({penalty}) validation: {brief_metrics(linear.validation)}")
    checkpoint_fields = functools.partial(
        _checkpoint_fields, stage, config, prepared, target, vocabulary, dataset_sha256,
        _facts(prepared, ctx, extra_report),
    )  # fmt: skip
    resume_state = None
    last = out_dir / "checkpoints" / "last.pt"
    # Rank 0 wrote last.pt, so only its run directory is sure to hold it: it reads the file
    # and sends it to the other ranks, which may run on hosts that cannot see that directory.
    found = load_checkpoint(last) if resume and ctx.is_main and last.exists() else None
    checkpoint = broadcast_object(found, ctx)
    if checkpoint is not None:
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
            f"depth {prepared.depth}, {trainer.epochs} epochs of {trainer.steps_per_epoch} "
            f"optimiser steps ({trainer.total_steps}) on {ctx.device}"
            + (f" x {ctx.world_size} processes" if ctx.enabled else "")
        )
    fit = trainer.fit(resume_state)
    kind = model.kind if isinstance(model, SequenceRegressor) else "encoder"
    if not ctx.is_main:
        return RunResult(
            out_dir, kind, fit.best_checkpoint, fit.last_checkpoint, fit, {}, None, report
        )
    outputs = write_outputs(
        stage,
        fit,
        prepared,
        config,
        out_dir,
        ctx.device,
        data,
        log,
        need_forest=model_kind != "aam",
    )
    record_baselines(fit.best_checkpoint, outputs)
    if model_kind != "aam":
        report["ensemble"] = attach_ensemble(fit, prepared, config, outputs, model_kind, log)
    write_report(report, fit, outputs, out_dir)
    return RunResult(
        out_dir,
        kind,
        fit.best_checkpoint,
        fit.last_checkpoint,
        fit,
        outputs.validation,
        outputs.baseline,
        report,
    )
