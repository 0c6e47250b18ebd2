"""The end of a job: its outputs into artifact storage, the model registered, the job row
finished. Registering the model and finishing the job are one transaction, so a job that this
worker no longer holds (reaped meanwhile) leaves no model behind."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from aam_core.checkpoint import load_checkpoint
from aam_core.io import sha256_file
from aam_core.io.files import atomic_write, json_text
from aam_core.model_card import card_markdown, model_card
from app.contracts import JobSpec, JobState
from app.registration import register_checkpoint
from app.store import ArtifactStore, begin_write, finish_job
from app.store.tables import Job, Model
from worker.order import JobOrder
from worker.reporting import JobReporter

log = logging.getLogger("aam.worker")

# job output name -> file of the run directory (aam_core.train.run writes them)
RUN_OUTPUTS = {
    "validation_predictions": "validation_predictions.tsv",
    "metrics": "metrics.jsonl",
    "split": "split.tsv",
    "baseline": "baseline.json",
    "importance": "importance.tsv",  # q2-sample-classifier ImportanceFormat
    "report": "report.json",
}


FIT_DETAILS = ("stopped", "epochs_run", "best_epoch", "monitor")  # a registered model's details


def store_outputs(storage: ArtifactStore, run_dir: Path) -> dict[str, str]:
    """The run's output files that exist, stored; name -> sha256."""
    return {
        name: storage.put_file(run_dir / file)[0]
        for name, file in RUN_OUTPUTS.items()
        if (run_dir / file).is_file()
    }


def store_card(storage: ArtifactStore, checkpoint: Path, run_dir: Path) -> dict[str, str]:
    """The model's card, written into the run directory as ``card.md`` and ``card.json`` and
    stored as the outputs ``card_markdown`` and ``card_json``: the card that
    ``GET /models/{id}/card`` answers, built from the same checkpoint. A card is a by-product:
    one that cannot be written is logged and left out, and the trained model is still kept."""
    try:
        card = model_card(load_checkpoint(checkpoint), checkpoint_sha256=sha256_file(checkpoint))
        files = {"card_markdown": run_dir / "card.md", "card_json": run_dir / "card.json"}
        with atomic_write(files["card_markdown"]) as handle:
            handle.write(card_markdown(card))
        with atomic_write(files["card_json"]) as handle:
            handle.write(json_text(card, indent=2) + "\n")
        return {name: storage.put_file(path)[0] for name, path in files.items()}
    except Exception:  # the checkpoint itself is validated again when it is registered
        log.exception("the model card of %s could not be written", checkpoint)
        return {}


def clean_report(report: dict[str, Any], spec: JobSpec) -> dict[str, Any]:
    """The run's report, naming the base model by ID rather than by its path in storage."""
    report = dict(report)
    base = report.get("base_checkpoint")
    if isinstance(base, dict):
        report["base_checkpoint"] = {
            **{k: v for k, v in base.items() if k != "path"},
            "model_id": spec.base_model_id,
        }
    return report


def register_run(
    session: Session,
    storage: ArtifactStore,
    job: Job,
    summary: dict[str, Any],
    run_dir: Path,
    outputs: dict[str, str],
) -> tuple[Model, Path]:
    """Register a finished training run (``summary``: the child's, of ``run_dir``) as the
    job's model: its best checkpoint (else its last), plots, card and fit details. Adds the
    card and the checkpoint to ``outputs``; opens the write transaction the caller's
    ``finish_job`` commits, so the model and the finished job are one transaction."""
    checkpoint = Path(summary.get("best_checkpoint") or summary["last_checkpoint"])
    plots = {plot.stem: plot for plot in sorted((run_dir / "plots").glob("*.png"))}
    outputs.update(store_card(storage, checkpoint, run_dir))
    details = {key: summary.get(key) for key in FIT_DETAILS}
    begin_write(session)
    model = register_checkpoint(
        session,
        storage,
        checkpoint,
        owner=job.owner,
        name=job.name,
        source="job",
        file_name=f"{job.id}/{checkpoint.name}",
        job_id=job.id,
        dataset_id=job.dataset_id,
        plots=plots,
        details=details,
    )
    outputs["checkpoint"] = model.checkpoint_sha256
    return model, checkpoint


def finish_training(
    session: Session,
    storage: ArtifactStore,
    job: Job,
    spec: JobSpec,
    order: JobOrder,
    summary: dict[str, Any],
    reporter: JobReporter,
    *,
    worker: str,
) -> bool:
    """Register the run's best checkpoint as a model and mark the job succeeded."""
    run_dir = Path(order.out_dir)
    reporter.set_baseline(summary.get("baseline"))
    reporter.set_progress(fraction=1.0, eta_seconds=0.0)
    reporter.flush(force=True)
    outputs = store_outputs(storage, run_dir)
    model, checkpoint = register_run(session, storage, job, summary, run_dir, outputs)
    model_id, kind = model.id, model.kind
    finished = finish_job(
        session,
        job.id,
        state=JobState.succeeded,
        worker=worker,
        report=clean_report(summary["report"], spec),
        model_id=model_id,
        outputs=outputs,
    )
    if finished:
        reporter.log(f"registered {kind} model {model_id} from {checkpoint.name}")
        reporter.flush(force=True)
        # The model's checkpoint now lives in artifact storage; the run's copies are spare.
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return finished


def finish_cross_validation(
    session: Session,
    storage: ArtifactStore,
    job: Job,
    spec: JobSpec,
    order: JobOrder,
    summary: dict[str, Any],
    reporter: JobReporter,
    *,
    worker: str,
) -> bool:
    """Store the out-of-fold predictions (``outputs["predictions"]``), the report and the
    plots (``plot_<name>``); with refit, register the final model (its card cites the
    cross-validated figures); mark the job succeeded with ``report.cross_validation``."""
    files = {name: Path(path) for name, path in summary["files"].items()}
    outputs = {name: storage.put_file(path)[0] for name, path in files.items() if path.is_file()}
    report = dict(summary["report"])
    reporter.set_progress(fraction=1.0, eta_seconds=0.0)
    reporter.flush(force=True)
    refit = summary.get("refit")
    model_id = None
    registered = None
    if refit is not None:
        run_dir = Path(order.out_dir) / "refit"
        model, checkpoint = register_run(session, storage, job, refit, run_dir, outputs)
        model_id, registered = model.id, (model.kind, checkpoint.name)
        report["refit_model_id"] = model_id
    finished = finish_job(
        session,
        job.id,
        state=JobState.succeeded,
        worker=worker,
        report={"cross_validation": report},
        model_id=model_id,
        outputs=outputs,
    )
    if finished:
        depth = (report.get("confounds") or {}).get("depth") or {}
        if depth.get("flagged"):
            reporter.log(f"warning: {depth['message']}")
        if registered is not None:
            kind, name = registered
            reporter.log(f"registered {kind} model {model_id} from {name} (every sample)")
            shutil.rmtree(Path(order.out_dir) / "refit" / "checkpoints", ignore_errors=True)
        reporter.flush(force=True)
    return finished


def finish_prediction(
    session: Session,
    storage: ArtifactStore,
    job: Job,
    spec: JobSpec,
    order: JobOrder,
    summary: dict[str, Any],
    reporter: JobReporter,
    *,
    worker: str,
) -> bool:
    """Store the predictions TSV (``outputs["predictions"]``) and the q2-sample-classifier files
    (``q2_predictions``, ``q2_class_probabilities``) and mark the job succeeded."""
    sha256, _ = storage.put_file(Path(summary["predictions"]))
    q2 = {f"q2_{Path(f).stem}": storage.put_file(Path(f))[0] for f in summary.get("q2_files", [])}
    reporter.log(
        f"predicted {summary['n_samples']} samples with a {summary['kind']} "
        f"({summary['samples_with_warnings']} with warnings)"
    )
    reporter.set_progress(fraction=1.0, eta_seconds=0.0)
    reporter.flush(force=True)
    report = {
        "model_id": spec.model_id,
        "model_kind": summary["kind"],
        "n_samples": summary["n_samples"],
        "samples_with_warnings": summary["samples_with_warnings"],
        "warnings": summary["warnings"],
        "passes": summary["passes"],
        "precision": summary["precision"],
    }
    return finish_job(
        session,
        job.id,
        state=JobState.succeeded,
        worker=worker,
        report=report,
        outputs={"predictions": sha256, **q2},
    )


def finish_cancelled(
    session: Session,
    storage: ArtifactStore,
    job: Job,
    spec: JobSpec,
    order: JobOrder,
    summary: dict[str, Any] | None,
    reporter: JobReporter,
    *,
    worker: str,
) -> bool:
    """Mark the job cancelled, keeping its last checkpoint (``outputs["checkpoint"]``) and
    whatever the run wrote."""
    run_dir = Path(order.out_dir)
    outputs = store_outputs(storage, run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    if last.is_file():
        outputs["checkpoint"] = storage.put_file(last)[0]
    step = reporter.progress.get("step")
    reporter.log(
        "cancelled"
        + (f" at step {step}" if step is not None else "")
        + ("; the last checkpoint is kept as output 'checkpoint'" if last.is_file() else "")
    )
    reporter.flush(force=True)
    report = None
    if summary is not None and isinstance(summary.get("report"), dict):
        report = clean_report(summary["report"], spec)
    return finish_job(
        session,
        job.id,
        state=JobState.cancelled,
        worker=worker,
        report=report,
        outputs=outputs,
    )
