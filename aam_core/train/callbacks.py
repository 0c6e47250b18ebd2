"""Callbacks: how progress, metrics and cancellation cross the boundary of a training run.

The loop calls ``on_step`` after every optimiser step and ``on_epoch`` after every epoch, and
asks ``should_stop`` after every step; a stop request ends the run cleanly after saving a
checkpoint. The command-line tool shows a progress bar; the worker writes the job row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepEvent:
    epoch: int  # 1-based
    epochs: int
    step: int  # optimiser steps so far (1-based), over the whole run
    steps: int  # total optimiser steps planned
    loss: float
    components: dict[str, float]
    lr: float
    elapsed_seconds: float  # since the run (or its resumption) started

    @property
    def fraction(self) -> float:
        return min(self.step / max(self.steps, 1), 1.0)


@dataclass(frozen=True)
class EpochEvent:
    epoch: int
    epochs: int
    step: int
    steps: int
    train: dict[str, float]
    validation: dict[str, float]
    monitor: str
    value: float | None
    best_epoch: int
    best_value: float | None
    improved: bool
    seconds: float
    baseline: dict[str, Any] = field(default_factory=dict)


class Callback:
    """Base class: override what you need."""

    def on_step(self, event: StepEvent) -> None:
        """After every optimiser step."""

    def on_epoch(self, event: EpochEvent) -> None:
        """After every epoch (train and validation)."""

    def on_log(self, message: str) -> None:
        """A human-readable line about the run (settings, warnings, checkpoints)."""

    def should_stop(self) -> bool:
        """True requests a clean stop (a checkpoint is saved first)."""
        return False


class CallbackList(Callback):
    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)

    def on_step(self, event: StepEvent) -> None:
        for cb in self.callbacks:
            cb.on_step(event)

    def on_epoch(self, event: EpochEvent) -> None:
        for cb in self.callbacks:
            cb.on_epoch(event)

    def on_log(self, message: str) -> None:
        for cb in self.callbacks:
            cb.on_log(message)

    def should_stop(self) -> bool:
        return any(cb.should_stop() for cb in self.callbacks)
