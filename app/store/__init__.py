"""Persistence: database tables and repositories (SQLAlchemy 2) and artifact storage.

Transaction rule: repository functions flush and never commit; the caller (a route, a
pipeline) owns the transaction and commits. The exceptions are the job transitions and job
reports that cross processes (``job_state``: claim, heartbeat, progress, cancel, finish,
requeue; ``job_history``: metrics and logs), each one short write transaction that commits
itself.
"""

from app.store.artifacts import ArtifactStore, DigestMismatch, LocalArtifactStore, check_sha256
from app.store.datasets import (
    create_dataset,
    delete_dataset,
    file_referenced,
    get_dataset,
    list_datasets,
)
from app.store.db import (
    begin_write,
    committed,
    make_engine,
    make_session_factory,
    migrate,
    normalize_url,
    ping,
    storage_full,
)
from app.store.job_history import add_metrics, append_logs, get_logs, get_metrics
from app.store.job_state import (
    JobSignal,
    claim_job,
    finish_job,
    heartbeat,
    release_job,
    request_cancel,
    requeue_stale,
    update_progress,
)
from app.store.jobs import (
    count_by_state,
    create_job,
    dataset_in_use,
    delete_job,
    get_job,
    get_job_by_idempotency_key,
    list_jobs,
    model_in_use,
)
from app.store.models import (
    checkpoint_referenced,
    create_model,
    delete_model,
    get_model,
    list_models,
    model_checkpoint,
)
from app.store.pagination import MAX_LIMIT, decode_cursor, encode_cursor
from app.store.tables import Base, Dataset, Job, JobLog, JobMetric, Model, Worker, new_id, utcnow
from app.store.workers import live_workers, worker_gone, worker_seen

__all__ = [
    "MAX_LIMIT",
    "ArtifactStore",
    "Base",
    "Dataset",
    "DigestMismatch",
    "Job",
    "JobLog",
    "JobMetric",
    "JobSignal",
    "LocalArtifactStore",
    "Model",
    "Worker",
    "add_metrics",
    "append_logs",
    "begin_write",
    "check_sha256",
    "checkpoint_referenced",
    "claim_job",
    "committed",
    "count_by_state",
    "create_dataset",
    "create_job",
    "create_model",
    "dataset_in_use",
    "decode_cursor",
    "delete_dataset",
    "delete_job",
    "delete_model",
    "encode_cursor",
    "file_referenced",
    "finish_job",
    "get_dataset",
    "get_job",
    "get_job_by_idempotency_key",
    "get_logs",
    "get_metrics",
    "get_model",
    "heartbeat",
    "list_datasets",
    "list_jobs",
    "list_models",
    "live_workers",
    "make_engine",
    "make_session_factory",
    "migrate",
    "model_checkpoint",
    "model_in_use",
    "new_id",
    "normalize_url",
    "ping",
    "release_job",
    "request_cancel",
    "requeue_stale",
    "storage_full",
    "update_progress",
    "utcnow",
    "worker_gone",
    "worker_seen",
]
