"""The card as data: a checkpoint's facts gathered into the JSON-able dictionary whose schema
the package documents (:mod:`aam_core.model_card`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aam_core.model_card.text import intended_use, limits

if TYPE_CHECKING:  # the card is plain data: building it needs no torch
    from aam_core.checkpoint import Checkpoint

CARD_VERSION = 1
NOT_RECORDED = "not recorded"


def model_card(checkpoint: Checkpoint, *, checkpoint_sha256: str | None = None) -> dict[str, Any]:
    """The card of ``checkpoint`` (``checkpoint_sha256``: its file's digest, when known)."""
    training = checkpoint.training
    card: dict[str, Any] = {
        "card_version": CARD_VERSION,
        "model": _model(checkpoint, checkpoint_sha256),
        "intended_use": [],
        "limits": [],
        "data": _data(training),
        "training": _training(training, checkpoint.metrics),
        "metrics": _metrics(checkpoint.metrics),
        # None unless a cross_validate job's refit trained this model (aam_core.crossval)
        "cross_validation": training.get("cross_validation") or None,
        "library_versions": training.get("library_versions"),
    }
    card = _plain(card)
    card["intended_use"] = intended_use(card)
    card["limits"] = limits(card)
    return card


def _model(checkpoint: Checkpoint, sha256: str | None) -> dict[str, Any]:
    config, target, forest = checkpoint.config, checkpoint.target, checkpoint.forest
    head = config.target
    pre = checkpoint.preprocessing
    return {
        "kind": checkpoint.kind,
        "type": "aam" if forest is None else "ensemble",
        "target": None
        if target is None
        else {k: target.get(k) for k in ("column", "task", "classes")},
        "architecture": {
            "embedding_dim": config.dim,
            "sample_layers": config.sample.layers,
            "nucleotide_layers": config.nucleotide.layers,
            "heads": config.sample.heads,
            "asv_vocabulary": config.sample.vocabulary,
            "linear_head": None if head is None else head.linear,
            "target_pooling": None if head is None else head.pooling,
            "freeze_base": checkpoint.freeze_base,
        },
        "preprocessing": {
            k: pre.get(k) for k in ("max_bp", "token_limit", "truncate", "rarefaction_depth")
        },
        "ensemble": None
        if forest is None
        else {
            "choice": forest.choice,
            "weight": forest.weight,
            "forest_params": dict(forest.params),
            "n_forest_features": len(forest.features),
            "reason": forest.reason,
        },
        "checkpoint_sha256": sha256,
        "format_version": checkpoint.format_version,
        "aam_version": checkpoint.library_version,
    }


def _data(training: Mapping[str, Any]) -> dict[str, Any]:
    samples, split = training.get("samples") or {}, training.get("split") or {}
    group = split.get("group_column")
    return {
        "sha256": training.get("dataset_sha256") or None,
        "samples": {
            "input": samples.get("input"),
            "used": samples.get("used"),
            "train": training.get("n_train"),
            "validation": training.get("n_validation"),
            "missing_target": samples.get("missing_target"),
            "below_rarefaction_depth": samples.get("below_rarefaction_depth"),
            "unseen_class": samples.get("unseen_class"),
        },
        "n_features": training.get("n_features"),
        "subjects": None
        if group is None
        else {
            "column": group,
            "train": split.get("n_train_groups"),
            "validation": split.get("n_validation_groups"),
        },
        "target": training.get("target_summary"),
    }


def _training(training: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    run = training.get("run_config")
    split = training.get("split") or {}

    def setting(key: str) -> Any:  # older checkpoints hold the split's settings in run_config
        return split[key] if key in split else (run or {}).get(key)

    best, final = metrics.get("best") or {}, metrics.get("final") or {}
    return {
        "stage": training.get("stage"),
        "seed": setting("seed"),
        "split": {
            "method": split.get("method"),
            "validation_fraction": setting("validation_fraction"),
            "group_column": setting("group_column"),
            "seed": setting("seed"),
            "sha256": split.get("sha256"),
            "n_train": training.get("n_train"),
            "n_validation": training.get("n_validation"),
        },
        "epochs": {
            "best": best.get("epoch"),
            "final": final.get("epoch"),
            "max": (run or {}).get("epochs"),
            "monitor": best.get("monitor"),
        },
        "device": training.get("device"),
        "world_size": training.get("world_size"),
        "base_model": training.get("base_model"),
        "config": run,
    }


def _metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    best = metrics.get("best") or {}
    baselines = metrics.get("baselines") or {}
    ensemble = (metrics.get("ensemble") or {}).get("validation") or {}

    def validation(name: str) -> Any:
        return (baselines.get(name) or {}).get("validation")

    return {
        "split": "validation",
        "epoch": best.get("epoch"),
        "monitor": best.get("monitor"),
        # an ensemble serves the blend; its AAM part alone is what best["validation"] scored
        "model": ensemble.get("ensemble") or best.get("validation") or None,
        "aam_alone": (best.get("validation") or ensemble.get("aam")) if ensemble else None,
        "baselines": {
            "random_forest": validation("random_forest") or ensemble.get("forest"),
            "constant": validation("constant"),
            "depth": validation("depth"),
        },
        "train": best.get("train") or None,
        # None in checkpoints written before the depth check (aam_core.train.baselines)
        "depth_confound": metrics.get("depth_confound"),
    }


def _plain(value: Any) -> Any:
    """JSON's values only: non-finite numbers become None, tuples lists, numpy scalars Python."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # a numpy scalar
        return _plain(value.item())
    return str(value)
