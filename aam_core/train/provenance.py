"""What a checkpoint records about how its model was made, beyond its settings, so that its
model card (:mod:`aam_core.model_card`) can be written from the file alone: the samples used
and left out, the split (how it was drawn, its groups and a digest of its sample IDs), the
target's distribution on each side, where the run trained, and the library versions."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch

from aam_core import __version__
from aam_core.train.prepare import PreparedData, split_sha256

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
