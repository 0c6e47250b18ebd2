"""Registering a checkpoint as a model: shared by ``POST /models`` (import) and the worker (a
succeeded pretrain or train job). aam_core validates the file (``weights_only`` loading, the
weights rebuilt into their model) before the store (``app.store``, which never loads PyTorch)
keeps anything."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from aam_core.checkpoint import Checkpoint, build_model, load_checkpoint
from app.store.artifacts import ArtifactStore
from app.store.models import ModelKind, ModelSource, create_model
from app.store.tables import Model


def describe_checkpoint(path: Path, *, name: str) -> tuple[Checkpoint, int]:
    """The validated checkpoint and its parameter count; ``CheckpointError`` (a message that
    names ``name``) for anything that is not a usable AAM checkpoint."""
    checkpoint = load_checkpoint(path, name=name)
    model = build_model(checkpoint, name=name)
    return checkpoint, sum(p.numel() for p in model.parameters())


def register_checkpoint(
    session: Session,
    storage: ArtifactStore,
    path: Path,
    *,
    owner: str,
    name: str,
    source: ModelSource,
    file_name: str | None = None,
    job_id: str | None = None,
    dataset_id: str | None = None,
    plots: Mapping[str, Path] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Model:
    """Validate ``path``, copy it (and any plots) into storage, and add the model row (flushed;
    the caller commits). Raises ``CheckpointError`` before storing anything."""
    checkpoint, n_parameters = describe_checkpoint(path, name=file_name or path.name)
    sha256, _ = storage.put_file(path)
    plot_digests = {plot: storage.put_file(file)[0] for plot, file in (plots or {}).items()}
    config: dict[str, Any] = {
        "model": checkpoint.config.to_dict(),
        "preprocessing": checkpoint.preprocessing,
        "freeze_base": checkpoint.freeze_base,
        "training": checkpoint.training,
    }
    if checkpoint.forest is not None:  # an ensemble: AAM blended with a random forest
        forest = checkpoint.forest
        config["ensemble"] = {
            "choice": forest.choice,
            "weight": forest.weight,
            "forest": dict(forest.params),
            "n_features": len(forest.features),
            "reason": forest.reason,
        }
    kind: ModelKind = checkpoint.kind  # type: ignore[assignment]
    return create_model(
        session,
        owner=owner,
        name=name,
        kind=kind,
        config=config,
        metrics=checkpoint.metrics,
        n_parameters=n_parameters,
        checkpoint_sha256=sha256,
        source=source,
        job_id=job_id,
        dataset_id=dataset_id,
        target=checkpoint.target,
        plots=plot_digests,
        details={"library_version": checkpoint.library_version, **(details or {})},
    )
