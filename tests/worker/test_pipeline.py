"""The pipeline and the reaper in this process, on a real SQLite store: what happens to a job
before any training starts (duplicate messages, bad inputs) and how dead workers' jobs and
lost messages are recovered. The dispatcher is a recording double here (a unit test of one
layer); the real broker and worker processes are in the other modules."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from app.contracts import JobKind, JobState
from app.store import Job, claim_job, get_dataset, heartbeat, utcnow
from app.store.artifacts import file_sha256
from tests.worker.helpers import AGE, FAST, PRETRAIN_FAST, Store
from worker.devices import DeviceInfo
from worker.pipeline import run_job
from worker.reaper import reap
from worker.runtime import WorkerRuntime


@dataclass
class RecordingDispatcher:
    sent: list[tuple[str, JobKind]] = field(default_factory=list)

    def send_job(self, job_id: str, kind: JobKind) -> None:
        self.sent.append((job_id, kind))

    def ping(self) -> tuple[bool, str]:
        return True, "reachable (test)"


@dataclass
class Depth:
    messages: int | None = 0

    def __call__(self, queue: str) -> int | None:
        return self.messages


@pytest.fixture
def runtime(store: Store) -> WorkerRuntime:
    return WorkerRuntime(
        settings=store.settings,
        name="celery@test:1",
        device=DeviceInfo("cpu", 0),
        queues=["gpu"],
        engine=store.engine,
        sessions=store.sessions,
        storage=store.storage,
        dispatcher=RecordingDispatcher(),
        queue_depth=Depth(),
    )


@pytest.fixture
def dataset(store: Store, study_files: dict[str, Path]) -> str:
    return store.add_dataset(study_files)


def test_duplicate_late_and_unknown_messages_do_nothing(
    store: Store, runtime: WorkerRuntime, dataset: str
) -> None:
    job_id = store.add_job("pretrain", dataset, send=False, config=PRETRAIN_FAST)
    with store.sessions() as session:
        assert claim_job(session, job_id, worker="celery@other:2", device="cpu")
    assert run_job(runtime, job_id) == "skipped"
    job = store.job(job_id)
    assert (job.state, job.worker, job.attempts) == ("running", "celery@other:2", 1)
    assert run_job(runtime, "job_0000000000000000") == "missing"


def test_a_corrupt_dataset_file_fails_the_job_with_its_name(
    store: Store, runtime: WorkerRuntime, dataset: str, study_files: dict[str, Path]
) -> None:
    job_id = store.add_job("pretrain", dataset, send=False, config=PRETRAIN_FAST)
    with store.sessions() as session:
        stored = get_dataset(session, dataset, None)
        assert stored is not None
        entry = stored.files["table"]
    blob = store.storage.path(entry["sha256"])
    blob.write_bytes(blob.read_bytes()[:-10])  # truncated on disk
    actual, _ = file_sha256(blob)
    assert run_job(runtime, job_id) == "failed"
    job = store.job(job_id)
    assert job.state == JobState.failed.value
    assert job.error == {
        "type": "CorruptArtifact",
        "detail": f"the table file 'table.biom' of dataset {dataset} is corrupt in artifact "
        f"storage: its content has SHA-256 {actual}, expected {entry['sha256']}; upload it again",
    }
    assert (job.attempts, job.device, job.worker) == (1, "cpu", "celery@test:1")
    assert store.logs(job_id)[-1] == f"failed: CorruptArtifact: {job.error['detail']}"


def test_a_deleted_base_model_fails_the_job(
    store: Store, runtime: WorkerRuntime, dataset: str
) -> None:
    job_id = store.add_job(
        "train", dataset, send=False, target=AGE, base_model_id="mdl_0123456789abcdef",
        freeze_base=True, config=FAST,
    )  # fmt: skip
    assert run_job(runtime, job_id) == "failed"
    assert store.job(job_id).error == {
        "type": "MissingModel",
        "detail": "model mdl_0123456789abcdef no longer exists",
    }


def test_more_gpus_than_the_worker_has_fails_at_once(
    store: Store, runtime: WorkerRuntime, dataset: str
) -> None:
    job_id = store.add_job("pretrain", dataset, send=False, config={**PRETRAIN_FAST, "gpus": 2})
    assert run_job(runtime, job_id) == "failed"
    job = store.job(job_id)
    assert job.error is not None and job.error["type"] == "ConfigError"
    assert job.error["detail"].startswith("config.gpus=2, but the worker that took this job (cpu)")
    assert not (store.settings.data_dir / "runs" / job_id).exists()  # no child was started


def test_reaper_requeues_a_dead_workers_job_and_sends_it_again(
    store: Store, runtime: WorkerRuntime, dataset: str
) -> None:
    dead = store.add_job("train", dataset, send=False, target=AGE, config=FAST)
    alive = store.add_job("pretrain", dataset, send=False, config=PRETRAIN_FAST)
    started = utcnow()
    with store.sessions() as session:
        assert claim_job(session, dead, worker="celery@dead:1", device="cpu", now=started)
        assert claim_job(session, alive, worker="celery@alive:1", device="cpu", now=started)
    later = started + timedelta(seconds=store.settings.heartbeat_timeout_seconds - 1)
    with store.sessions() as session:  # the live worker's heartbeat lands in time
        assert heartbeat(session, alive, worker="celery@alive:1", now=later).held
    timeout = timedelta(seconds=store.settings.heartbeat_timeout_seconds)
    report = reap(runtime, now=started + timeout + timedelta(seconds=1))
    assert report.as_dict() == {"requeued": [dead], "failed": [], "cancelled": [], "resent": []}
    assert runtime.dispatcher.sent == [(dead, JobKind.train)]  # type: ignore[attr-defined]
    assert store.job(dead).state == JobState.queued.value
    assert store.job(alive).state == JobState.running.value


def test_reaper_fails_a_job_whose_workers_keep_dying(
    store: Store, runtime: WorkerRuntime, dataset: str
) -> None:
    job_id = store.add_job("pretrain", dataset, send=False, config=PRETRAIN_FAST)
    now = utcnow()
    for attempt in range(store.settings.max_attempts):
        with store.sessions() as session:
            assert claim_job(session, job_id, worker=f"celery@w{attempt}:1", device="cpu", now=now)
        now += timedelta(hours=1)
        report = reap(runtime, now=now)
    assert report.failed == [job_id]
    job = store.job(job_id)
    assert job.state == JobState.failed.value and job.attempts == store.settings.max_attempts
    assert job.error is not None and job.error["type"] == "WorkerLost"
    assert len(runtime.dispatcher.sent) == store.settings.max_attempts - 1  # type: ignore[attr-defined]


def test_reaper_sends_again_the_messages_a_broker_lost(
    store: Store, runtime: WorkerRuntime, dataset: str
) -> None:
    old = [store.add_job("pretrain", dataset, send=False, config=PRETRAIN_FAST) for _ in range(2)]
    timeout = timedelta(seconds=store.settings.heartbeat_timeout_seconds)
    now = utcnow() + timeout + timedelta(seconds=5)
    new = store.add_job("pretrain", dataset, send=False, config=PRETRAIN_FAST)
    with store.sessions() as session:  # the newest job was queued just now
        session.execute(update(Job).where(Job.id == new).values(updated_at=now))
        session.commit()
    depth = runtime.queue_depth
    assert isinstance(depth, Depth)
    depth.messages = 2  # both old jobs still have their message
    assert reap(runtime, now=now).resent == []
    depth.messages = 1  # one was lost (which one cannot be told): both are sent again
    assert reap(runtime, now=now).resent == old
    depth.messages = None  # the broker cannot be asked: nothing is sent blindly
    assert reap(runtime, now=now).resent == []
    sent = runtime.dispatcher.sent  # type: ignore[attr-defined]
    assert sent == [(old[0], JobKind.pretrain), (old[1], JobKind.pretrain)]


NEW_USER_ERROR = '''
from aam_core.errors import UserError
import aam_core.train.run as run


class SamplesNeverSequencedError(UserError):
    """A user error that no part of the worker names."""


def refuse(*args, **kwargs):
    raise SamplesNeverSequencedError("the samples were never sequenced", field="config.seed")


run.prepare_data = refuse
'''


def test_a_new_kind_of_user_error_in_the_child_fails_as_the_user_s(
    store: Store,
    runtime: WorkerRuntime,
    dataset: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The child's UserError subclasses are the user's errors whatever their name: the job
    fails with the message and field, not as an internal error with a traceback."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NEW_USER_ERROR)  # loaded by the child at start-up
    paths = [str(hook), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    job_id = store.add_job("pretrain", dataset, send=False, config=PRETRAIN_FAST)
    assert run_job(runtime, job_id) == "failed"
    assert store.job(job_id).error == {
        "type": "SamplesNeverSequencedError",
        "detail": "the samples were never sequenced",
        "field": "config.seed",
    }
    assert not [line for line in store.logs(job_id) if "internal error" in line]
