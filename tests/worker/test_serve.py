"""``python -m worker.serve`` (``make serve``): the API and a worker on the embedded defaults
from one command. Ctrl-C in the middle of a training stops both cleanly; after a restart the
finished job and its model are intact and the interrupted training resumes from its
checkpoint."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx

from app.store import get_job, get_logs
from tests.services import free_port
from tests.worker.helpers import FAST, Process, Store, alive, descendants, wait_for

TERMINAL = ("succeeded", "failed", "cancelled")


def start_serve(store: Store, port: int, log: Path) -> Process:
    serve = Process("worker.serve", store.env(AAM_PORT=port), log)
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
    body = {"kind": "pretrain", "dataset_id": dataset, "config": {**FAST, "epochs": epochs}}
    answer = client.post("/jobs", json=body)
    assert answer.status_code == 202, answer.text
    submitted: dict[str, Any] = answer.json()
    return submitted


def log_lines(client: httpx.Client, job_id: str) -> list[str]:
    return [line["message"] for line in client.get(f"/jobs/{job_id}/logs").json()["lines"]]


def test_serve_stops_on_ctrl_c_and_resumes_after_a_restart(
    tmp_path: Path, study_files: dict[str, Path]
) -> None:
    port = free_port()
    with (
        Store.open(tmp_path / "data") as store,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
    ):
        serve = start_serve(store, port, tmp_path / "serve1.log")
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

        serve = start_serve(store, port, tmp_path / "serve2.log")
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
