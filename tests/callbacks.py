"""Callbacks the tests use to watch and stop a training run."""

from __future__ import annotations

import time

from aam_core.train.callbacks import Callback, EpochEvent, StepEvent


class StopAfter(Callback):
    """Requests a stop after a number of optimiser steps."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.seen = 0

    def on_step(self, event: StepEvent) -> None:
        self.seen = event.step

    def should_stop(self) -> bool:
        return self.seen >= self.steps


class History(Callback):
    """Keeps every event."""

    def __init__(self) -> None:
        self.steps: list[StepEvent] = []
        self.epochs: list[EpochEvent] = []
        self.logs: list[str] = []
        self.started = time.monotonic()

    def on_step(self, event: StepEvent) -> None:
        self.steps.append(event)

    def on_epoch(self, event: EpochEvent) -> None:
        self.epochs.append(event)

    def on_log(self, message: str) -> None:
        self.logs.append(message)
