"""The Celery tasks: thin adapters with stable names (app.contracts) and ID-only arguments.
Everything else is on the job row; the pipeline does the work."""

from __future__ import annotations

from celery import Celery

from app.contracts import TASK_RUN_JOB
from worker import pipeline
from worker.runtime import WorkerRuntime


def register_tasks(app: Celery, runtime: WorkerRuntime) -> None:
    @app.task(name=TASK_RUN_JOB, acks_late=True, ignore_result=True)
    def run_job(job_id: str) -> str:
        """Run a queued job (a duplicate or late message finds it claimed and does nothing)."""
        return pipeline.run_job(runtime, job_id)
