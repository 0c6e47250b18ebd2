"""Round trips of every table: JSON values, nullable columns and aware timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from app.contracts import JobKind, JobState
from app.store.job_history import add_metrics, append_logs
from app.store.jobs import delete_job
from app.store.tables import Dataset, Job, JobLog, JobMetric, Model
from tests.store.factories import SHA_A, SHA_B, T0, at, make_dataset, make_job, make_model

SUMMARY = {
    "n_samples": 80,
    "sequence_length": {"min": 150, "max": 150},
    "sample_depth": {"min": 1200, "median": 4033.5, "max": 9000},
    "has_tree": True,
    "metadata_columns": [{"name": "age", "kind": "numeric", "n_missing": 0}],
    "warnings": ["3 samples have no metadata: S1, S2, S3"],
    "note": "µ-biome ✓",
}


def test_dataset_round_trip(session_factory: sessionmaker[Session]) -> None:
    files = {
        "table": {"sha256": SHA_A, "name": "table.biom", "size": 1234},
        "tree": {"sha256": SHA_B, "name": "tree.nwk", "size": 99},
    }
    with session_factory() as session:
        dataset = make_dataset(session, name="study", files=files, summary=SUMMARY, created_at=T0)
    with session_factory() as session:
        stored = session.get(Dataset, dataset.id)
        assert stored is not None
        assert (stored.owner, stored.name, stored.files, stored.summary) == (
            "alice",
            "study",
            files,
            SUMMARY,
        )
        assert stored.created_at == T0
        assert stored.created_at.tzinfo is UTC
        assert stored.id.startswith("ds_") and len(stored.id) == 19


def test_job_round_trip_and_defaults(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        dataset = make_dataset(session)
        job = make_job(
            session,
            dataset,
            kind=JobKind.train,
            name="age regressor",
            spec={"kind": "train", "target": {"column": "age", "task": "regression"}},
            base_model_id="mdl_0123456789abcdef",
            idempotency_key="key-1",
            created_at=at(1),
        )
    with session_factory() as session:
        stored = session.get(Job, job.id)
        assert stored is not None
        assert stored.kind == JobKind.train and stored.state == JobState.queued
        assert stored.spec == {"kind": "train", "target": {"column": "age", "task": "regression"}}
        assert (stored.dataset_id, stored.base_model_id, stored.model_id) == (
            dataset.id,
            "mdl_0123456789abcdef",
            None,
        )
        assert stored.created_at == stored.updated_at == at(1)
        assert (stored.started_at, stored.finished_at, stored.heartbeat_at) == (None, None, None)
        assert stored.progress == {} and stored.best == {} and stored.outputs == {}
        assert stored.metrics == {"train": {}, "validation": {}, "baseline": {}}
        assert (stored.attempts, stored.max_attempts, stored.log_lines) == (0, 3, 0)
        assert (stored.device, stored.worker, stored.error, stored.report) == (None,) * 4
        assert stored.cancel_requested is False
        assert stored.idempotency_key == "key-1"
        # Python None is SQL NULL, not the JSON literal null.
        assert session.scalar(text("SELECT count(*) FROM jobs WHERE error IS NULL")) == 1


def test_job_json_columns_round_trip(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        job = make_job(session)
        stored = session.get(Job, job.id)
        assert stored is not None
        stored.progress = {"epoch": 3, "epochs": 10, "fraction": 0.3, "eta_seconds": None}
        stored.metrics = {"train": {"loss": 0.5}, "validation": {"mae": 1.25}, "baseline": {}}
        stored.best = {"epoch": 2, "metric": "validation.mae", "value": 1.125}
        stored.error = {"type": "InputError", "detail": "column 'age' is missing"}
        stored.report = {"dropped": ["S1", "S2"], "n_dropped": 2}
        stored.outputs = {"predictions.tsv": SHA_A}
        session.commit()
    with session_factory() as session:
        stored = session.get(Job, job.id)
        assert stored is not None
        assert stored.progress == {"epoch": 3, "epochs": 10, "fraction": 0.3, "eta_seconds": None}
        assert stored.metrics["validation"] == {"mae": 1.25}
        assert stored.best == {"epoch": 2, "metric": "validation.mae", "value": 1.125}
        assert stored.error == {"type": "InputError", "detail": "column 'age' is missing"}
        assert stored.report == {"dropped": ["S1", "S2"], "n_dropped": 2}
        assert stored.outputs == {"predictions.tsv": SHA_A}


def test_metric_and_log_rows_round_trip(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        job = make_job(session)
        add_metrics(session, job.id, [{"epoch": 1, "split": "train", "loss": 0.75}], now=at(5))
        append_logs(session, job.id, ["epoch 1: loss 0.75 ✓"], now=at(6))
    with session_factory() as session:
        metric = session.scalars(select(JobMetric)).one()
        assert (metric.job_id, metric.epoch, metric.split, metric.values) == (
            job.id,
            1,
            "train",
            {"loss": 0.75},
        )
        assert metric.created_at == at(5)
        log = session.scalars(select(JobLog)).one()
        assert (log.job_id, log.line, log.message, log.created_at) == (
            job.id,
            1,
            "epoch 1: loss 0.75 ✓",
            at(6),
        )


def test_model_round_trip(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        job = make_job(session)
        model = make_model(
            session,
            name="age",
            kind="classifier",
            job_id=job.id,
            dataset_id=job.dataset_id,
            target={"column": "site", "task": "classification", "classes": ["gut", "skin"]},
            metrics={"validation": {"accuracy": 0.875}},
            n_parameters=3_000_000_000,  # past 32 bits
            plots={"loss": SHA_A, "confusion": SHA_B},
            source="job",
            details={"library_version": "0.1.0", "classes": ["gut", "skin"]},
            created_at=datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC),
        )
    with session_factory() as session:
        stored = session.get(Model, model.id)
        assert stored is not None
        assert stored.id.startswith("mdl_")
        assert (stored.kind, stored.job_id, stored.dataset_id, stored.source) == (
            "classifier",
            job.id,
            job.dataset_id,
            "job",
        )
        assert stored.target == {
            "column": "site",
            "task": "classification",
            "classes": ["gut", "skin"],
        }
        assert stored.config == {"embedding_dim": 64}
        assert stored.metrics == {"validation": {"accuracy": 0.875}}
        assert stored.n_parameters == 3_000_000_000
        assert stored.checkpoint_sha256 == SHA_B
        assert stored.plots == {"loss": SHA_A, "confusion": SHA_B}
        assert stored.details == {"library_version": "0.1.0", "classes": ["gut", "skin"]}
        assert stored.created_at == datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_deleting_a_job_cascades_and_unlinks_its_model(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        job = make_job(session)
        add_metrics(session, job.id, [{"epoch": 1, "split": "train", "loss": 1.0}])
        append_logs(session, job.id, ["a", "b"])
        model = make_model(session, job_id=job.id)
        assert delete_job(session, job.id) is True
        session.commit()
    with session_factory() as session:
        assert session.scalar(text("SELECT count(*) FROM job_metrics")) == 0
        assert session.scalar(text("SELECT count(*) FROM job_logs")) == 0
        stored = session.get(Model, model.id)
        assert stored is not None and stored.job_id is None
