"""The run planner (:mod:`aam_core.plan`) on files at hand, for the command-line tool, the
worker and the benchmarks: the inputs' summary and a base checkpoint's stored config become
the planner's facts, and :func:`plan_local` resolves a pretrain or train run from them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aam_core.checkpoint import Checkpoint, load_checkpoint
from aam_core.io import Inputs, summarize
from aam_core.plan import (
    DatasetFacts,
    Kind,
    ModelFacts,
    ModelKind,
    ResolvedRun,
    TargetSpec,
    plan_run,
)
from aam_core.train.distributed import resolve_device


def dataset_facts(inputs: Inputs) -> DatasetFacts:
    """The planner's view of inputs read from files: their summary."""
    summary = summarize(
        inputs.table, inputs.sequences, tree=inputs.tree, metadata=inputs.metadata, sha256={}
    )
    return DatasetFacts("the dataset", summary, inputs.distances is not None)


def checkpoint_facts(
    checkpoint: Checkpoint, *, name: str, field: str, path: str | Path | None = None
) -> ModelFacts:
    """The planner's view of a loaded checkpoint: its stored config and preprocessing."""
    return ModelFacts(
        where=f"{'encoder' if checkpoint.kind == 'encoder' else 'model'} {name!r}",
        kind=checkpoint.kind,
        model=checkpoint.config.to_dict(),
        preprocessing=checkpoint.preprocessing,
        field=field,
        path=None if path is None else str(path),
    )


def plan_local(
    kind: Kind,
    config: Mapping[str, Any],
    inputs: Inputs,
    *,
    target: TargetSpec | None = None,
    base_checkpoint: str | Path | None = None,
    base_field: str = "base_model_id",
    base_name: str | None = None,
    freeze_base: bool = False,
    model_kind: ModelKind | None = None,
    device: str | None = None,
) -> ResolvedRun:
    """Plan a pretrain or train run on inputs read from files (``device``: where it will run;
    "auto" picks as the run will), from ``base_checkpoint`` when
    given (messages name it ``base_name``, by default its path)."""
    base = None
    if base_checkpoint is not None:
        name = base_name or str(base_checkpoint)
        checkpoint = load_checkpoint(base_checkpoint, name=name)
        base = checkpoint_facts(checkpoint, name=name, field=base_field, path=base_checkpoint)
    return plan_run(
        kind,
        config,
        dataset_facts(inputs),
        target=target,
        base=base,
        freeze_base=freeze_base,
        model_kind=model_kind,
        device=None if device is None else str(resolve_device(device)),
    )
