"""The images' entry commands, run outside Docker exactly as the containers run them: the CMD
of each Dockerfile and the ``command`` of each compose service, with the environment the
container would get (the Dockerfile's ENV, then compose's ``environment`` resolved from a
generated .env by ``docker-compose config``), the image's PATH order (the project's virtual
environment first, as /opt/aam/bin in the image), and the Dockerfiles' HEALTHCHECK commands
as Docker runs them (exec form: the argument list, found on the container's PATH).

Only what names a container's neighbours is replaced: the database URL (a scratch database
on the local PostgreSQL), the broker URL (Redis database 11 at 127.0.0.1, which this module
owns and empties), the data directory and the port, and the bind address (loopback: a test
listens on no other interface). Then: migrate, start the API and a CPU worker, wait for both
healthchecks, upload a generated study, run a tiny pretraining job to success.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from app.store.db import head_revision
from tests.deploy.compose import COMPOSE, ROOT, make_env, resolved
from tests.deploy.dockerfile import final_cmd, final_env, healthcheck_argv
from tests.services import create_database, drop_database, free_port, postgres_admin, unavailable

REDIS_URL = "redis://127.0.0.1:6379/11"
VENV_BIN = str(Path(sys.executable).parent)
API_DOCKERFILE = (ROOT / "docker" / "api.Dockerfile").read_text()
WORKER_DOCKERFILE = (ROOT / "docker" / "worker.Dockerfile").read_text()
# What a container's neighbours are called; everything else comes from the image and compose.
REPLACED = {"AAM_DATABASE_URL", "AAM_BROKER_URL", "AAM_DATA_DIR", "AAM_HOST", "AAM_PORT"}

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    root: Path
    env_file: dict[str, str]  # the generated .env
    services: dict[str, Any]  # docker-compose config's services
    local: dict[str, str]  # the replaced values
    admin_key: str

    def environment(self, dockerfile: str, service: str, **extra: str) -> dict[str, str]:
        """The container's environment for ``service``, with the neighbours replaced."""
        image = final_env(dockerfile)
        image["PATH"] = image["PATH"].replace("/opt/aam/bin", VENV_BIN)
        image["PATH"] = image["PATH"].replace("$PATH", os.environ.get("PATH", "/usr/bin:/bin"))
        composed = {k: v for k, v in self.services[service]["environment"].items() if v}
        assert set(composed) >= REPLACED - {"AAM_HOST", "AAM_PORT"}, service
        return {"HOME": str(self.root), **image, **composed, **self.local, **extra}

    def start(self, command: list[str], env: dict[str, str], log: str) -> subprocess.Popen[bytes]:
        with (self.root / log).open("wb") as out:
            return subprocess.Popen(
                command, env=env, cwd=self.local["AAM_DATA_DIR"], stdout=out, stderr=out
            )

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def healthcheck(dockerfile: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = healthcheck_argv(dockerfile)
    assert argv is not None
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


def wait_healthy(
    dockerfile: str, env: dict[str, str], process: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        if healthcheck(dockerfile, env).returncode == 0:
            return
        time.sleep(1.0)
    raise AssertionError(f"not healthy within {timeout} s")


def stop(process: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # what `docker stop` sends
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("deploy")
    env_file = make_env(root / ".env")
    services = resolved(root / ".env", COMPOSE)["services"]
    try:
        broker = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        broker.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL} is unreachable: {exc}")
    admin = postgres_admin()
    name = create_database(admin)
    broker.flushdb()  # database 11 is this module's alone
    (root / "data").mkdir()
    local = {
        "AAM_DATABASE_URL": admin.url.set(database=name).render_as_string(hide_password=False),
        "AAM_BROKER_URL": REDIS_URL,
        "AAM_DATA_DIR": str(root / "data"),
        "AAM_HOST": "127.0.0.1",
        "AAM_PORT": str(free_port()),
    }
    assert set(local) == REPLACED
    admin_key = env_file["AAM_API_KEYS"].split(":")[1]
    try:
        yield Stack(root, env_file, services, local, admin_key)
    finally:
        broker.flushdb()
        broker.close()
        drop_database(admin, name)
        admin.dispose()


def test_api_refuses_to_start_open_with_the_image_settings(stack: Stack) -> None:
    env = stack.environment(API_DOCKERFILE, "api")
    env.pop("AAM_API_KEYS")
    env["AAM_HOST"] = final_env(API_DOCKERFILE)["AAM_HOST"]  # 0.0.0.0, as in the container
    result = subprocess.run(
        final_cmd(API_DOCKERFILE) or [], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: refusing to listen on 0.0.0.0 without API keys: set AAM_API_KEYS or "
        "AAM_KEYS_FILE, or bind to 127.0.0.1\n"
    )


def test_migrate_then_api_and_worker_run_a_job(stack: Stack) -> None:
    head = head_revision()
    migrate_env = stack.environment(API_DOCKERFILE, "migrate")
    command = stack.services["migrate"]["command"]
    first = subprocess.run(command, env=migrate_env, capture_output=True, text=True, timeout=120)
    assert (first.returncode, first.stdout) == (
        0,
        f"migrate: schema upgraded from empty to revision {head}\n",
    ), first.stderr
    again = subprocess.run(command, env=migrate_env, capture_output=True, text=True, timeout=120)
    assert (again.returncode, again.stdout) == (0, f"migrate: schema already at revision {head}\n")

    api_env = stack.environment(API_DOCKERFILE, "api")
    assert api_env["AAM_API_KEYS"] == stack.env_file["AAM_API_KEYS"]
    assert healthcheck(API_DOCKERFILE, api_env).returncode == 1  # nothing listens yet
    api_cmd = stack.services["api"]["command"]
    assert api_cmd == final_cmd(API_DOCKERFILE) == ["python", "-m", "app"]
    api = stack.start(api_cmd, api_env, "api.log")

    worker_env = stack.environment(
        WORKER_DOCKERFILE, "worker-cpu", HOSTNAME=socket.gethostname()
    )  # Docker sets HOSTNAME to the container's host name, which Celery's node name uses
    assert worker_env["AAM_DEVICE"] == "cpu"
    worker_cmd = stack.services["worker-cpu"]["command"]
    assert worker_cmd == final_cmd(WORKER_DOCKERFILE) == ["python", "-m", "worker"]
    worker = None
    try:
        wait_healthy(API_DOCKERFILE, api_env, api, timeout=120)
        # Before the worker runs, its healthcheck fails (no node answers the ping).
        assert healthcheck(WORKER_DOCKERFILE, worker_env).returncode == 1
        worker = stack.start(worker_cmd, worker_env, "worker.log")
        wait_healthy(WORKER_DOCKERFILE, worker_env, worker, timeout=180)
        run_a_job(stack)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n--- api log ---\n{stack.log('api.log')}\n"
            f"--- worker log ---\n{stack.log('worker.log')}"
        ) from exc
    finally:
        codes = (stop(worker) if worker else 0, stop(api))
    assert codes[1] in (0, -signal.SIGTERM), stack.log("api.log")
    assert codes[0] in (0, -signal.SIGTERM), stack.log("worker.log")


def run_a_job(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.local['AAM_PORT']}"
    headers = {"Authorization": f"Bearer {stack.admin_key}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60.0) as client:
        # No key: liveness and metrics answer, resources do not.
        assert httpx.get(f"{base}/health").json()["status"] == "ok"
        assert httpx.get(f"{base}/datasets").status_code == 401
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        checks = ready.json()
        assert checks["database"]["detail"] == f"postgresql: schema at revision {head_revision()}"
        assert checks["workers"]["detail"].startswith("1 alive: celery@")
        assert checks["workers"]["detail"].endswith(" (cpu)")

        study = generate(SyntheticSpec(n_samples=40, n_asvs=60, asvs_per_sample=12, seed=3))
        files = write_study(study, stack.root / "study")
        with (
            files["table"].open("rb") as table,
            files["tree"].open("rb") as tree,
            files["metadata"].open("rb") as metadata,
        ):
            created = client.post(
                "/datasets",
                files={"table": table, "tree": tree, "metadata": metadata},
                data={"name": "deploy-check"},
            )
        assert created.status_code == 201, created.text
        dataset = created.json()
        assert (dataset["n_samples"], dataset["has_tree"]) == (40, True)

        config = {"preset": "tiny", "epochs": 1, "batch_size": 8, "token_limit": 64, "seed": 0}
        submitted = client.post(
            "/jobs", json={"kind": "pretrain", "dataset_id": dataset["id"], "config": config}
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        assert submitted.headers["location"] == f"/jobs/{job_id}"
        job = wait_for_job(client, job_id, timeout=420)
        assert job["state"] == "succeeded", job
        assert (job["device"], job["attempts"], job["error"]) == ("cpu", 1, None)
        assert job["worker"].startswith(f"celery@{socket.gethostname()}:")
        assert job["progress"]["epoch"] == job["progress"]["epochs"] == 1
        model = client.get(f"/models/{job['model_id']}")
        assert model.status_code == 200, model.text
        assert (model.json()["kind"], model.json()["job_id"]) == ("encoder", job_id)
        # The artifacts landed in the data directory the volume would hold.
        assert any(Path(stack.local["AAM_DATA_DIR"], "artifacts").rglob("*"))
        metrics = httpx.get(f"{base}/metrics").text
        assert 'aam_jobs{state="succeeded"} 1.0' in metrics.splitlines()


def wait_for_job(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(1.0)
    logs = client.get(f"/jobs/{job_id}/logs").text
    raise AssertionError(f"job {job_id} still {job.get('state')} after {timeout} s: {logs}")
