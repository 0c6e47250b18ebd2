"""``python -m worker.runner ORDER``: the child process that runs one job's training or
prediction with aam_core, launched by the worker (alone, or per rank under ``torchrun``).

A process of its own gives each job a fresh CUDA context and returns all its memory at exit.
It reads no database: the order names its files, and everything it learns goes to the worker
over :mod:`worker.link` (rank 0 only), ending with ``done`` and the run's summary, or
``error`` and the exception. A stop request from the worker, or the worker's death, makes the
training loop save a checkpoint and end at its next step.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aam_core.io.files import to_jsonable
from aam_core.train.callbacks import Callback, EpochEvent, StepEvent
from worker.order import JobOrder

if TYPE_CHECKING:  # the heavy modules load in execute()
    from aam_core.io import Inputs


class LinkCallback(Callback):
    """Training events to the worker; the worker's stop request to the training loop."""

    def __init__(self, link: Any) -> None:
        self.link = link

    def on_step(self, event: StepEvent) -> None:
        self.link.send(to_jsonable({"type": "step", **dataclasses.asdict(event)}))

    def on_epoch(self, event: EpochEvent) -> None:
        self.link.send(to_jsonable({"type": "epoch", **dataclasses.asdict(event)}))

    def on_log(self, message: str) -> None:
        self.link.send({"type": "log", "message": message})

    def should_stop(self) -> bool:
        return bool(self.link.should_stop())


class NoLink:
    """Ranks other than 0 report nothing; rank 0's stop reaches them through the loop."""

    def send(self, message: dict[str, Any]) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def _inputs(order: JobOrder) -> Inputs:
    from aam_core.io import load_files

    return load_files(
        order.files, names={role: order.names.get(role, role) for role in order.files}
    )


def _summary(result: Any) -> dict[str, Any]:
    fit = result.fit
    return {
        "kind": result.kind,
        "stopped": fit.stopped,
        "epochs_run": fit.epochs_run,
        "steps": fit.steps,
        "monitor": fit.monitor,
        "best_epoch": fit.best_epoch,
        "best_value": fit.best_value,
        "best_checkpoint": None if result.best_checkpoint is None else str(result.best_checkpoint),
        "last_checkpoint": str(result.last_checkpoint),
        "validation": result.validation,
        "baseline": None if result.baseline is None else result.baseline.get("metrics"),
        "report": result.report,
    }


def _predict(order: JobOrder) -> dict[str, Any]:
    from aam_core.checkpoint import load_checkpoint
    from aam_core.io.predictions import q2_dir
    from aam_core.plan import plan_run
    from aam_core.predict import Predictor, write_predictions
    from aam_core.train.distributed import resolve_device
    from aam_core.train.local_plan import checkpoint_facts, dataset_facts

    assert order.model_checkpoint is not None
    name = order.model_name or order.model_checkpoint
    checkpoint = load_checkpoint(order.model_checkpoint, name=name)
    inputs = _inputs(order)
    model = checkpoint_facts(checkpoint, name=name, field="model_id")
    run = plan_run("predict", order.config, dataset_facts(inputs), base=model)
    predictor = Predictor(
        checkpoint, device=resolve_device(order.device), precision=run.config.precision
    )
    result = predictor.predict(
        inputs.table, inputs.sequences, passes=run.config.passes, seed=run.config.seed
    )
    write_predictions(result, order.predictions_path)
    warned = [s for s in result.samples if s.warnings]
    return {
        "kind": result.kind,
        "predictions": str(order.predictions_path),
        # q2-sample-classifier's layouts: predictions.tsv, class_probabilities.tsv
        "q2_files": sorted(str(f) for f in q2_dir(order.predictions_path).glob("*.tsv")),
        "n_samples": len(result.samples),
        "samples_with_warnings": len(warned),
        "warnings": sorted({w for s in warned for w in s.warnings})[:20],
        "passes": run.config.passes,
        "precision": run.config.precision,
    }


class CrossValidationLink(Callback):
    """A cross-validation's events to the worker: its progress over folds (not each fold's
    training curve, which the job's metrics would mix up), AAM's epochs as log lines, and the
    worker's stop request to the run."""

    def __init__(self, link: Any) -> None:
        self.link = link
        self.label = ""

    def progress(self, p: Any) -> None:
        self.label = p.label
        message = {
            "type": "progress",
            "phase": "refit" if p.label == "refit" else "folds",
            "fold": p.fold,
            "folds": p.total,
            "epoch": p.epoch,
            "epochs": p.epochs,
            "fraction": p.fraction,
            "eta_seconds": p.eta_seconds,
        }
        self.link.send(to_jsonable(message))

    def on_epoch(self, event: EpochEvent) -> None:
        value = "-" if event.value is None else f"{event.value:.4g}"
        message = (
            f"{self.label}: epoch {event.epoch}/{event.epochs}, "
            f"{event.monitor} {value} (best epoch {event.best_epoch})"
        )
        self.link.send({"type": "log", "message": message})

    def on_log(self, message: str) -> None:
        self.link.send({"type": "log", "message": message})

    def should_stop(self) -> bool:
        return bool(self.link.should_stop())


def _cross_validate(order: JobOrder, link: Any) -> dict[str, Any]:
    from aam_core.crossval.run import Request, run_request
    from aam_core.plan import TargetSpec
    from aam_core.plan.crossval import CrossValidation

    assert order.target is not None
    request = Request(
        target=TargetSpec(**order.target),  # type: ignore[arg-type]
        cv=CrossValidation.from_mapping(order.cv),
        config=order.config,
        model_kind=order.model_kind,  # type: ignore[arg-type]
        refit=order.refit,
        device=order.device,
    )
    events = CrossValidationLink(link)
    outcome = run_request(
        _inputs(order),
        request,
        Path(order.out_dir),
        callback=events,
        progress=events.progress,
        log=events.on_log,
        dataset_sha256=order.dataset_sha256,
        name=order.names.get("table", "the dataset"),
    )
    return {
        "kind": "cross_validate",
        "stopped": "requested" if outcome.stopped else "completed",
        "report": outcome.report,
        "files": {name: str(path) for name, path in outcome.files.items()},
        "refit": None if outcome.refit is None else _summary(outcome.refit),
    }


def execute(order: JobOrder, callback: Callback) -> dict[str, Any]:
    """Run the order; the summary the worker records. The run is planned again here, from the
    files themselves, by the planner that checked the job at submission."""
    if order.kind == "predict":
        return _predict(order)
    if order.kind == "cross_validate":
        assert isinstance(callback, LinkCallback)
        return _cross_validate(order, callback.link)
    from aam_core.plan import TargetSpec
    from aam_core.train.local_plan import plan_local
    from aam_core.train.run import run_pretrain, run_train

    inputs = _inputs(order)
    target = None if order.target is None else TargetSpec(**order.target)  # type: ignore[arg-type]
    run = plan_local(
        order.kind,  # type: ignore[arg-type]
        order.config,
        inputs,
        target=target,
        base_checkpoint=order.base_checkpoint,
        base_name=order.model_name,
        freeze_base=order.freeze_base,
        model_kind=order.model_kind,  # type: ignore[arg-type]
        device=order.device,
    )
    stage = run_pretrain if order.kind == "pretrain" else run_train
    common: dict[str, Any] = {
        "callbacks": callback,
        "resume": order.resume,
        "device": order.device,
        "dataset_sha256": order.dataset_sha256,
    }
    return _summary(stage(inputs, run, order.out_dir, **common))


def error_message(exc: BaseException) -> dict[str, Any]:
    """What the worker learns of a failure: a user error (any UserError, decided here with
    isinstance) with its field, a write the disk refused for lack of space, or an internal
    error with its traceback."""
    from aam_core.errors import UserError
    from aam_core.io.files import is_disk_full

    message: dict[str, Any] = {
        "type": "error",
        "error_type": type(exc).__name__,
        "detail": str(exc) or type(exc).__name__,
        "user": isinstance(exc, UserError),
        "disk_full": is_disk_full(exc),
    }
    if isinstance(exc, UserError):
        message["field"] = exc.field
    elif not message["disk_full"]:
        message["traceback"] = traceback.format_exc()[-8000:]
    return message


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m worker.runner ORDER.json", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    order = JobOrder.read(Path(args[0]))
    link: Any = NoLink()
    if int(os.environ.get("RANK", "0")) == 0:
        from worker.link import ParentLink

        link = ParentLink.connect()
    try:
        summary = execute(order, LinkCallback(link))
    except Exception as exc:
        link.send(error_message(exc))
        traceback.print_exc(file=sys.stderr)
        return 1
    link.send({"type": "done", "result": to_jsonable(summary)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
