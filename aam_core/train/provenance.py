"""What a checkpoint records about how its model was made, beyond its settings, so that its
model card (:mod:`aam_core.model_card`) can be written from the file alone: the samples used
and left out, the split (how it was drawn, its groups and a digest of its sample IDs), the
target's distribution on each side, where the run trained, and the library versions; and
the rest a run's checkpoints hold beside the weights and metrics (:func:`checkpoint_fields`)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch

from aam_core import __version__
from aam_core.plan import TargetSpec
from aam_core.plan.config import RunConfig, Stage
from aam_core.train.distributed import DistContext
from aam_core.train.prepare import PreparedData, Vocabulary, split_sha256

# Distributions whose versions change what a run computes or reads (by their PyPI names).
LIBRARIES = (
    "torch",
    "numpy",
    "scipy",
    "scikit-learn",
    "pandas",
    "biom-format",
    "scikit-bio",
    "h5py",
    "skops",
)


def library_versions() -> dict[str, str | None]:
    """``name -> version`` of aam, Python, the CUDA that torch was built with (None on a CPU
    build) and :data:`LIBRARIES` (None when one is not installed)."""
    versions: dict[str, str | None] = {
        "aam": __version__,
        "python": platform.python_version(),
        "torch_cuda": torch.version.cuda,
    }
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def target_summary(prepared: PreparedData) -> dict[str, Any] | None:
    """The target on each side of the split: ``n, mean, std, min, max`` (regression, original
    units) or ``class -> count`` (classification); None for pretraining."""
    if prepared.targets is None:
        return None
    out: dict[str, Any] = {}
    for side, rows in (("train", prepared.split.train), ("validation", prepared.split.validation)):
        values = prepared.targets[rows]
        if prepared.classes is not None:
            counts = np.bincount(values.astype(np.int64), minlength=len(prepared.classes))
            out[side] = {c: int(n) for c, n in zip(prepared.classes, counts, strict=True)}
        elif values.size == 0:
            out[side] = {"n": 0, "mean": None, "std": None, "min": None, "max": None}
        else:
            array = values.astype(np.float64).ravel()
            out[side] = {
                "n": int(values.shape[0]),
                "mean": float(array.mean()),
                "std": float(array.std()),
                "min": float(array.min()),
                "max": float(array.max()),
            }
    return out


def checkpoint_fields(
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


def run_facts(
    prepared: PreparedData, ctx: DistContext, extra_report: dict[str, Any]
) -> dict[str, Any]:
    """:func:`training_facts`, with the encoder a fine-tuning run started from (by its file's
    digest) and the cross-validation a run cites, from its report."""
    facts = training_facts(prepared, ctx.device, ctx.world_size)
    if "base_checkpoint" in extra_report:  # fine-tuning: which encoder, by its file's digest
        base = extra_report["base_checkpoint"]
        facts["base_model"] = {k: base[k] for k in ("kind", "sha256", "freeze_base")}
    if "cross_validation" in extra_report:
        facts["cross_validation"] = extra_report["cross_validation"]
    return facts


def training_facts(prepared: PreparedData, device: torch.device, world_size: int) -> dict[str, Any]:
    """The facts beside a checkpoint's settings (``Checkpoint.training``)."""
    report = prepared.report
    table, split = prepared.table, prepared.split
    train_ids = [table.sample_ids[i] for i in split.train]
    validation_ids = [table.sample_ids[i] for i in split.validation]
    return {
        "samples": {
            "input": report.get("n_samples_input"),
            "used": int(table.n_samples),
            "missing_target": len(report.get("samples_missing_target", [])),
            "below_rarefaction_depth": len(report.get("rarefaction", {}).get("dropped", [])),
            # classification: validation samples of a class the train split lacks
            "unseen_class": int(table.n_samples - split.train.size - split.validation.size),
        },
        "n_features": int(table.n_features),
        "split": {**report.get("split", {}), "sha256": split_sha256(train_ids, validation_ids)},
        "target_summary": target_summary(prepared),
        "device": str(device),
        "world_size": world_size,
        "library_versions": library_versions(),
    }
