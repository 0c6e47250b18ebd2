"""The pieces of the contract fuzzing shared by the test and the longer benchmark run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis
import schemathesis
from schemathesis import Response, checks

from app.main import create_app
from app.settings import Settings
from tests.api.conftest import StudyFiles
from tests.api.models import tiny_checkpoint
from tests.services import free_port, wait_healthy

KEY = "contract-key-0123456789ab"
HEADERS = {"Authorization": f"Bearer {KEY}"}
REDIS_DB = 15  # its own: 11, 13 and 14 are the other tests', 10 and 12 the benchmarks'


def no_server_error(ctx: object, response: Response, case: schemathesis.Case) -> None:
    """No 5xx, but for readiness's documented 503 (no worker has been seen: nothing consumes
    this test's queue)."""
    if response.status_code >= 500 and case.operation.label != "GET /ready":
        raise AssertionError(f"{response.status_code} from {case.operation.label}: {response.text}")


def problem_details(ctx: object, response: Response, case: schemathesis.Case) -> None:
    """Every 4xx is an RFC 9457 problem document whose status is the response's."""
    if not 400 <= response.status_code < 500:
        return
    kind = response.headers.get("content-type", [""])[0]
    assert kind.startswith("application/problem+json"), f"4xx answered with {kind!r}"
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("status") == response.status_code, body
    for key in ("type", "title", "detail"):
        assert isinstance(body.get(key), str) and body[key], f"problem without {key}: {body}"


CHECKS = [
    no_server_error,
    problem_details,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]


def contract_schema(*, seed: int, max_examples: int) -> schemathesis.schemas.BaseSchema:
    """The service's OpenAPI document (built without a database: ``openapi()`` touches no
    disk), with a fixed seed and a bound on examples per route and generation mode."""
    document = create_app(Settings(data_dir=Path("/nonexistent"))).openapi()  # type: ignore[call-arg]
    config = schemathesis.Config.from_dict(
        {
            "seed": seed,
            # an event stream of a queued job never ends: read its first event and hang up
            "max-stream-events": 1,
            "generation": {"mode": "all", "max-examples": max_examples, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_dict(json.loads(json.dumps(document)), config=config)


def _store_some(base: str, root: Path, study: StudyFiles) -> dict[str, str]:
    """A dataset, a model and a (queued) job, so that identifiers can be real ones."""
    with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
        files = {
            "table": ("table.biom", study.table.read_bytes()),
            "tree": ("tree.nwk", study.tree.read_bytes()),
            "metadata": ("metadata.tsv", study.metadata.read_bytes()),
        }
        dataset = client.post("/datasets", files=files)
        assert dataset.status_code == 201, dataset.text
        checkpoint = tiny_checkpoint("regressor", root / "regressor.pt")
        model = client.post("/models", files={"checkpoint": ("r.pt", checkpoint.read_bytes())})
        assert model.status_code == 201, model.text
        spec = {
            "kind": "pretrain",
            "dataset_id": dataset.json()["id"],
            "config": {"preset": "tiny"},
        }
        job = client.post("/jobs", json=spec)
        assert job.status_code == 202, job.text
    return {
        "dataset_id": dataset.json()["id"],
        "model_id": model.json()["id"],
        "job_id": job.json()["id"],
        "plot": "loss",
    }


@contextmanager
def serve_for_contract(
    root: Path, study: StudyFiles
) -> Iterator[tuple[str, dict[str, str], dict[str, str]]]:
    """``python -m app`` on a free loopback port with one key, Redis database 15 as its broker
    (nothing consumes it; emptied at the end): its address, headers and stored identifiers."""
    port = free_port()
    env = {
        **os.environ,
        "AAM_DATA_DIR": str(root / "data"),
        "AAM_API_KEYS": f"fuzzer:{KEY}",
        "AAM_PORT": str(port),
        "AAM_BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "AAM_LOG_LEVEL": "WARNING",
    }
    log = (root / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "app"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        yield base, HEADERS, _store_some(base, root, study)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        redis.Redis(db=REDIS_DB).delete("gpu", "cpu")
        log.close()
