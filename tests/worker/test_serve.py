"""``python -m aam_service`` (``make serve``): the API and a worker on the embedded defaults
from one command. Ctrl-C in the middle of a training stops both cleanly; after a restart the
finished job and its model are intact and the interrupted training resumes from its
checkpoint. A worker killed in the middle of a training is replaced, and its job resumes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.store import get_job, get_logs
from tests.services import free_port
from tests.worker.helpers import PRETRAIN_FAST, Process, Store, alive, descendants, wait_for

TERMINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def started() -> Iterator[list[Process]]:
    """The serve processes a test starts; one still running at the end (after a failed
    assertion) is killed with everything below it."""
    processes: list[Process] = []
    yield processes
    for process in processes:
        if process.popen.poll() is None:
            process.kill()


def start_serve(store: Store, port: int, log: Path, started: list[Process]) -> Process:
    serve = Process("aam_service", store.env(AAM_PORT=port), log)
    started.append(serve)
    url = f"http://127.0.0.1:{port}"
    banner = f"aam serve: AAM service at {url}  (API docs: {url}/docs)"

    def ready() -> bool:
        if serve.popen.poll() is not None:
            raise AssertionError(f"serve exited:\n{serve.output()[-3000:]}")
        return banner in serve.output()

    wait_for("the serve banner", ready, timeout=90, every=0.2)
    return serve


def job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
    return answer


def finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    done = wait_for(
        f"job {job_id}", lambda: job(client, job_id) if job(client, job_id)["state"] in TERMINAL
        else None, timeout=120, every=0.2,
    )  # fmt: skip
    assert done["state"] == "succeeded", done
    return done


def pretrain(client: httpx.Client, dataset: str, *, epochs: int) -> dict[str, Any]:
    body = {
        "kind": "pretrain",
        "dataset_id": dataset,
        "config": {**PRETRAIN_FAST, "epochs": epochs},
    }
    answer = client.post("/jobs", json=body)
    assert answer.status_code == 202, answer.text
    submitted: dict[str, Any] = answer.json()
    return submitted


def log_lines(client: httpx.Client, job_id: str) -> list[str]:
    return [line["message"] for line in client.get(f"/jobs/{job_id}/logs").json()["lines"]]


def test_serve_stops_on_ctrl_c_and_resumes_after_a_restart(
    tmp_path: Path, study_files: dict[str, Path], started: list[Process]
) -> None:
    port = free_port()
    with (
        Store.open(tmp_path / "data") as store,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        serve = start_serve(store, port, tmp_path / "serve1.log", started)
        ready = wait_for("a live worker", lambda: client.get("/ready").json()["workers"]["ok"], 60)
        assert ready
        upload = {role: (path.name, path.read_bytes()) for role, path in study_files.items()}
        dataset = client.post("/datasets", files=upload).json()["id"]
        quick = pretrain(client, dataset, epochs=1)
        model_id = finished(client, quick["id"])["model_id"]
        long = pretrain(client, dataset, epochs=12)
        wait_for("three epochs", lambda: (job(client, long["id"])["progress"]["epoch"] or 0) >= 3,
                 timeout=90, every=0.1)  # fmt: skip
        children = descendants(serve.pid)  # the API, the worker and the job's process
        assert len(children) == 3

        assert serve.stop(signal.SIGINT, timeout=90) == 0  # Ctrl-C
        assert not any(map(alive, children))
        assert "aam serve: stopped" in serve.output()
        with store.sessions() as session:
            interrupted = get_job(session, long["id"], None)
            # handed back: queued again, and the attempt it used is not counted
            assert interrupted is not None and interrupted.state == "queued"
            assert (interrupted.attempts, interrupted.worker) == (0, None)
            lines = [row.message for row in get_logs(session, long["id"])]
        assert (
            lines[-1] == "the worker is shutting down: the job goes back to the queue and resumes"
        )

        serve = start_serve(store, port, tmp_path / "serve2.log", started)
        try:
            resumed = finished(client, long["id"])
            assert resumed["attempts"] == 1  # a clean restart is not a failed attempt
            assert resumed["progress"]["step"] == resumed["progress"]["steps"]
            lines = [
                line["message"] for line in client.get(f"/jobs/{long['id']}/logs").json()["lines"]
            ]
            assert any(line.startswith("resuming at epoch ") for line in lines), lines
            again = client.get(f"/models/{model_id}")
            assert again.status_code == 200 and again.json()["job_id"] == quick["id"]
            assert job(client, quick["id"])["state"] == "succeeded"
        finally:
            assert serve.stop(signal.SIGTERM, timeout=90) == 0


def worker_process(serve: int) -> int | None:
    """The PID of serve's ``python -m worker`` child, if one runs."""
    for pid in descendants(serve):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", b"worker"] and alive(pid):
            return pid
    return None


def test_serve_replaces_a_killed_worker_and_the_job_resumes(
    tmp_path: Path, study_files: dict[str, Path], started: list[Process]
) -> None:
    """kill -9 of the worker (not serve, not the API) in the middle of a training: the API keeps
    answering, a new worker starts and shows in /ready, and the job, requeued once its
    heartbeat is older than the timeout (4 s here), resumes from its checkpoint and succeeds."""
    port = free_port()
    with (
        Store.open(tmp_path / "data") as store,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        serve = start_serve(store, port, tmp_path / "serve.log", started)
        wait_for("a live worker", lambda: client.get("/ready").json()["workers"]["ok"], 60)
        first = worker_process(serve.pid)
        assert first is not None
        upload = {role: (path.name, path.read_bytes()) for role, path in study_files.items()}
        dataset = client.post("/datasets", files=upload).json()["id"]
        long = pretrain(client, dataset, epochs=8)
        wait_for("two epochs", lambda: (job(client, long["id"])["progress"]["epoch"] or 0) >= 2,
                 timeout=90, every=0.1)  # fmt: skip

        os.kill(first, signal.SIGKILL)
        assert job(client, long["id"])["state"] == "running"  # the API still answers

        def replacement() -> int | None:
            found = worker_process(serve.pid)
            return None if found == first else found

        second = wait_for("a new worker process", replacement, timeout=30)
        wait_for(
            "the new worker in /ready",
            lambda: f":{second} (cpu)" in client.get("/ready").json()["workers"]["detail"],
            timeout=60,
        )
        done = finished(client, long["id"])
        assert done["attempts"] == 2  # the killed attempt, then the resumed one
        assert done["progress"]["step"] == done["progress"]["steps"]
        lines = log_lines(client, long["id"])
        assert any(line.startswith("resuming at epoch ") for line in lines), lines
        assert (
            "aam serve: the worker process ended unexpectedly (signal 9); starting a new one"
            in serve.output()
        )
        assert serve.stop(signal.SIGTERM, timeout=90) == 0  # still serving until now
