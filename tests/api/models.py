"""Tiny checkpoints (random weights, fixed seed) registered straight into a test app's store,
for tests of prediction that must not depend on the training pipeline."""

from __future__ import annotations

from pathlib import Path

import torch

from aam_core.checkpoint import checkpoint_from_model, save_checkpoint
from aam_core.model import AAMConfig, SequenceEncoder, SequenceRegressor, TargetConfig
from app.api.deps import Services
from app.store import Model
from app.store.registry import register_checkpoint

PREPROCESSING = {"max_bp": 150, "token_limit": 64, "truncate": False, "rarefaction_depth": 500}
CLASSES = ["gut", "oral", "skin"]


def tiny_checkpoint(kind: str, path: Path, seed: int = 0) -> Path:
    """A tiny encoder, regressor (age in years: mean 40, std 15) or 3-class classifier."""
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
    checkpoint = checkpoint_from_model(model.eval(), preprocessing=PREPROCESSING, target=target)
    return save_checkpoint(checkpoint, path)


def register_tiny(services: Services, kind: str, owner: str, directory: Path) -> Model:
    path = tiny_checkpoint(kind, directory / f"{kind}-{owner}.pt")
    with services.sessions() as session:
        model = register_checkpoint(
            session, services.storage, path, owner=owner, name=f"tiny {kind}", source="import"
        )
        session.commit()
    return model
