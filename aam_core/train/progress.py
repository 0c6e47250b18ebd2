"""A training run's progress, and the resume state that its last checkpoint carries.

Exact resume needs the progress (epoch, batches done, step, early-stopping state, history) and
the optimiser, scheduler and RNG states. :func:`resume_state` builds that state and
:func:`restore` reads it back; nothing else touches its keys.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from aam_core.errors import ConfigError


@dataclass(kw_only=True)
class Progress:
    """Where a run stands: ``epoch`` epochs are finished, and ``batches_done`` batches of the
    next one (non-zero only when a stop request ended the run in the middle of an epoch)."""

    epoch: int = 0
    batches_done: int = 0
    step: int = 0  # optimiser steps
    best_value: float | None = None  # of the monitored metric
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch and split

    def finish_epoch(
        self, records: list[dict[str, Any]], value: float | None, mode: str, *, count: bool = True
    ) -> bool:
        """Count the epoch whose ``records`` and monitored ``value`` are given; True when the
        value beats the best so far (``mode`` "min" or "max"; a missing or NaN value never
        does, and counts as an epoch without gain for early stopping). ``count=False``: judge
        the model before training (epoch 0) without counting an epoch."""
        if count:
            self.epoch, self.batches_done = self.epoch + 1, 0
        self.history.extend(records)
        best = self.best_value
        improved = (
            value is not None
            and not math.isnan(value)
            and (best is None or bool(value < best if mode == "min" else value > best))
        )
        if improved:
            self.best_value, self.best_epoch, self.bad_epochs = value, self.epoch, 0
        elif count:
            self.bad_epochs += 1
        return improved

    def metrics(self, monitor: str) -> dict[str, Any]:
        """The last and the best epoch's records by split, as checkpoints store them."""

        def at(epoch: int | None) -> dict[str, Any]:
            return {
                r["split"]: {k: v for k, v in r.items() if k not in ("epoch", "split")}
                for r in self.history
                if r["epoch"] == epoch
            }

        last = self.history[-1]["epoch"] if self.history else None
        return {
            "final": {"epoch": last, **at(last)},
            "best": {"epoch": self.best_epoch, "monitor": monitor, **at(self.best_epoch)},
        }


def resume_state(
    progress: Progress,
    optimiser: torch.optim.Optimizer,
    scheduler: LRScheduler,
    world_size: int,
) -> dict[str, Any]:
    """The plain dictionary a last checkpoint stores (``torch.load(weights_only=True)`` reads
    it back)."""
    return {
        **dataclasses.asdict(progress),
        "optimizer": optimiser.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "world_size": world_size,
    }


def restore(
    resume: dict[str, Any],
    optimiser: torch.optim.Optimizer,
    scheduler: LRScheduler,
    world_size: int,
) -> Progress:
    """Load the optimiser, scheduler and RNG states of ``resume`` in place; its progress."""
    if resume.get("world_size", 1) != world_size:
        # The batches of an epoch are sharded by rank: another world size would train
        # different samples from the ones the saved step counts assume.
        raise ConfigError(
            f"this run was checkpointed with {resume.get('world_size')} processes; "
            f"resume it with the same number, not {world_size}",
            field="config.gpus",
        )
    optimiser.load_state_dict(resume["optimizer"])
    scheduler.load_state_dict(resume["scheduler"])
    _set_rng_state(resume["rng"])
    progress = Progress(**{f.name: resume[f.name] for f in dataclasses.fields(Progress)})
    progress.history = list(progress.history)
    return progress


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
