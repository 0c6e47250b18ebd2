"""Recovery with real processes and real Redis: a worker killed with SIGKILL mid-training
(the job resumes on a new worker from its last checkpoint and ends as an uninterrupted run
would), and a broker that restarts, losing its queue, while jobs wait (none is lost, none
runs twice)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from app.contracts import JobState
from app.dispatch import BrokerUnavailable
from app.store import Model
from tests.services import free_port, unavailable
from tests.worker.helpers import (
    AGE,
    FAST,
    PRETRAIN_FAST,
    Store,
    alive,
    descendants,
    running,
    wait_for,
)

# Train from scratch long enough to be killed in the middle (about 10 epochs of 5 steps).
LONG_TRAIN = {**FAST, "epochs": 10, "seed": 7}


def test_killed_worker_job_resumes_on_another_worker(
    tmp_path: Path, study_files: dict[str, Path], redis_url: str
) -> None:
    with Store.open(tmp_path / "data", broker_url=redis_url) as store:
        dataset = store.add_dataset(study_files)
        with running("worker", store.env(), tmp_path / "worker1.log") as first:
            whole = store.add_job("train", dataset, target=AGE, config=LONG_TRAIN)
            reference = store.wait(whole, JobState.succeeded, timeout=120)
            crashed = store.add_job("train", dataset, target=AGE, config=LONG_TRAIN)
            wait_for(
                "three epochs of the second job",
                lambda: (store.job(crashed).progress.get("epoch") or 0) >= 4,
                timeout=90,
                every=0.05,
            )
            killed = first.kill()  # kill -9: the worker and the job's process
            assert len(killed) == 2
            wait_for("the killed processes to end", lambda: not any(map(alive, killed)), 10)
        assert store.job(crashed).state == JobState.running.value  # nobody could say otherwise
        with running("worker", store.env(), tmp_path / "worker2.log") as second:
            resumed = store.wait(crashed, JobState.succeeded, timeout=120)
        assert f"reaper: job {crashed} lost its worker; queued again" in second.output()
        assert resumed.attempts == 2
        logs = store.logs(crashed)
        assert any(line.startswith("attempt 2 of 3") and "resuming" in line for line in logs)
        assert any(line.startswith("resuming at epoch ") for line in logs)
        # Exact resume: the same final and best metrics as the run that was never interrupted.
        assert resumed.best["epoch"] == reference.best["epoch"]
        assert resumed.best["value"] == pytest.approx(reference.best["value"], rel=1e-4)
        for split in ("train", "validation"):
            assert resumed.metrics[split].keys() == reference.metrics[split].keys()
            for name, value in reference.metrics[split].items():
                assert resumed.metrics[split][name] == pytest.approx(value, rel=1e-4, abs=1e-6)
        with store.sessions() as session:
            models = session.scalar(select(func.count()).where(Model.job_id == crashed))
        assert models == 1


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server of this test's own (it is stopped and restarted), without persistence:
    a restart loses every message."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    assert binary is not None
    port = free_port()
    directory = tmp_path / "redis"
    directory.mkdir()
    yield port, directory


def start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    wait_for("redis-server", lambda: _pings(client), timeout=10)
    return server


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_broker_restart_loses_no_job_and_runs_none_twice(
    tmp_path: Path, study_files: dict[str, Path], own_redis: tuple[int, Path]
) -> None:
    port, directory = own_redis
    server = start_redis(port, directory)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        with Store.open(tmp_path / "data", broker_url=url) as store:
            dataset = store.add_dataset(study_files)
            with running("worker", store.env(), tmp_path / "worker.log") as worker:
                busy = store.add_job("pretrain", dataset, config={**PRETRAIN_FAST, "epochs": 12})
                store.wait(busy, JobState.running, timeout=60)
                waiting = [
                    store.add_job("pretrain", dataset, config={**PRETRAIN_FAST, "epochs": 1})
                    for _ in range(2)
                ]
                # The waiting jobs' messages are in the broker, to be lost with it. (A worker
                # slow to start may find the busy job's message received but the job not yet
                # claimed: its reaper then sends a harmless duplicate, which finds it claimed.)
                queued = [
                    json.loads(base64.b64decode(json.loads(m)["body"]))[0][0]
                    for m in redis.Redis(port=port).lrange("gpu", 0, -1)
                ]
                assert set(waiting) <= set(queued) <= {busy, *waiting}, queued
                server.terminate()  # the queue goes with it
                server.wait(timeout=10)
                with pytest.raises(BrokerUnavailable):  # the API answers 503 meanwhile
                    store.dispatcher.send_job("job_0000000000000000", "pretrain")  # type: ignore[arg-type]
                server = start_redis(port, directory)
                for job_id in (busy, *waiting):
                    job = store.wait(job_id, JobState.succeeded, timeout=120)
                    assert job.attempts == 1, job_id
                    starts = [line for line in store.logs(job_id) if line.startswith("attempt ")]
                    assert len(starts) == 1, store.logs(job_id)
                with store.sessions() as session:
                    per_job = dict(
                        session.execute(
                            select(Model.job_id, func.count()).group_by(Model.job_id)
                        ).all()
                    )
                assert per_job == {busy: 1, waiting[0]: 1, waiting[1]: 1}
                assert worker.popen.poll() is None and not descendants(worker.pid)
            # Only the reaper could bring back the waiting jobs' messages: the restart lost them.
            assert re.search(
                r"reaper: queue gpu holds \d+ messages for \d+ waiting jobs; sending them again",
                worker.output(),
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
