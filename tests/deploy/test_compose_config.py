"""``docker-compose config`` (Debian's docker-compose: it validates without a Docker engine)
accepts the compose files with a generated .env, and refuses them without each secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.compose import (
    COMPOSE,
    MULTIHOST,
    MULTIHOST_ENV,
    OBJECTSTORE,
    OBJECTSTORE_ENV,
    SECRETS,
    WORKER_HOST,
    WORKER_HOST_S3,
    make_env,
    read_env,
    resolved,
    run_compose,
    uncomment_gpu_snippet,
)


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    make_env(path, **MULTIHOST_ENV)
    return path


@pytest.fixture
def s3_env_file(tmp_path: Path) -> Path:
    """A .env for the object-store layout: the main host's address, no shared directory."""
    path = tmp_path / ".env"
    make_env(path, STORE_BIND_ADDRESS="192.0.2.10", MAIN_HOST="192.0.2.10", **OBJECTSTORE_ENV)
    return path


@pytest.mark.parametrize(
    "files",
    [(COMPOSE,), (COMPOSE, MULTIHOST), (WORKER_HOST,)],
    ids=["single-host", "multihost", "worker-host"],
)
def test_config_is_valid(env_file: Path, files: tuple[Path, ...]) -> None:
    result = run_compose(env_file, *files, args=("config", "-q"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    "files", [(COMPOSE, OBJECTSTORE), (WORKER_HOST_S3,)], ids=["objectstore", "worker-host-s3"]
)
def test_objectstore_config_is_valid(s3_env_file: Path, files: tuple[Path, ...]) -> None:
    result = run_compose(s3_env_file, *files, args=("config", "-q"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_resolved_configuration_carries_the_generated_secrets(env_file: Path) -> None:
    env = read_env(env_file)
    services = resolved(env_file)["services"]
    password, redis = env["POSTGRES_PASSWORD"], env["REDIS_PASSWORD"]
    for name in ("migrate", "api", "worker-gpu-0", "worker-cpu"):
        environment = services[name]["environment"]
        assert environment["AAM_DATABASE_URL"] == f"postgresql://aam:{password}@postgres:5432/aam"
        assert environment["AAM_BROKER_URL"] == f"redis://:{redis}@redis:6379/0"
    assert services["api"]["environment"]["AAM_API_KEYS"] == env["AAM_API_KEYS"]
    # Workers and the migration get no API keys: they do not serve HTTP.
    assert "AAM_API_KEYS" not in services["worker-gpu-0"]["environment"]
    assert "AAM_API_KEYS" not in services["migrate"]["environment"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    assert services["redis"]["command"][-2:] == ["--requirepass", redis]
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == env["FLOWER_BASIC_AUTH"]
    assert services["api"]["ports"] == ["0.0.0.0:8000:8000/tcp"]


def test_optional_settings_pass_through_from_env(env_file: Path) -> None:
    unset = resolved(env_file)["services"]["worker-gpu-0"]["environment"]
    assert unset["AAM_MAX_ATTEMPTS"] is None  # not in .env: left unset, the service default
    with env_file.open("a") as handle:
        handle.write("AAM_MAX_ATTEMPTS=5\nAAM_CORS_ORIGINS=https://lab.example.org\n")
    services = resolved(env_file)["services"]
    assert services["worker-gpu-0"]["environment"]["AAM_MAX_ATTEMPTS"] == "5"
    assert services["api"]["environment"]["AAM_CORS_ORIGINS"] == "https://lab.example.org"


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("how", ["missing", "empty"])
def test_refuses_to_start_without_a_secret(env_file: Path, secret: str, how: str) -> None:
    lines = [line for line in env_file.read_text().splitlines() if line.split("=")[0] != secret]
    if how == "empty":
        lines.append(f"{secret}=")
    env_file.write_text("\n".join(lines) + "\n")
    result = run_compose(env_file, COMPOSE, args=("config", "-q"))
    assert result.returncode == 1
    assert f"set {secret} in .env" in result.stderr


def test_multihost_needs_its_addresses(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    make_env(env_file)
    result = run_compose(env_file, COMPOSE, MULTIHOST, args=("config", "-q"))
    assert result.returncode == 1
    assert "set STORE_BIND_ADDRESS in .env to this host's private address" in result.stderr
    with env_file.open("a") as handle:
        handle.write("STORE_BIND_ADDRESS=192.0.2.10\nSHARED_DATA_DIR=/srv/aam-data\n")
    config = resolved(env_file, COMPOSE, MULTIHOST)
    assert config["services"]["postgres"]["ports"] == ["192.0.2.10:5432:5432/tcp"]
    assert config["services"]["redis"]["ports"] == ["192.0.2.10:6379:6379/tcp"]
    assert config["volumes"]["data"]["driver_opts"] == {
        "type": "none",
        "o": "bind",
        "device": "/srv/aam-data",
    }


def test_worker_host_points_at_the_main_host(env_file: Path) -> None:
    env = read_env(env_file)
    worker = resolved(env_file, WORKER_HOST)["services"]["worker-gpu-0"]
    assert worker["environment"]["AAM_DATABASE_URL"] == (
        f"postgresql://aam:{env['POSTGRES_PASSWORD']}@192.0.2.10:5432/aam"
    )
    assert worker["environment"]["AAM_BROKER_URL"] == (
        f"redis://:{env['REDIS_PASSWORD']}@192.0.2.10:6379/0"
    )
    assert worker["volumes"] == ["/srv/aam-data:/data:rw"]


def test_the_documented_gpu_snippet_is_valid(env_file: Path, tmp_path: Path) -> None:
    edited = tmp_path / "docker-compose.yml"
    edited.write_text(uncomment_gpu_snippet(COMPOSE.read_text()))
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "prometheus.yml").write_text("")
    config = resolved(env_file, edited)
    devices = config["services"]["worker-gpu-1"]["deploy"]["resources"]["reservations"]
    assert devices == {
        "devices": [{"capabilities": ["gpu"], "device_ids": ["1"], "driver": "nvidia"}]
    }


# -- several hosts sharing PostgreSQL, Redis and an object store, no filesystem ----------------

S3_SERVICES = ("migrate", "api", "worker-gpu-0", "worker-cpu")


def storage_settings(environment: dict[str, str | None]) -> dict[str, str | None]:
    names = {"AAM_STORAGE_URL", "AAM_S3_ENDPOINT_URL", "AAM_CACHE_BYTES", "AAM_DATA_DIR"}
    return {k: v for k, v in environment.items() if k in names or k.startswith("AWS_")}


def test_objectstore_gives_every_service_the_bucket_and_keeps_the_data_local(
    s3_env_file: Path,
) -> None:
    with s3_env_file.open("a") as handle:
        handle.write(
            "AAM_S3_ENDPOINT_URL=https://s3.lab.example.org\nAAM_CACHE_BYTES=53687091200\n"
            "AWS_DEFAULT_REGION=eu-central-1\nAWS_REQUEST_CHECKSUM_CALCULATION=when_required\n"
        )
    config = resolved(s3_env_file, COMPOSE, OBJECTSTORE)
    services = config["services"]
    expected = {
        "AAM_DATA_DIR": "/data",
        "AAM_STORAGE_URL": "s3://aam-data/lab",
        "AAM_S3_ENDPOINT_URL": "https://s3.lab.example.org",
        "AAM_CACHE_BYTES": "53687091200",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example-secret-key",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": None,  # not in .env: boto3's default
    }
    for name in S3_SERVICES:
        assert storage_settings(services[name]["environment"]) == expected, name
    for name in S3_SERVICES[1:]:
        assert services[name]["volumes"] == ["data:/data:rw"], name
    # The data volume is this host's own (a plain local volume, not the shared directory of
    # docker/multihost.yml); the stores are published on the private address only.
    assert config["volumes"] == {"data": {}, "pgdata": {}, "prometheus": {}, "redisdata": {}}
    assert services["postgres"]["ports"] == ["192.0.2.10:5432:5432/tcp"]
    assert services["redis"]["ports"] == ["192.0.2.10:6379:6379/tcp"]
    assert services["api"]["ports"] == ["0.0.0.0:8000:8000/tcp"]


def test_a_gpu_worker_added_on_the_main_host_gets_the_bucket(
    s3_env_file: Path, tmp_path: Path
) -> None:
    edited = tmp_path / "docker-compose.yml"
    edited.write_text(uncomment_gpu_snippet(COMPOSE.read_text()))
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "prometheus.yml").write_text("")
    services = resolved(s3_env_file, edited, OBJECTSTORE)["services"]
    first, added = services["worker-gpu-0"], services["worker-gpu-1"]
    assert storage_settings(added["environment"]) == storage_settings(first["environment"])
    assert added["environment"]["AWS_SECRET_ACCESS_KEY"] == "example-secret-key"
    assert added["volumes"] == ["data:/data:rw"]


@pytest.mark.parametrize(
    ("files", "variable", "message"),
    [
        ((COMPOSE, OBJECTSTORE), "AAM_STORAGE_URL", "set AAM_STORAGE_URL in .env to s3://"),
        ((COMPOSE, OBJECTSTORE), "AWS_ACCESS_KEY_ID", "set AWS_ACCESS_KEY_ID in .env"),
        ((COMPOSE, OBJECTSTORE), "AWS_SECRET_ACCESS_KEY", "set AWS_SECRET_ACCESS_KEY in .env"),
        ((COMPOSE, OBJECTSTORE), "STORE_BIND_ADDRESS", "set STORE_BIND_ADDRESS in .env"),
        ((WORKER_HOST_S3,), "AAM_STORAGE_URL", "set AAM_STORAGE_URL to the main host's s3://"),
        ((WORKER_HOST_S3,), "AWS_ACCESS_KEY_ID", "set AWS_ACCESS_KEY_ID (the bucket's"),
        ((WORKER_HOST_S3,), "AWS_SECRET_ACCESS_KEY", "set AWS_SECRET_ACCESS_KEY (the bucket's"),
        ((WORKER_HOST_S3,), "MAIN_HOST", "set MAIN_HOST to the main host's private address"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_objectstore_refuses_to_start_without_the_bucket_or_its_credentials(
    s3_env_file: Path, files: tuple[Path, ...], variable: str, message: str
) -> None:
    lines = s3_env_file.read_text().splitlines()
    kept = [line for line in lines if line.split("=")[0] != variable]
    assert len(kept) == len(lines) - 1
    s3_env_file.write_text("\n".join([*kept, f"{variable}="]) + "\n")
    result = run_compose(s3_env_file, *files, args=("config", "-q"))
    assert result.returncode == 1
    assert message in result.stderr


def test_worker_host_s3_points_at_the_main_host_and_the_bucket(s3_env_file: Path) -> None:
    env = read_env(s3_env_file)
    assert "SHARED_DATA_DIR" not in env  # no shared filesystem in this layout
    config = resolved(s3_env_file, WORKER_HOST_S3)
    worker = config["services"]["worker-gpu-0"]
    assert worker["environment"]["AAM_DATABASE_URL"] == (
        f"postgresql://aam:{env['POSTGRES_PASSWORD']}@192.0.2.10:5432/aam"
    )
    assert worker["environment"]["AAM_BROKER_URL"] == (
        f"redis://:{env['REDIS_PASSWORD']}@192.0.2.10:6379/0"
    )
    assert storage_settings(worker["environment"]) == {
        "AAM_DATA_DIR": "/data",
        "AAM_STORAGE_URL": "s3://aam-data/lab",
        "AAM_S3_ENDPOINT_URL": None,
        "AAM_CACHE_BYTES": None,
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example-secret-key",
        "AWS_DEFAULT_REGION": None,
        "AWS_REQUEST_CHECKSUM_CALCULATION": None,
        "AWS_RESPONSE_CHECKSUM_VALIDATION": None,
    }
    # This host's own volume: the workers here share their cache, nothing leaves the host.
    assert worker["volumes"] == ["data:/data:rw"]
    assert config["volumes"] == {"data": {}}
