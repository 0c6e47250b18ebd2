""".env.example lists every service setting (app/settings.py) with its true default, compose
forwards every tunable it lists, and scripts/make_env.sh fills in usable secrets."""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from app.settings import Settings
from tests.deploy.compose import (
    AWS_VARIABLES,
    ENV_EXAMPLE,
    OBJECTSTORE,
    ROOT,
    SECRETS,
    WORKER_HOST,
    WORKER_HOST_S3,
    load,
    make_env,
)

# Settings that compose gives each container itself (not read from .env).
SET_BY_COMPOSE = {
    "AAM_DATABASE_URL",
    "AAM_BROKER_URL",
    "AAM_DATA_DIR",
    "AAM_HOST",
    "AAM_PORT",
    "AAM_DEVICE",
    "AAM_KEYS_FILE",
}
API_ONLY = {"AAM_CORS_ORIGINS", "AAM_API_WORKERS"}
UNSET_BY_DEFAULT = {"storage_url", "s3_endpoint_url"}  # listed empty: None, not ""


def example_settings() -> dict[str, tuple[str, bool]]:
    """AAM_* names in .env.example -> (value, commented out)."""
    found: dict[str, tuple[str, bool]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"(# )?(AAM_[A-Z0-9_]+)=(.*)", line)
        if match:
            assert match[2] not in found, f"{match[2]} is listed twice"
            found[match[2]] = (match[3], bool(match[1]))
    return found


def env_name(field: str) -> str:
    return f"AAM_{field.upper()}"


def test_every_setting_is_listed_and_nothing_else() -> None:
    assert set(example_settings()) == {env_name(f) for f in Settings.model_fields}


def test_tunables_show_their_true_defaults() -> None:
    listed = example_settings()
    tunables = {env_name(f) for f in Settings.model_fields} - SET_BY_COMPOSE
    assert tunables - {"AAM_API_KEYS"} == {
        "AAM_CORS_ORIGINS", "AAM_UPLOAD_LIMIT_BYTES", "AAM_SYNC_PREDICT_LIMIT",
        "AAM_MODEL_CACHE_BYTES", "AAM_PREDICT_DEVICE", "AAM_PREDICT_CONCURRENCY",
        "AAM_API_WORKERS", "AAM_HEARTBEAT_TIMEOUT_SECONDS", "AAM_MAX_ATTEMPTS",
        "AAM_CANCEL_GRACE_SECONDS", "AAM_WORKER_QUEUES", "AAM_LOG_LEVEL",
        "AAM_STORAGE_URL", "AAM_S3_ENDPOINT_URL", "AAM_CACHE_BYTES",
    }  # fmt: skip
    for field, info in Settings.model_fields.items():
        name = env_name(field)
        if name in SET_BY_COMPOSE or name == "AAM_API_KEYS":
            continue
        value, commented = listed[name]
        assert commented, f"{name} should stay commented (the default applies)"
        default = info.get_default(call_default_factory=True)
        if field == "cors_origins":
            assert (value, default) == ("", [])
            continue
        if field in UNSET_BY_DEFAULT:
            assert (value, default) == ("", None), name
            continue
        assert info.annotation is not None
        parsed: Any = TypeAdapter(info.annotation).validate_python(value)
        assert parsed == default, name
    assert Settings.model_fields["upload_limit_bytes"].default == 2147483648


def test_secrets_are_empty_in_the_example() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for name in SECRETS:
        assert f"{name}=" in lines, name
    assert example_settings()["AAM_API_KEYS"] == ("", False)


def test_compose_forwards_every_tunable() -> None:
    tunables = {n for n, (_, commented) in example_settings().items() if commented}
    tunables -= SET_BY_COMPOSE
    services = load()["services"]
    for name in ("migrate", "api", "worker-gpu-0", "worker-cpu"):
        environment = services[name]["environment"]
        wanted = tunables if name == "api" else tunables - API_ONLY
        # A key without a value passes the variable through from .env, or leaves it unset.
        assert {k for k, v in environment.items() if v is None} == wanted | AWS_VARIABLES, name
        assert set(environment) - AWS_VARIABLES <= {env_name(f) for f in Settings.model_fields}
    worker_tunables = {
        "AAM_HEARTBEAT_TIMEOUT_SECONDS", "AAM_MAX_ATTEMPTS", "AAM_CANCEL_GRACE_SECONDS",
        "AAM_WORKER_QUEUES", "AAM_LOG_LEVEL",
    }  # fmt: skip
    worker_host = load(WORKER_HOST)["services"]["worker-gpu-0"]["environment"]
    assert {k for k, v in worker_host.items() if v is None} == worker_tunables
    # The object-store layout requires the URL and the credentials, passes the rest through.
    worker_host_s3 = load(WORKER_HOST_S3)["services"]["worker-gpu-0"]["environment"]
    assert {k for k, v in worker_host_s3.items() if v is None} == worker_tunables | {
        "AAM_S3_ENDPOINT_URL", "AAM_CACHE_BYTES", "AWS_DEFAULT_REGION",
        "AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION",
    }  # fmt: skip


def test_the_object_stores_variables_are_documented() -> None:
    """Every AWS_* variable the compose files read is a commented line of .env.example."""
    listed = re.findall(r"^# (AWS_[A-Z_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert dict(listed) == {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_DEFAULT_REGION": "",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_supported",  # botocore's default
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_supported",
    }
    used = set()
    for path in (ROOT / "docker-compose.yml", OBJECTSTORE, WORKER_HOST_S3):
        used |= set(re.findall(r"\b(AWS_[A-Z_]+)\b", path.read_text()))
    assert used == set(dict(listed)) == AWS_VARIABLES


def test_make_env_writes_fresh_secrets(tmp_path: Path) -> None:
    first = make_env(tmp_path / "a.env")
    second = make_env(tmp_path / "b.env")
    assert stat.S_IMODE((tmp_path / "a.env").stat().st_mode) == 0o600
    assert re.fullmatch(r"[0-9a-f]{48}", first["POSTGRES_PASSWORD"])
    assert re.fullmatch(r"[0-9a-f]{48}", first["REDIS_PASSWORD"])
    assert re.fullmatch(r"admin:[0-9a-f]{32}", first["FLOWER_BASIC_AUTH"])
    for name in SECRETS:
        assert first[name] != second[name], name
    # The generated key is one admin key the service accepts.
    settings = Settings.model_validate({"api_keys": first["AAM_API_KEYS"]})
    (key,) = settings.api_keys
    assert (key.owner, key.admin, len(key.key.get_secret_value())) == ("admin", True, 48)
    # Everything but the secrets is the example, line for line.
    example = ENV_EXAMPLE.read_text().splitlines()
    written = (tmp_path / "a.env").read_text().splitlines()
    assert len(written) == len(example)
    assert [w for w, e in zip(written, example, strict=True) if w != e] == [
        f"{name}={first[name]}" for name in SECRETS
    ]


def test_make_env_never_replaces_a_file(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("POSTGRES_PASSWORD=kept\n")
    result = subprocess.run(
        [str(ROOT / "scripts" / "make_env.sh"), str(target)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"make_env: {target} exists; not replacing it (delete it first to start over)\n"
    )
    assert target.read_text() == "POSTGRES_PASSWORD=kept\n"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("name", ["compose_check.sh", "make_env.sh"])
def test_scripts_are_executable(name: str) -> None:
    assert (ROOT / "scripts" / name).stat().st_mode & stat.S_IXUSR
