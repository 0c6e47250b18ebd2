"""Tiny checkpoints (random weights, fixed seed) registered straight into a test app's store,
for tests of prediction that must not depend on the training pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from aam_core.checkpoint import checkpoint_from_model, save_checkpoint
from aam_core.model import AAMConfig, SequenceEncoder, SequenceRegressor, TargetConfig
from aam_core.train.baselines import depth_confound
from app.api.deps import Services
from app.registration import register_checkpoint
from app.store import Model

PREPROCESSING = {"max_bp": 150, "token_limit": 64, "truncate": False, "rarefaction_depth": 500}
CLASSES = ["gut", "oral", "skin"]


def confounded_metrics() -> dict[str, Any]:
    """A site classifier's metrics as a training run records them (figures made up) whose
    depth-only model reaches ROC AUC 0.9375 against the model's 0.625, with the verdict
    aam_core gives them."""
    model = {"accuracy": 0.5, "macro_f1": 0.375, "roc_auc": 0.625}
    depth = {"accuracy": 0.75, "macro_f1": 0.625, "roc_auc": 0.9375}
    return {
        "best": {"epoch": 2, "monitor": "loss", "validation": {"loss": 1.0, **model}},
        "baselines": {
            "constant": {"validation": {"accuracy": 0.375, "macro_f1": 0.25, "roc_auc": 0.5}},
            "depth": {"validation": depth, "train": depth, "coefficients": {"slope": [1.5]}},
        },
        "depth_confound": depth_confound(depth, model, "classification", target="site"),
    }


def tiny_checkpoint(
    kind: str, path: Path, seed: int = 0, metrics: dict[str, Any] | None = None
) -> Path:
    """A tiny encoder, regressor (age in years: mean 40, std 15) or 3-class classifier, with
    ``metrics`` as a training run would record them (none by default)."""
    torch.manual_seed(seed)
    config = AAMConfig.tiny()
    target = None
    model: SequenceEncoder | SequenceRegressor
    if kind == "encoder":
        model = SequenceEncoder(config)
    elif kind == "regressor":
        model = SequenceRegressor(config.with_target(TargetConfig(task="regression")))
        model.target_norm.mean.fill_(40.0)
        model.target_norm.std.fill_(15.0)
        target = {"column": "age", "task": "regression"}
    else:
        model = SequenceRegressor(
            config.with_target(TargetConfig(task="classification", out_dim=len(CLASSES)))
        )
        target = {"column": "site", "task": "classification", "classes": CLASSES}
    checkpoint = checkpoint_from_model(
        model.eval(), preprocessing=PREPROCESSING, target=target, metrics=metrics or {}
    )
    return save_checkpoint(checkpoint, path)


def register_tiny(
    services: Services,
    kind: str,
    owner: str,
    directory: Path,
    metrics: dict[str, Any] | None = None,
) -> Model:
    path = tiny_checkpoint(kind, directory / f"{kind}-{owner}.pt", metrics=metrics)
    with services.sessions() as session:
        model = register_checkpoint(
            session, services.storage, path, owner=owner, name=f"tiny {kind}", source="import"
        )
        session.commit()
    return model
