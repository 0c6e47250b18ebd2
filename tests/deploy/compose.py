"""Helpers for the deployment tests: the compose files as data, a generated ``.env``, and
``docker-compose`` (Debian's package, which validates files without a Docker engine)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.services import unavailable

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
MULTIHOST = ROOT / "docker" / "multihost.yml"
WORKER_HOST = ROOT / "docker" / "worker-host.yml"
OBJECTSTORE = ROOT / "docker" / "objectstore.yml"
WORKER_HOST_S3 = ROOT / "docker" / "worker-host-s3.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SECRETS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "AAM_API_KEYS", "FLOWER_BASIC_AUTH")
# Values docker/multihost.yml and docker/worker-host.yml need (documentation addresses).
MULTIHOST_ENV = {
    "STORE_BIND_ADDRESS": "192.0.2.10",
    "MAIN_HOST": "192.0.2.10",
    "SHARED_DATA_DIR": "/srv/aam-data",
}
# What docker/objectstore.yml and docker/worker-host-s3.yml need besides the addresses.
OBJECTSTORE_ENV = {
    "AAM_STORAGE_URL": "s3://aam-data/lab",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "example-secret-key",
}
# The object store's variables compose passes through from .env (set or not) to every service
# that reads or writes artifacts; they are boto3's, not the service's settings.
AWS_VARIABLES = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_REQUEST_CHECKSUM_CALCULATION",
    "AWS_RESPONSE_CHECKSUM_VALIDATION",
}


def load(path: Path = COMPOSE) -> dict[str, Any]:
    """The file as YAML data (anchors and ``<<`` merges resolved, ``${...}`` left as text)."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key] = value
    return values


def make_env(path: Path, **extra: str) -> dict[str, str]:
    """Run scripts/make_env.sh into ``path``, append ``extra`` lines, return the values."""
    subprocess.run(
        [str(ROOT / "scripts" / "make_env.sh"), str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    with path.open("a") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in extra.items())
    return read_env(path)


def docker_compose() -> str:
    """The docker-compose command; a skip without it, a failure under CI=true."""
    found = shutil.which("docker-compose")
    if found is None:
        unavailable("docker-compose is not installed (scripts/services.sh installs it)")
    assert found is not None
    return found


def run_compose(env_file: Path, *files: Path, args: tuple[str, ...] = ("config",)) -> Any:
    """``docker-compose --env-file ENV -f FILE... ARGS`` with nothing from this process's
    environment that could stand in for the file's values."""
    command = [docker_compose(), "--env-file", str(env_file)]
    for file in files:
        command += ["-f", str(file)]
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)}
    return subprocess.run(
        [*command, *args], env=environment, capture_output=True, text=True, timeout=60
    )


def resolved(env_file: Path, *files: Path) -> dict[str, Any]:
    """The configuration compose would run (``docker-compose config``), as data."""
    result = run_compose(env_file, *(files or (COMPOSE,)))
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = yaml.safe_load(result.stdout)
    return data


def uncomment_gpu_snippet(text: str) -> str:
    """docker-compose.yml with its documented "add GPU 1" lines uncommented, as a sysadmin
    would paste them."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "To add GPU 1" in line)
    out = lines[: start + 1]
    for line in lines[start + 1 :]:
        match = re.match(r"^(\s*)#   (.*)$", line)
        if not match:
            out += lines[len(out) :]
            break
        out.append(f"{match[1]}{match[2]}")
    return "\n".join(out) + "\n"
