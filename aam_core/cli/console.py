"""What the command-line tool shows and records while a run goes: a progress bar with the
run's log lines, a cross-validation's progress over its folds, an events file (one JSON line
per event) and a stop file."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from tqdm import tqdm  # type: ignore[import-untyped]

from aam_core.io.files import json_text
from aam_core.train.callbacks import Callback, CallbackList, EpochEvent, StepEvent

if TYPE_CHECKING:
    from aam_core.crossval.engine import Progress


class ConsoleProgress(Callback):
    """A tqdm bar of optimiser steps and the run's log lines, on stderr."""

    def __init__(self, *, quiet: bool = False, stream: IO[str] | None = None) -> None:
        self.quiet = quiet
        self.stream = stream
        self.bar: Any = None

    def _out(self) -> IO[str]:
        return self.stream or sys.stderr

    def on_step(self, event: StepEvent) -> None:
        if self.quiet:
            return
        if self.bar is None or self.bar.total != event.steps or event.step <= self.bar.n:
            self.close()  # a new run (the demo runs two) or a resumed one
            self.bar = tqdm(
                total=event.steps,
                initial=event.step - 1,
                unit="step",
                file=self._out(),
                dynamic_ncols=True,
                leave=False,
            )
        self.bar.update(event.step - self.bar.n)
        self.bar.set_postfix(epoch=f"{event.epoch}/{event.epochs}", loss=f"{event.loss:.4g}")

    def on_epoch(self, event: EpochEvent) -> None:
        train_loss = event.train.get("loss")
        parts = [f"epoch {event.epoch}/{event.epochs}"]
        if train_loss is not None:
            parts.append(f"train loss {train_loss:.4g}")
        if event.value is not None:
            split = "validation" if event.validation else "train"
            parts.append(f"{split} {event.monitor} {event.value:.4g}")
        if event.best_value is not None:
            parts.append(f"best {event.best_value:.4g} (epoch {event.best_epoch})")
        self.write(", ".join(parts))

    def on_log(self, message: str) -> None:
        self.write(message)

    def write(self, message: str) -> None:
        if not self.quiet:
            tqdm.write(message, file=self._out())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def duration(seconds: float) -> str:
    """``75`` -> ``"75 s"``, ``600`` -> ``"10 min"``, ``9000`` -> ``"2.5 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class FoldLines:
    """A cross-validation's progress as one line on stderr as each fold starts, and as the
    final model's training starts: which fold, the share of the whole run done and, once it
    is known, the time left. A fold's training shows its epochs as the run's log lines."""

    def __init__(self, *, quiet: bool = False, stream: IO[str] | None = None) -> None:
        self.quiet = quiet
        self.stream = stream
        self.label: str | None = None

    def __call__(self, progress: Progress) -> None:
        if self.quiet or progress.label == self.label:
            return
        self.label = progress.label
        if progress.label == "refit":
            where = "the final model, on every sample"
        else:
            where = f"fold {progress.fold}/{progress.total} ({progress.label})"
        left = progress.eta_seconds
        tqdm.write(
            f"{where}: {progress.fraction:.0%} of the run done"
            + ("" if left is None else f", about {duration(left)} left"),
            file=self.stream or sys.stderr,
        )


class EventsFile(Callback):
    """Appends one JSON object per event (``{"type": "step" | "epoch" | "log", ...}``) and
    flushes it at once, so that another process can follow the run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _write(self, record: dict[str, Any]) -> None:
        if self.handle is None:
            return
        self.handle.write(json_text({**record, "time": time.time()}) + "\n")
        self.handle.flush()

    def on_step(self, event: StepEvent) -> None:
        self._write({"type": "step", **dataclasses.asdict(event), "fraction": event.fraction})

    def on_epoch(self, event: EpochEvent) -> None:
        self._write({"type": "epoch", **dataclasses.asdict(event)})

    def on_log(self, message: str) -> None:
        self._write({"type": "log", "message": message})

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class StopFile(Callback):
    """Requests a clean stop (checkpoint first) once ``path`` exists."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def should_stop(self) -> bool:
        return self.path.exists()


@contextlib.contextmanager
def run_callbacks(
    quiet: bool, events: Path | None, stop_file: Path | None
) -> Iterator[CallbackList]:
    """The command-line tool's callbacks for one run, closed afterwards."""
    sink = EventsFile(events) if events is not None else None
    stop = [StopFile(stop_file)] if stop_file is not None else []
    try:
        with ConsoleProgress(quiet=quiet) as progress:
            yield CallbackList([progress, *([sink] if sink else []), *stop])
    finally:
        if sink is not None:
            sink.close()
