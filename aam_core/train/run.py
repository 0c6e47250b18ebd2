"""The two training stages as single calls, used by the command-line tool and the worker
(planned by :func:`aam_core.train.local_plan.plan_local`):

- :func:`run_pretrain`: a SequenceEncoder on UniFrac (+ masked nucleotides, optional Faith PD),
  from scratch or continued from an encoder;
- :func:`run_train`: a regressor or classifier, from scratch or from a pretrained encoder
  (frozen or trained on), beginning as its linear base, with a random forest, a constant and
  sequencing depth alone as baselines on the same split; with ``refit``, trained again on the
  train and validation samples together.

A run prepares its data (:mod:`aam_core.train.prepare`), builds the model it starts from (the
train split's ASV vocabulary, the base encoder it loads, the train statistics fitted before the
first step), trains (:mod:`aam_core.train.loop`) and writes its outputs
(:mod:`aam_core.train.outputs`). Its checkpoints record how the model was made beyond its
settings (the samples used and left out, the split, the target on each side, where it trained,
the library versions), so that a model card can be written from the file alone.

A run writes into ``out_dir``: ``checkpoints/best.pt`` and ``last.pt`` (and ``refit.pt``),
``metrics.jsonl``, ``validation_predictions.tsv``, ``split.tsv``, ``baseline.json``,
``importance.tsv``, ``report.json`` and ``plots/*.png``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aam_core.checkpoint import (
    CheckpointError,
    LoadReport,
    build_model,
    checkpoint_from_model,
    load_checkpoint,
    load_encoder,
    save_checkpoint,
)
from aam_core.io import Inputs, sha256_file
from aam_core.model.aam import SequenceEncoder, SequenceRegressor
from aam_core.plan import ModelKind, ResolvedRun, TargetSpec
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
from aam_core.train.prepare import PreparedData, Split, Vocabulary, prepare_data
from aam_core.train.provenance import checkpoint_fields, run_facts

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
    _require_same_run(config, dataset_sha256, extra_report, ctx)
    if ctx.is_main:  # the only rank that writes: other hosts need no run directory
        out_dir.mkdir(parents=True, exist_ok=True)
    log = CallbackList([callbacks] if callbacks else [])
    report = {**prepared.report, **extra_report, "stage": stage}
    if ctx.is_main:
        for warning in prepared.report.get("warnings", []):
            log.on_log(f"warning: {warning}")
    fit_statistics(model, prepared, config.seed)
    rows = None if vocabulary is None else vocabulary[1]
    data = _run_data(prepared, config, rows)
    if isinstance(model, SequenceRegressor) and model.target_head.fitted_base is not None:
        assert rows is not None, "a linear base reads the ASV vocabulary"
        report["linear_base"] = _fit_linear_base(model, data, prepared, config, rows, log, ctx)
    fields = functools.partial(
        checkpoint_fields,
        stage,
        config,
        prepared,
        target,
        vocabulary,
        dataset_sha256,
        run_facts(prepared, ctx, extra_report),
    )
    resume_state = _resume_state(model, out_dir, resume, ctx)
    trainer = Trainer(
        model,
        data,
        config,
        stage=stage,
        out_dir=out_dir,
        checkpoint_fields=fields,
        callbacks=log,
        ctx=ctx,
        class_weights=_class_weights(config, prepared),
    )
    if ctx.is_main:
        log.on_log(_plan_line(stage, prepared, trainer, ctx))
    fit = trainer.fit(resume_state)
    kind = model.kind if isinstance(model, SequenceRegressor) else "encoder"
    if not ctx.is_main:
        return RunResult(
            out_dir, kind, fit.best_checkpoint, fit.last_checkpoint, fit, {}, None, report
        )
    return _finish(stage, kind, fit, prepared, config, out_dir, data, report, log, ctx, model_kind)


def _plan_line(stage: Stage, prepared: PreparedData, trainer: Trainer, ctx: DistContext) -> str:
    """The log line that opens the training: samples, depth, epochs and steps, device."""
    split = prepared.split
    return (
        f"{stage}: {split.train.size} train / {split.validation.size} validation samples, "
        f"depth {prepared.depth}, {trainer.epochs} epochs of {trainer.steps_per_epoch} "
        f"optimiser steps ({trainer.total_steps}) on {ctx.device}"
        + (f" x {ctx.world_size} processes" if ctx.enabled else "")
    )


def _finish(
    stage: Stage,
    kind: str,
    fit: FitResult,
    prepared: PreparedData,
    config: RunConfig,
    out_dir: Path,
    data: RunData,
    report: dict[str, Any],
    log: Callback,
    ctx: DistContext,
    model_kind: ModelKind,
) -> RunResult:
    """Rank 0, after training: the outputs, the baselines written into the best checkpoint,
    the ensemble's forest (model kinds other than ``aam``) and the report."""
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


def _require_same_run(
    config: RunConfig,
    dataset_sha256: dict[str, str] | None,
    extra_report: dict[str, Any],
    ctx: DistContext,
) -> None:
    """Every rank must read the same files (by digest) with the same settings."""
    base = extra_report.get("base_checkpoint") or {}
    require_same(
        {
            **{f"file {role}": digest for role, digest in (dataset_sha256 or {}).items()},
            "file base checkpoint": base.get("sha256"),
            **{f"setting {key}": value for key, value in config.to_dict().items()},
        },
        ctx,
    )


def _run_data(prepared: PreparedData, config: RunConfig, rows: np.ndarray | None) -> RunData:
    """The train and validation datasets and collators; ``rows``: the vocabulary row of each
    feature, when the model reads one."""
    split = prepared.split
    fixed = config.replace(rerarefy=False)  # validation reads one rarefaction throughout
    return RunData(
        train=prepared.dataset(split.train, config),
        validation=prepared.dataset(split.validation, fixed) if split.validation.size else None,
        train_collate=prepared.collator(config, split.train, rows),
        validation_collate=prepared.collator(fixed, split.validation, rows)
        if split.validation.size
        else None,
    )


def _fit_linear_base(
    model: SequenceRegressor,
    data: RunData,
    prepared: PreparedData,
    config: RunConfig,
    rows: np.ndarray,
    log: Callback,
    ctx: DistContext,
) -> dict[str, Any]:
    """Fit the model's linear base before the network trains; its report."""
    linear = fit_model_base(model, data, prepared, config, rows)
    if ctx.is_main:
        penalty = ", ".join(f"{k} {v:g}" for k, v in linear.penalty.items())
        log.on_log(f"linear base ({penalty}) validation: {brief_metrics(linear.validation)}")
    return {"penalty": linear.penalty, "validation": linear.validation, "search": linear.search}


def _resume_state(
    model: Model, out_dir: Path, resume: bool, ctx: DistContext
) -> dict[str, Any] | None:
    """With ``resume``, the resume state of ``checkpoints/last.pt``, its weights loaded into
    ``model``; None without ``resume`` or such a file.

    Rank 0 wrote last.pt, so only its run directory is sure to hold it: it reads the file and
    sends it to the other ranks, which may run on hosts that cannot see that directory."""
    last = out_dir / "checkpoints" / "last.pt"
    found = load_checkpoint(last) if resume and ctx.is_main and last.exists() else None
    checkpoint = broadcast_object(found, ctx)
    if checkpoint is None:
        return None
    if checkpoint.kind != (model.kind if isinstance(model, SequenceRegressor) else "encoder"):
        raise CheckpointError(f"{last}: a {checkpoint.kind} checkpoint cannot resume this run")
    model.load_state_dict(checkpoint.state_dict)
    return checkpoint.resume


# -- the model a run starts from ------------------------------------------------------------


def encoder_for(
    run: ResolvedRun, prepared: PreparedData, log: Callback
) -> tuple[SequenceEncoder, Vocabulary | None, dict[str, Any]]:
    """The encoder a pretrain run starts from on ``prepared``'s split, its vocabulary and the
    report of its base encoder's loading (pretraining continued from one)."""
    config = run.config
    assert run.model is not None
    vocabulary = prepared.asv_vocabulary() if config.asv_vocabulary else None
    size = 0 if vocabulary is None else len(vocabulary[0])
    sample = dataclasses.replace(
        run.model.sample,
        vocabulary=size,
        identity_dropout=config.identity_rate("pretrain") if size else 0.0,
    )
    model_config = dataclasses.replace(run.model, sample=sample)
    torch.manual_seed(config.seed)  # the initial weights are part of the run's seed
    model = SequenceEncoder(model_config)
    extra: dict[str, Any] = {}
    if run.base is not None:  # pretraining continued on this dataset
        sequences = None if vocabulary is None else vocabulary[0]
        extra["base_checkpoint"] = load_base(model, run, log, sequences)
    return model, vocabulary, extra


def regressor_for(
    run: ResolvedRun, prepared: PreparedData, log: Callback
) -> tuple[SequenceRegressor, Vocabulary | None, dict[str, Any]]:
    """The model a train run starts from on ``prepared``'s split, its vocabulary (the train
    split's ASVs, and each feature's row) and the report of its base encoder's loading."""
    config = run.config
    assert run.model is not None and run.model.target is not None
    # the classes of the train split (the summary may count classes only validation has)
    out_dim = len(prepared.classes) if prepared.classes is not None else 1
    model_config = dataclasses.replace(
        run.model, target=dataclasses.replace(run.model.target, out_dim=out_dim)
    )
    # One vocabulary, the train split's ASVs, for the identity embeddings and the linear base.
    # A frozen encoder's identities cannot learn: it keeps those of its own pretraining, where
    # it has them, and otherwise reads ASVs by sequence alone.
    assert model_config.target is not None
    base_identities = run.base is not None and run.base.model["sample"].get("vocabulary", 0) > 0
    identities = config.asv_vocabulary and (not run.freeze_base or base_identities)
    if config.asv_vocabulary and not identities:
        log.on_log("asv_vocabulary: off, the frozen encoder has no ASV identities to keep")
    vocabulary = None
    if identities or model_config.target.linear:
        vocabulary = prepared.asv_vocabulary()
    size = 0 if vocabulary is None else len(vocabulary[0])
    model_config = dataclasses.replace(
        model_config,
        sample=dataclasses.replace(
            model_config.sample,
            vocabulary=size if identities else 0,
            identity_dropout=config.identity_rate("train") if identities else 0.0,
        ),
        target=dataclasses.replace(
            model_config.target, vocabulary=size if model_config.target.linear else 0
        ),
    )
    torch.manual_seed(config.seed)  # the initial weights are part of the run's seed
    model = SequenceRegressor(model_config, freeze_base=run.freeze_base)
    extra: dict[str, Any] = {}
    if run.base is not None:
        sequences = None if vocabulary is None else vocabulary[0]
        extra["base_checkpoint"] = load_base(model, run, log, sequences)
    return model, vocabulary, extra


def load_base(
    model: Model,
    run: ResolvedRun,
    log: Callback,
    vocabulary: tuple[str, ...] | None,
) -> dict[str, Any]:
    base = run.base
    assert base is not None and base.path is not None, "a base model to train from is a file"
    loaded: LoadReport = load_encoder(
        model, load_checkpoint(base.path), name=base.path, vocabulary=vocabulary
    )
    log.on_log(
        f"loaded encoder {base.path}: {len(loaded.matched)} tensors matched, "
        f"{len(loaded.missing)} missing, {len(loaded.skipped)} skipped"
        + (f"; identities of {loaded.identities} ASVs" if vocabulary is not None else "")
        + ("; encoder frozen" if run.freeze_base else "")
    )
    return {
        "path": base.path,
        "sha256": sha256_file(base.path),
        "kind": base.kind,
        "matched_keys": len(loaded.matched),
        "missing_keys": loaded.missing,
        "skipped_keys": len(loaded.skipped),
        "identities": loaded.identities,
        "freeze_base": run.freeze_base,
    }


# The train split's distance statistics (the affine UniFrac head's offset and unit) come from
# at most this many of its samples: ~2 million pairs, plenty for a mean and an SD.
DISTANCE_SAMPLES = 2048


def fit_statistics(model: Model, prepared: PreparedData, seed: int) -> None:
    train = prepared.split.train
    base = model.base if isinstance(model, SequenceRegressor) else model
    weights = model.config.loss_weights
    if weights.faith_pd > 0 and prepared.engine is not None:
        faith = prepared.engine.faith_pd(prepared.rarefied.counts[train])
        base.faith_norm.fit(faith.float())
    if weights.unifrac > 0 and base.unifrac_head.affine:
        rows = np.sort(np.random.default_rng(seed).permutation(train)[:DISTANCE_SAMPLES])
        base.unifrac_head.fit(torch.from_numpy(prepared.train_distances(rows)))
    if isinstance(model, SequenceRegressor) and prepared.classes is None:
        assert prepared.targets is not None
        model.target_norm.fit(torch.from_numpy(prepared.targets[train]).float())


# -- refit on the train and validation samples together ---------------------------------


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
    fit_model_base(model, data, everything, config, vocabulary[1], penalty=_chosen_penalty(first))
    refit = {"what": "linear", "n_train": int(rows.size), "selected_on": "validation"}
    metrics = {**checkpoint.metrics, "refit": refit}
    save_checkpoint(
        dataclasses.replace(checkpoint, state_dict=model.state_dict(), metrics=metrics), path
    )
    log.on_log(f"refit: the linear base on {rows.size} train + validation samples; saved {path}")
    barrier(ctx)
    return path


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
    model, vocabulary, extra, data = _refit_start(run, config, everything, first, log)
    fields = functools.partial(
        checkpoint_fields,
        "train",
        config,
        everything,
        run.target,
        vocabulary,
        dataset_sha256,
        run_facts(everything, ctx, extra),
    )
    weights: Model = model
    if epochs > 0:
        trainer = Trainer(
            model,
            data,
            config,
            stage="train",
            out_dir=out_dir / "refit",
            checkpoint_fields=fields,
            callbacks=log,
            ctx=ctx,
            class_weights=_class_weights(config, everything),
        )
        trainer.fit()
        weights = trainer.weights
    path = out_dir / "checkpoints" / "refit.pt"
    if ctx.is_main:
        refit = {
            "what": "all",
            "epochs": epochs,
            "n_train": int(whole.size),
            "selected_on": "validation",
        }
        _save_refit(weights, first, refit, fields(), path)
        log.on_log(f"refit: saved {path}")
    barrier(ctx)
    return path


def _save_refit(
    weights: Model, first: RunResult, refit: dict[str, Any], fields: dict[str, Any], path: Path
) -> None:
    """The refit's weights, with the first (selected) model's metrics and ``refit``'s facts."""
    assert first.best_checkpoint is not None
    chosen = load_checkpoint(first.best_checkpoint).metrics
    save_checkpoint(
        checkpoint_from_model(weights, metrics={**chosen, "refit": refit}, **fields), path
    )


def _refit_start(
    run: ResolvedRun, config: RunConfig, everything: PreparedData, first: RunResult, log: Callback
) -> tuple[SequenceRegressor, Vocabulary | None, dict[str, Any], RunData]:
    """The refit's model as a train run starts it on all of ``everything``'s samples (its
    linear base at the L2 the first run chose), its vocabulary, report and data."""
    model, vocabulary, extra = regressor_for(
        dataclasses.replace(run, config=config), everything, log
    )
    assert vocabulary is not None or model.target_head.fitted_base is None
    fit_statistics(model, everything, config.seed)
    rows = None if vocabulary is None else vocabulary[1]
    whole = everything.split.train
    data = RunData(
        everything.dataset(whole, config), None, everything.collator(config, whole, rows), None
    )
    if model.target_head.fitted_base is not None:
        assert rows is not None
        fit_model_base(model, data, everything, config, rows, penalty=_chosen_penalty(first))
    return model, vocabulary, extra, data


def _chosen_penalty(first: RunResult) -> float:
    """The L2 of the first run's linear base, chosen on its validation split."""
    return float(next(iter(first.report["linear_base"]["penalty"].values())))


def _class_weights(config: RunConfig, prepared: PreparedData) -> torch.Tensor | None:
    if config.class_weights != "balanced" or prepared.classes is None:
        return None
    assert prepared.targets is not None
    counts = np.bincount(prepared.targets[prepared.split.train], minlength=len(prepared.classes))
    weights = len(prepared.split.train) / (len(prepared.classes) * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)
