"""Training events from the child process onto the job row: progress, latest metrics, best
epoch, per-epoch metric history and log lines.

Steps can come hundreds of times a second, so progress is written at most once per
``interval``; an epoch is written at once. A write that fails (the database restarting) is
kept and tried again at the next flush, so an outage loses no epoch and no log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.store import add_metrics, append_logs, update_progress

log = logging.getLogger("aam.worker")

Clock = Callable[[], float]
PROGRESS_FIELDS = ("phase", "fold", "folds", "epoch", "epochs", "fraction", "eta_seconds")


class JobReporter:
    def __init__(
        self,
        session: Session,
        job_id: str,
        worker: str,
        *,
        interval: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.session = session
        self.job_id = job_id
        self.worker = worker
        self.interval = interval
        self.clock = clock
        self.progress: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {"train": {}, "validation": {}, "baseline": {}}
        self.best: dict[str, Any] = {}
        self.pending_metrics: list[dict[str, Any]] = []
        self.pending_logs: list[str] = []
        self.dirty = False
        self.metrics_changed = False
        self.last_flush = -float("inf")
        self.first_step: tuple[int, float] | None = None  # (step, elapsed) of this attempt
        self.held = True  # False once a write finds the job no longer ours

    # -- events --------------------------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "step":
            self._step(message)
        elif kind == "epoch":
            self._epoch(message)
        elif kind == "log":
            self.log(str(message.get("message", "")))
        elif kind == "progress":  # a cross-validation's, over its folds
            self.set_progress(**{k: message.get(k) for k in PROGRESS_FIELDS})
            self.flush()

    def log(self, line: str) -> None:
        self.pending_logs.append(line)
        self.dirty = True

    def _step(self, event: dict[str, Any]) -> None:
        step, steps = int(event["step"]), int(event["steps"])
        elapsed = float(event["elapsed_seconds"])
        if self.first_step is None:
            self.first_step = (step, elapsed)
        eta = None
        done_here = step - self.first_step[0]
        if done_here > 0:
            eta = (elapsed - self.first_step[1]) / done_here * max(steps - step, 0)
        self.progress = {
            "epoch": event["epoch"],
            "epochs": event["epochs"],
            "step": step,
            "steps": steps,
            "fraction": min(step / max(steps, 1), 1.0),
            "eta_seconds": eta,
        }
        self.dirty = True
        self.flush()

    def _epoch(self, event: dict[str, Any]) -> None:
        epoch = int(event["epoch"])
        train, validation = event.get("train") or {}, event.get("validation") or {}
        self.pending_metrics.append({"epoch": epoch, "split": "train", **train})
        if validation:
            self.pending_metrics.append({"epoch": epoch, "split": "validation", **validation})
        self.metrics = {**self.metrics, "train": train, "validation": validation}
        self.best = {
            "epoch": event.get("best_epoch") or None,
            "metric": event.get("monitor"),
            "value": event.get("best_value"),
        }
        self.progress = {
            **self.progress,
            "epoch": epoch,
            "epochs": event["epochs"],
            "step": event["step"],
            "steps": event["steps"],
            "fraction": min(int(event["step"]) / max(int(event["steps"]), 1), 1.0),
        }
        self.metrics_changed = self.dirty = True
        self.flush(force=True)

    def set_progress(self, **values: Any) -> None:
        self.progress = {**self.progress, **values}
        self.dirty = True

    def set_baseline(self, baseline: dict[str, Any] | None) -> None:
        if baseline:
            self.metrics = {**self.metrics, "baseline": baseline}
            self.metrics_changed = self.dirty = True

    # -- writes --------------------------------------------------------------------------

    def flush(self, *, force: bool = False) -> bool:
        """Write what changed (at most once per interval unless ``force``); whether this
        worker still holds the job."""
        if not self.dirty or (not force and self.clock() - self.last_flush < self.interval):
            return self.held
        self.last_flush = self.clock()
        try:
            if self.pending_metrics:
                add_metrics(self.session, self.job_id, self.pending_metrics)
                self.pending_metrics = []
            if self.pending_logs:
                append_logs(self.session, self.job_id, self.pending_logs)
                self.pending_logs = []
            self.held = update_progress(
                self.session,
                self.job_id,
                progress=self.progress,
                metrics=self.metrics if self.metrics_changed else None,
                best=self.best if self.metrics_changed else None,
                worker=self.worker,
            )
            self.metrics_changed = False
            self.dirty = False
        except LookupError:  # the job was deleted
            self.held = False
        except SQLAlchemyError as exc:
            log.warning("job %s: progress not written yet (%s); retrying", self.job_id, exc)
        return self.held
