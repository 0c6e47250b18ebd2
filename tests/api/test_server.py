"""The API as a real process (``python -m app``, the same command the image and ``make serve``
run) behind uvicorn on loopback: concurrent predictions, and the refusal to serve open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from app.registration import register_checkpoint
from app.settings import Settings
from app.store import LocalArtifactStore, make_engine, make_session_factory
from tests.api.models import tiny_checkpoint
from tests.services import free_port, wait_healthy

KEY = "server-test-key-0123456789"
REDIS_DB = 14
HEADERS = {"Authorization": f"Bearer {KEY}"}


@contextmanager
def serving(tmp_path: Path, **extra_env: str) -> Iterator[tuple[str, Settings, int]]:
    """``python -m app`` on a free loopback port, Redis database 14 as its broker (nothing
    consumes it: the messages sent there are removed at the end): its address, settings and
    process id."""
    port = free_port()
    env = {
        **os.environ,
        "AAM_DATA_DIR": str(tmp_path / "data"),
        "AAM_API_KEYS": f"alice:{KEY}",
        "AAM_PORT": str(port),
        "AAM_BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "AAM_LOG_LEVEL": "WARNING",
        **extra_env,
    }
    process = subprocess.Popen([sys.executable, "-m", "app"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        yield base, Settings(data_dir=tmp_path / "data"), process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            redis.Redis(db=REDIS_DB).delete("gpu", "cpu")
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert process.returncode in (0, -signal.SIGTERM), (
            process.stderr.read().decode() if process.stderr else ""
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    with serving(tmp_path) as (base, settings, _):
        yield base, settings


def _register(settings: Settings, tmp_path: Path) -> str:
    """Register a tiny regressor through the server's own database and storage."""
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_session_factory(engine)() as session:
            model = register_checkpoint(
                session, LocalArtifactStore(settings.artifacts_dir),
                tiny_checkpoint("regressor", tmp_path / "r.pt"), owner="alice",
                name="tiny", source="import",
            )  # fmt: skip
            session.commit()
            return model.id
    finally:
        engine.dispose()


def test_fifty_concurrent_predictions_equal_sequential_ones(
    server: tuple[str, Settings], tmp_path: Path
) -> None:
    base, settings = server
    model_id = _register(settings, tmp_path)
    study = generate(SyntheticSpec(n_samples=10, n_asvs=40, asvs_per_sample=10, seed=8))
    table = study.table

    def body(i: int) -> dict[str, Any]:
        counts = table.row_counts(i % table.n_samples)
        return {"model_id": model_id, "samples": [{"id": f"s{i}", "counts": counts}]}

    with httpx.Client(base_url=base, headers=HEADERS, timeout=60.0) as client:
        sequential = []
        for i in range(50):
            response = client.post("/predict", json=body(i))
            assert response.status_code == 200, response.text
            sequential.append(response.json()["predictions"][0]["prediction"])

        def call(i: int) -> tuple[int, float]:
            response = client.post("/predict", json=body(i))
            return response.status_code, response.json()["predictions"][0]["prediction"]

        with ThreadPoolExecutor(max_workers=50) as pool:
            concurrent = list(pool.map(call, range(50)))
        metrics = client.get("/metrics").text
    assert [status for status, _ in concurrent] == [200] * 50
    assert [value for _, value in concurrent] == pytest.approx(sequential, rel=1e-6, abs=1e-6)
    assert len(set(sequential[:10])) == 10  # ten different samples, ten different answers
    assert 'aam_http_requests_total{method="POST",route="/predict",status="200"} 100.0' in metrics
    assert "aam_loaded_models 1.0" in metrics


def test_refuses_to_serve_open_beyond_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AAM_")}
    env["AAM_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run([sys.executable, "-m", "app", "--host", "0.0.0.0"], env=env,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: refusing to listen on 0.0.0.0 without API keys: set AAM_API_KEYS or "
        "AAM_KEYS_FILE, or bind to 127.0.0.1"
    )
    assert not (tmp_path / "data").exists()  # refused before creating anything


def test_two_api_processes_share_the_port_the_database_and_their_counters(
    tmp_path: Path,
) -> None:
    """AAM_API_WORKERS=2: two processes answer on one port; 40 concurrent submissions (each on
    a new connection, so both processes take some) all get a job, each job is readable from
    either process, and every scrape of /metrics counts all 40, whichever process answers."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    study = generate(SyntheticSpec(n_samples=12, n_asvs=30, asvs_per_sample=8, seed=5))
    files = write_study(study, tmp_path / "study")
    extra = {"AAM_API_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with serving(tmp_path, **extra) as (base, _, _):
        with open(files["table"], "rb") as table, open(files["tree"], "rb") as tree:
            created = httpx.post(f"{base}/datasets", headers=HEADERS, timeout=60,
                                 files={"table": table, "tree": tree})  # fmt: skip
        assert created.status_code == 201, created.text
        body = {"kind": "pretrain", "dataset_id": created.json()["id"],
                "config": {"preset": "tiny", "epochs": 1}}  # fmt: skip

        def submit(_: int) -> httpx.Response:
            return httpx.post(f"{base}/jobs", json=body, headers=HEADERS, timeout=60)

        with ThreadPoolExecutor(max_workers=40) as pool:
            submitted = list(pool.map(submit, range(40)))
        assert [r.status_code for r in submitted] == [202] * 40
        ids = {r.json()["id"] for r in submitted}
        assert len(ids) == 40
        for job_id in ids:
            read = httpx.get(f"{base}/jobs/{job_id}", headers=HEADERS, timeout=30)
            assert (read.status_code, read.json()["state"]) == (200, "queued")
        line = 'aam_http_requests_total{method="POST",route="/jobs",status="202"} 40.0'
        for _ in range(6):  # new connections: answered by either process
            assert line in httpx.get(f"{base}/metrics", timeout=30).text
    # both processes counted requests (one file of counters per process)
    assert len({p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}) == 2
