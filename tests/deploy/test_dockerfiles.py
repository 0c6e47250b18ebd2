"""Review of docker/api.Dockerfile and docker/worker.Dockerfile by written-out rules (non-root
user, healthcheck, pinned images, exec-form CMD, pip without a cache, ...), and of the rules
themselves on a Dockerfile that breaks each one."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from tests.deploy.dockerfile_rules import (
    final_cmd,
    final_env,
    global_args,
    healthcheck_command,
    lint,
    parse,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "api": ROOT / "docker" / "api.Dockerfile",
    "worker": ROOT / "docker" / "worker.Dockerfile",
}
ENTRY = {"api": ["python", "-m", "app"], "worker": ["python", "-m", "worker"]}

BAD = """\
FROM python:latest
FROM ubuntu
FROM debian:bookworm-slim AS base
ADD . /src
RUN cd /src && pip install .
RUN apt-get update && apt-get install -y gcc
COPY --from=builder /opt /opt
USER root
CMD python -m app
"""


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_passes_the_review(name: str) -> None:
    assert lint(DOCKERFILES[name].read_text()) == []


def test_the_rules_catch_each_violation() -> None:
    assert lint(BAD) == [
        "line 1: FROM python:latest: the tag 'latest' is not a pinned version",
        "line 2: FROM ubuntu: pin the image with a version tag or a digest",
        "line 3: FROM debian:bookworm-slim: the tag 'bookworm-slim' is not a pinned version",
        "line 4: ADD; use COPY",
        "line 5: cd in RUN; use WORKDIR",
        "line 5: pip install without --no-cache-dir",
        "line 6: apt-get install without --no-install-recommends",
        "line 6: apt-get install without removing /var/lib/apt/lists",
        "line 7: COPY --from=builder: no such stage",
        "line 9: CMD in shell form; use the exec form [...]",
        "line 8: the last USER is root",
        "the final stage has no HEALTHCHECK",
    ]


def test_the_rules_want_a_user_and_a_cmd() -> None:
    assert lint("FROM python:3.11-slim\nHEALTHCHECK NONE\n") == [
        "the final stage has no CMD",
        "the final stage has no USER: it would run as root",
        "line 2: HEALTHCHECK NONE",
    ]
    assert lint('FROM python:3.11-slim\nCMD ["x"]\nUSER app\nHEALTHCHECK CMD true\n') == [
        "line 3: USER comes after CMD"
    ]


def test_parse_joins_continuations_and_skips_comments() -> None:
    text = "# c\nFROM a:1 \\\n  AS b\n\nRUN x \\\n# inside\n    && y\n"
    assert [(i.line, i.keyword, i.value) for i in parse(text)] == [
        (2, "FROM", "a:1 AS b"),
        (5, "RUN", "x && y"),
    ]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_entry_command_is_the_package_entry_point(name: str) -> None:
    assert final_cmd(DOCKERFILES[name].read_text()) == ENTRY[name]


def test_base_images_and_torch_builds() -> None:
    api = global_args(parse(DOCKERFILES["api"].read_text()))
    worker = global_args(parse(DOCKERFILES["worker"].read_text()))
    assert api["PYTHON_IMAGE"] == worker["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    api_text, worker_text = DOCKERFILES["api"].read_text(), DOCKERFILES["worker"].read_text()
    # Same torch pin as the Makefile; CPU wheels for the API, CUDA wheels for the worker.
    makefile = (ROOT / "Makefile").read_text()
    assert "TORCH_SPEC  ?= torch==2.13.0" in makefile
    assert "ARG TORCH_SPEC=torch==2.13.0" in api_text
    assert "ARG TORCH_SPEC=torch==2.13.0" in worker_text
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu\n" in api_text
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128\n" in worker_text
    assert "ARG STRIPED_UNIFRAC=false" in worker_text


def test_runtime_environment_of_the_images() -> None:
    api = final_env(DOCKERFILES["api"].read_text())
    worker = final_env(DOCKERFILES["worker"].read_text())
    # The API listens on all interfaces in its container, so the keys rule applies to it.
    assert (api["AAM_HOST"], api["AAM_PORT"], api["AAM_DATA_DIR"]) == ("0.0.0.0", "8000", "/data")
    assert worker["AAM_DATA_DIR"] == "/data"
    assert api["PATH"] == worker["PATH"] == "/opt/aam/bin:$PATH"


def test_healthchecks_probe_the_right_thing() -> None:
    api = healthcheck_command(DOCKERFILES["api"].read_text())
    worker = healthcheck_command(DOCKERFILES["worker"].read_text())
    assert api is not None and "/health" in api and "AAM_PORT" in api
    assert worker == (
        'CELERY_BROKER_URL="${AAM_BROKER_URL}" celery inspect ping --destination '
        '"celery@${HOSTNAME}" --timeout 10 > /dev/null || exit 1'
    )


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
