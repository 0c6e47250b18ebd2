"""The two training stages as single calls, used by the command-line tool and the worker
(planned by :func:`aam_core.train.local_plan.plan_local`):

- :func:`run_pretrain`: a SequenceEncoder on UniFrac (+ masked nucleotides, optional Faith PD);
- :func:`run_train`: a regressor or classifier, from scratch or from a pretrained encoder
  (frozen or trained on), with a random-forest baseline on the same split.

A run writes into ``out_dir``: ``checkpoints/best.pt`` and ``last.pt``, ``metrics.jsonl``,
``validation_predictions.tsv``, ``split.tsv``, ``baseline.json``, ``report.json`` and
``plots/*.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aam_core import __version__
from aam_core.checkpoint import (
    CheckpointError,
    LoadReport,
    load_checkpoint,
    load_encoder,
)
from aam_core.io import Inputs, sha256_file
from aam_core.memory import reuse_freed_memory
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
    broadcast_object,
    init_distributed,
    require_same,
)
from aam_core.train.ensemble import attach_ensemble
from aam_core.train.loop import FitResult, RunData, Trainer
from aam_core.train.outputs import record_baselines, write_outputs, write_report
from aam_core.train.prepare import PreparedData, prepare_data
from aam_core.train.provenance import training_facts

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
    torch.manual_seed(config.seed)  # the initial weights are part of the run's seed
    weights = run.model.loss_weights
    prepared = prepare_data(
        inputs, config, need_unifrac=weights.unifrac > 0, need_faith_pd=weights.faith_pd > 0
    )
    return _run(
        "pretrain",
        SequenceEncoder(run.model),
        prepared,
        config,
        Path(out_dir),
        callbacks=CallbackList([callbacks] if callbacks else []),
        resume=resume,
        device=device,
        dataset_sha256=dataset_sha256,
        ctx=ctx,
        target=None,
        extra_report={},
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
) -> RunResult:
    """Train ``run.target``; from ``run.base`` (a checkpoint file) when the run has one."""
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
    assert run.model.target is not None
    # the classes of the train split (the summary may count classes only validation has)
    out_dim = len(prepared.classes) if prepared.classes is not None else 1
    model_config = dataclasses.replace(
        run.model, target=dataclasses.replace(run.model.target, out_dim=out_dim)
    )
    vocabulary = None
    if config.asv_vocabulary and run.freeze_base:
        log.on_log("asv_vocabulary: off, the encoder is frozen (its identities could not learn)")
    elif config.asv_vocabulary:
        vocabulary = prepared.asv_vocabulary()
        sample = dataclasses.replace(
            model_config.sample,
            vocabulary=len(vocabulary[0]),
            identity_dropout=config.identity_dropout,
        )
        model_config = dataclasses.replace(model_config, sample=sample)
    if model_config.target is not None and model_config.target.linear and vocabulary is None:
        log.on_log("linear_head: off, it needs the ASV vocabulary (asv_vocabulary)")
        head = dataclasses.replace(model_config.target, linear=False)
        model_config = dataclasses.replace(model_config, target=head)
    torch.manual_seed(config.seed)  # the initial weights are part of the run's seed
    model = SequenceRegressor(model_config, freeze_base=run.freeze_base)
    extra: dict[str, Any] = {}
    if run.base is not None:
        extra["base_checkpoint"] = _load_base(model, run, log)
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
        model_kind=run.model_kind,
        vocabulary=vocabulary,
    )


def _load_base(model: SequenceRegressor, run: ResolvedRun, log: Callback) -> dict[str, Any]:
    base = run.base
    assert base is not None and base.path is not None, "a base model to train from is a file"
    loaded: LoadReport = load_encoder(model, load_checkpoint(base.path), name=base.path)
    log.on_log(
        f"loaded encoder {base.path}: {len(loaded.matched)} tensors matched, "
        f"{len(loaded.missing)} missing, {len(loaded.skipped)} skipped"
        + ("; encoder frozen" if run.freeze_base else "")
    )
    return {
        "path": base.path,
        "sha256": sha256_file(base.path),
        "kind": base.kind,
        "matched_keys": len(loaded.matched),
        "missing_keys": loaded.missing,
        "skipped_keys": len(loaded.skipped),
        "freeze_base": run.freeze_base,
    }


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
    model_kind: ModelKind = "aam",
    vocabulary: tuple[tuple[str, ...], np.ndarray] | None = None,
) -> RunResult:
    ctx = ctx or init_distributed(device)
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
    _fit_normalisers(model, prepared)
    split = prepared.split
    rows = None if vocabulary is None else vocabulary[1]
    data = RunData(
        train=prepared.dataset(split.train, config),
        validation=prepared.dataset(split.validation, config) if split.validation.size else None,
        train_collate=prepared.collator(config, split.train, rows),
        validation_collate=prepared.collator(config, split.validation, rows)
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

    facts = training_facts(prepared, ctx.device, ctx.world_size)
    if "base_checkpoint" in extra_report:  # fine-tuning: which encoder, by its file's digest
        base = extra_report["base_checkpoint"]
        facts["base_model"] = {k: base[k] for k in ("kind", "sha256", "freeze_base")}

    def checkpoint_fields() -> dict[str, Any]:
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
                "n_train": int(split.train.size),
                "n_validation": int(split.validation.size),
                "dataset_sha256": dict(dataset_sha256 or {}),
                "run_config": config.to_dict(),
                "library_version": __version__,
                **facts,
            },
        }

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
            f"depth {prepared.depth}, {trainer.total_steps} optimiser steps on {ctx.device}"
            + (f" x {ctx.world_size} processes" if ctx.enabled else "")
        )
    with reuse_freed_memory() if ctx.device.type == "cpu" else contextlib.nullcontext():
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
