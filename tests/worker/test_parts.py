"""The worker's parts one at a time: devices, queues, error messages, broker settings, the
progress reporter on a real database, the child supervisor with real child processes."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.contracts import JobState
from app.store import claim_job, heartbeat, requeue_stale, utcnow
from app.store.job_history import get_metrics
from tests.worker.helpers import Store
from tests.worker.test_pipeline import Depth, RecordingDispatcher
from worker.broker import REDIS_VISIBILITY_TIMEOUT_S, EmbeddedTransport, broker_config
from worker.celery_app import parse_queues
from worker.devices import DeviceInfo, Placement, place, resolve_device
from worker.errors import JobFailure, child_died, describe_exit
from worker.housekeeping import LEFTOVER_AGE, SWEEP_EVERY, Housekeeper
from worker.inputs import stored_file
from worker.reporting import JobReporter
from worker.runtime import WorkerRuntime
from worker.supervisor import Supervisor, command


def test_devices() -> None:
    assert resolve_device("cpu") == DeviceInfo("cpu", 0)
    assert resolve_device("auto", cuda_devices=0) == DeviceInfo("cpu", 0)
    assert resolve_device("auto", cuda_devices=4) == DeviceInfo("cuda:0", 4)
    assert resolve_device("cuda", cuda_devices=2) == DeviceInfo("cuda:0", 2)
    assert resolve_device("CUDA:1", cuda_devices=2) == DeviceInfo("cuda:1", 1)
    with pytest.raises(
        ValueError, match=r"^AAM_DEVICE must be cpu, cuda, cuda:N or auto, got 'tpu'$"
    ):
        resolve_device("tpu")
    with pytest.raises(
        ValueError, match=r"^AAM_DEVICE=cuda:2 but this host has 2 GPU\(s\): cuda:0\.\.cuda:1$"
    ):
        resolve_device("cuda:2", cuda_devices=2)
    with pytest.raises(ValueError, match="^AAM_DEVICE=cuda but this host has no usable CUDA GPU$"):
        resolve_device("cuda", cuda_devices=0)


def test_placement_of_a_job() -> None:
    assert place(DeviceInfo("cpu", 0), None) == Placement("cpu", 1, "cpu")
    assert place(DeviceInfo("cuda:1", 1), 1) == Placement("cuda:1", 1, "cuda:1")
    assert place(DeviceInfo("cuda:0", 4), 2) == Placement("cuda", 2, "cuda:0-1")
    with pytest.raises(JobFailure) as failure:
        place(DeviceInfo("cpu", 0), 2)
    assert failure.value.as_error() == {
        "type": "ConfigError",
        "detail": "config.gpus=2, but the worker that took this job (cpu) can use no GPU; "
        "submit it with gpus <= 1, or run a worker with AAM_DEVICE=cuda on a host with 2 GPUs",
    }


def test_queues_and_broker_settings() -> None:
    assert parse_queues(" gpu,gpu") == ["gpu"]
    with pytest.raises(ValueError, match="^worker queues must be some of gpu, got 'cpu'$"):
        parse_queues("cpu")  # the light-work queue is gone: nothing was ever sent to it
    with pytest.raises(ValueError, match="^worker queues must be some of gpu, got 'io'$"):
        parse_queues("io")
    embedded = broker_config("sqla+sqlite:////data/broker.db")
    assert embedded["broker_url"] == "sqlite:////data/broker.db"
    assert embedded["broker_transport"] is EmbeddedTransport
    assert EmbeddedTransport.polling_interval <= 0.2  # queue latency well under a second
    redis = broker_config("redis://127.0.0.1:6379/0")
    assert redis == {
        "broker_url": "redis://127.0.0.1:6379/0",
        "broker_transport_options": {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT_S},
    }
    assert REDIS_VISIBILITY_TIMEOUT_S >= 7 * 24 * 3600


def test_error_messages() -> None:
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(-9) == "signal 9 (SIGKILL)"
    assert describe_exit(None) == "no exit status"
    died = child_died(-signal.SIGKILL, "epoch 1\n  loading   batch\n")
    assert died.as_error() == {
        "type": "TrainingProcessDied",
        "detail": "the job's process ended with signal 9 (SIGKILL) before it finished. A "
        "process killed this way is often out of memory: try a smaller batch_size or "
        "token_limit. Its last output: epoch 1 loading batch",
    }


def test_child_commands() -> None:
    order = Path("/runs/job_1/order.json")
    assert command(order, 1) == [sys.executable, "-m", "worker.runner", str(order)]
    assert command(order, 4) == [
        sys.executable,
        *("-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4"),
        *("-m", "worker.runner", str(order)),
    ]


def test_stored_files_are_checked(store: Store, tmp_path: Path) -> None:
    source = tmp_path / "table.biom"
    source.write_bytes(b"abc")
    sha256, _ = store.storage.put_file(source)
    assert stored_file(store.storage, sha256, "the table") == store.storage.path(sha256)
    store.storage.path(sha256).write_bytes(b"abd")  # a changed blob
    with pytest.raises(JobFailure) as corrupt:
        stored_file(store.storage, sha256, "the table file 'table.biom'")
    assert corrupt.value.as_error() == {
        "type": "CorruptArtifact",
        "detail": "the table file 'table.biom' is corrupt in artifact storage: its content has "
        "SHA-256 a52d159f262b2c6ddb724a61840befc36eb30c88877a4030b65cbe86298449c9, expected "
        f"{sha256}; upload it again",
    }
    store.storage.delete(sha256)
    with pytest.raises(JobFailure) as missing:
        stored_file(store.storage, sha256, "the table")
    assert missing.value.as_error() == {
        "type": "MissingArtifact",
        "detail": f"the table (SHA-256 {sha256}) is missing from artifact storage; upload it again",
    }


def _step(step: int, elapsed: float, steps: int = 10) -> dict[str, Any]:
    return {"type": "step", "epoch": 1 + (step - 1) // 5, "epochs": 2, "step": step,
            "steps": steps, "loss": 1.0, "components": {}, "lr": 0.1,
            "elapsed_seconds": elapsed}  # fmt: skip


def test_reporter_writes_progress_metrics_and_logs(
    store: Store, study_files: dict[str, Path]
) -> None:
    job_id = store.add_job("pretrain", store.add_dataset(study_files), send=False)
    now = [100.0]
    with store.sessions() as session:
        assert claim_job(session, job_id, worker="w1", device="cpu")
        reporter = JobReporter(session, job_id, "w1", interval=1.0, clock=lambda: now[0])
        reporter.handle(_step(3, 10.0))  # a resumed run: its first step here is step 3
        first = {"epoch": 1, "epochs": 2, "step": 3, "steps": 10, "fraction": 0.3,
                 "eta_seconds": None}  # fmt: skip
        assert store.job(job_id).progress == first
        reporter.handle(_step(4, 12.0))  # within the interval: not written yet
        assert store.job(job_id).progress == first
        now[0] += 1.5
        reporter.handle(_step(5, 14.0))
        assert store.job(job_id).progress == {
            "epoch": 1, "epochs": 2, "step": 5, "steps": 10, "fraction": 0.5,
            "eta_seconds": 10.0,  # 2 s per step since step 3, 5 steps to go
        }  # fmt: skip
        reporter.handle({"type": "log", "message": "hello"})
        reporter.handle(
            {"type": "epoch", "epoch": 1, "epochs": 2, "step": 5, "steps": 10,
             "train": {"loss": 0.5}, "validation": {"loss": 0.75, "mae": 2.0},
             "monitor": "mae", "value": 2.0, "best_epoch": 1, "best_value": 2.0,
             "improved": True, "seconds": 1.0}
        )  # fmt: skip
        job = store.job(job_id)
        assert job.metrics == {"train": {"loss": 0.5}, "validation": {"loss": 0.75, "mae": 2.0},
                               "baseline": {}}  # fmt: skip
        assert job.best == {"epoch": 1, "metric": "mae", "value": 2.0}
        assert store.logs(job_id) == ["hello"]
        history = [(m.epoch, m.split, m.values) for m in get_metrics(session, job_id)]
        assert history == [(1, "train", {"loss": 0.5}),
                           (1, "validation", {"loss": 0.75, "mae": 2.0})]  # fmt: skip
        # Reaped (its heartbeat long gone): the next write finds the job no longer held.
        heartbeat(session, job_id, worker="w1", now=utcnow() - timedelta(hours=1))
        assert requeue_stale(session, older_than=timedelta(minutes=1)) == [(job_id, "requeued")]
        reporter.log("late")
        assert reporter.flush(force=True) is False
        assert store.job(job_id).state == JobState.queued.value


CHILD = """
import os, signal, sys, time
from worker.link import ParentLink
signal.signal(signal.SIGTERM, signal.SIG_IGN) if sys.argv[1] == "stubborn" else None
link = ParentLink.connect()
link.send({"type": "step", "step": 1})
while not link.should_stop():
    time.sleep(0.05)
if sys.argv[1] == "stubborn":
    while True:
        time.sleep(0.05)
link.send({"type": "done", "result": {"stopped": "requested"}})
"""


def _supervise(tmp_path: Path, behaviour: str, grace: float) -> tuple[Any, list[Any], float]:
    seen: list[dict[str, Any]] = []
    supervisor = Supervisor(
        tmp_path / "order.json",
        nproc=1,
        output=tmp_path / f"{behaviour}.log",
        grace=grace,
        poll=0.05,
        argv=[sys.executable, "-c", CHILD, behaviour],
    )
    started = time.monotonic()
    outcome = supervisor.run(seen.append, lambda: "cancel" if seen else None)
    return outcome, seen, time.monotonic() - started


def test_supervisor_stops_a_cooperative_child(tmp_path: Path) -> None:
    outcome, seen, seconds = _supervise(tmp_path, "cooperative", grace=30.0)
    assert seen == [{"type": "step", "step": 1}]
    assert outcome.final == {"type": "done", "result": {"stopped": "requested"}}
    assert (outcome.returncode, outcome.stop_reason) == (0, "cancel")
    assert seconds < 10  # it stopped when asked, not after the grace period


def test_supervisor_kills_a_child_that_ignores_stop_and_sigterm(tmp_path: Path) -> None:
    outcome, seen, seconds = _supervise(tmp_path, "stubborn", grace=1.0)
    assert seen == [{"type": "step", "step": 1}]
    assert outcome.final is None
    assert (outcome.returncode, outcome.stop_reason) == (-signal.SIGKILL, "cancel")
    assert 2.0 <= seconds < 10  # stop, 1 s, SIGTERM (ignored), 1 s, SIGKILL


def test_housekeeping_sweeps_storage_leftovers_once_an_hour(store: Store) -> None:
    runtime = WorkerRuntime(
        settings=store.settings, name="celery@test:2", device=DeviceInfo("cpu", 0),
        queues=["gpu"], engine=store.engine, sessions=store.sessions,
        storage=store.storage, dispatcher=RecordingDispatcher(), queue_depth=Depth(),
    )  # fmt: skip
    old = store.storage.new_temp_path()
    fresh = store.storage.new_temp_path()
    for path in (old, fresh):
        path.write_bytes(b"part of an upload")
    stale = time.time() - LEFTOVER_AGE.total_seconds() - 60
    os.utime(old, (stale, stale))
    keeper = Housekeeper(runtime)
    keeper.beat()
    assert not old.exists() and fresh.exists()
    os.utime(fresh, (stale, stale))
    keeper.last_reap -= keeper.reap_every  # the reaper runs again; the sweep waits an hour
    keeper.beat()
    assert fresh.exists()
    keeper.last_reap -= keeper.reap_every
    keeper.last_sweep -= SWEEP_EVERY
    keeper.beat()
    assert not fresh.exists()
