"""docker-compose.yml read as data: the contract of issue 7 (GPU reservations, healthchecks on
every long-running service, no default secrets, persistent volumes, the package entry points,
a one-shot migration the API and workers wait for, monitoring bound to loopback)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.compose import (
    AWS_VARIABLES,
    COMPOSE,
    OBJECTSTORE,
    ROOT,
    SECRETS,
    WORKER_HOST,
    WORKER_HOST_S3,
    load,
    uncomment_gpu_snippet,
)
from tests.deploy.dockerfile import final_cmd, healthcheck_argv

SERVICES = {
    "postgres",
    "redis",
    "migrate",
    "api",
    "worker-gpu-0",
    "worker-cpu",
    "flower",
    "prometheus",
}
AFTER_MIGRATION = {
    "postgres": {"condition": "service_healthy"},
    "redis": {"condition": "service_healthy"},
    "migrate": {"condition": "service_completed_successfully"},
}
GPU_0 = [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    data: dict[str, Any] = load()["services"]
    return data


def devices(service: dict[str, Any]) -> Any:
    return service["deploy"]["resources"]["reservations"]["devices"]


def test_the_services(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES
    profiles = {name: s.get("profiles") for name, s in services.items() if s.get("profiles")}
    assert profiles == {
        "worker-cpu": ["cpu"],
        "flower": ["monitoring"],
        "prometheus": ["monitoring"],
    }


def test_gpu_worker_reserves_one_explicit_nvidia_device(services: dict[str, Any]) -> None:
    worker = services["worker-gpu-0"]
    assert devices(worker) == GPU_0
    assert worker["environment"]["AAM_DEVICE"] == "cuda:0"
    assert "deploy" not in services["worker-cpu"]
    assert services["worker-cpu"]["environment"]["AAM_DEVICE"] == "cpu"


def test_the_documented_snippet_adds_a_worker_for_gpu_1(services: dict[str, Any]) -> None:
    edited = yaml.safe_load(uncomment_gpu_snippet(COMPOSE.read_text()))["services"]
    assert set(edited) == SERVICES | {"worker-gpu-1"}
    gpu1 = edited["worker-gpu-1"]
    assert devices(gpu1) == [{"driver": "nvidia", "device_ids": ["1"], "capabilities": ["gpu"]}]
    # Everything else is the GPU 0 worker's (inside its container the one GPU is cuda:0).
    assert {k: v for k, v in gpu1.items() if k != "deploy"} == {
        k: v for k, v in services["worker-gpu-0"].items() if k != "deploy"
    }


def _dockerfile(service: dict[str, Any]) -> str | None:
    build = service.get("build")
    return (ROOT / build["dockerfile"]).read_text() if build else None


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if service.get("restart") == "no":
            continue
        assert service.get("restart") == "unless-stopped", name
        check = service.get("healthcheck")
        if check is not None:
            assert check["test"][0] in ("CMD", "CMD-SHELL"), name
            assert not check.get("disable", False), name
            continue
        dockerfile = _dockerfile(service)
        assert dockerfile is not None, f"{name}: no healthcheck in compose and no Dockerfile"
        assert healthcheck_argv(dockerfile) is not None, f"{name}: no HEALTHCHECK"
    # The one service that stops is the migration.
    assert [n for n, s in services.items() if s.get("restart") == "no"] == ["migrate"]


def test_healthchecks_of_the_stores(services: dict[str, Any]) -> None:
    assert services["postgres"]["healthcheck"]["test"] == [
        "CMD", "pg_isready", "--quiet", "--host=127.0.0.1", "--username=aam", "--dbname=aam",
    ]  # fmt: skip
    assert services["redis"]["healthcheck"]["test"] == [
        "CMD-SHELL",
        "redis-cli ping | grep -q PONG",
    ]
    # redis-cli reads the password from REDISCLI_AUTH, the same secret as --requirepass.
    assert services["redis"]["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD:?")


def test_entry_commands_are_the_package_entry_points(services: dict[str, Any]) -> None:
    api_cmd = final_cmd((ROOT / "docker/api.Dockerfile").read_text())
    worker_cmd = final_cmd((ROOT / "docker/worker.Dockerfile").read_text())
    assert services["api"]["command"] == api_cmd == ["python", "-m", "app"]
    for name in ("worker-gpu-0", "worker-cpu"):
        assert services[name]["command"] == worker_cmd == ["python", "-m", "worker"]
    assert services["migrate"]["command"] == ["python", "-m", "app.migrate"]
    assert services["api"]["build"]["dockerfile"] == "docker/api.Dockerfile"
    assert services["migrate"]["image"] == services["api"]["image"]
    assert services["worker-gpu-0"]["build"]["dockerfile"] == "docker/worker.Dockerfile"
    for module in ("app/__main__.py", "app/migrate.py"):
        assert (ROOT / module).is_file()


def test_api_and_workers_start_after_a_completed_migration(services: dict[str, Any]) -> None:
    for name in ("api", "worker-gpu-0", "worker-cpu"):
        assert services[name]["depends_on"] == AFTER_MIGRATION, name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"


def test_volumes_persist_the_stores_and_the_data(services: dict[str, Any]) -> None:
    assert set(load()["volumes"]) == {"pgdata", "redisdata", "data", "prometheus"}
    assert services["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert services["redis"]["volumes"] == ["redisdata:/data"]
    command = services["redis"]["command"]
    assert command[:5] == ["redis-server", "--appendonly", "yes", "--appendfsync", "everysec"]
    for name in ("api", "worker-gpu-0", "worker-cpu"):
        assert services[name]["volumes"] == ["data:/data"], name
        assert services[name]["environment"]["AAM_DATA_DIR"] == "/data", name


def _references(text: str, name: str) -> list[str]:
    return re.findall(r"\$\{" + name + r"(?:[:?\-+][^}]*)?\}|\$" + name + r"\b", text)


@pytest.mark.parametrize(
    ("path", "min_urls"),
    [(COMPOSE, 2), (WORKER_HOST, 2), (OBJECTSTORE, 0), (WORKER_HOST_S3, 2)],
    ids=lambda value: value.name if isinstance(value, Path) else str(value),
)
def test_no_secret_has_a_default(path: Path, min_urls: int) -> None:
    text = path.read_text()
    for name in SECRETS:
        for reference in _references(text, name):
            assert reference.startswith("${" + name + ":?"), reference
    required = r"\$\{\w+:\?[^}]+\}"
    urls = 0
    for service in load(path)["services"].values():
        for key, value in (service.get("environment") or {}).items():
            # Every credential in a URL is a required variable, never a literal.
            url = re.fullmatch(r"[a-z+]+://[^:/@]*:(.*)@[^@]+", str(value))
            if url:
                urls += 1
                assert re.fullmatch(required, url[1]), key
            # Every secret-looking variable is required too. The one exception: the object
            # store's optional credentials, which docker-compose.yml passes through from .env
            # without a value (unset when .env has none: no default, no literal); the files of
            # the object-store layout require them.
            if re.search(r"PASSWORD|SECRET|TOKEN|API_KEYS|AUTH", key):
                if path == COMPOSE and key in AWS_VARIABLES:
                    assert value is None, key
                else:
                    assert re.fullmatch(required, str(value)), key
    assert urls >= min_urls


def test_required_secrets_are_all_referenced() -> None:
    text = COMPOSE.read_text()
    assert {name for name in SECRETS if _references(text, name)} == set(SECRETS)


def test_published_ports(services: dict[str, Any]) -> None:
    assert services["api"]["ports"] == ["${API_BIND_ADDRESS:-0.0.0.0}:${API_PORT:-8000}:8000"]
    # Monitoring answers on this host only; the stores are not published at all.
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"api", "flower", "prometheus"}


def test_monitoring(services: dict[str, Any]) -> None:
    flower = services["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert (
        "./docker/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in (services["prometheus"]["volumes"])
    )
    config = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert (job["metrics_path"], job["static_configs"]) == (
        "/metrics",
        [{"targets": ["api:8000"]}],
    )


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag != "latest" and re.search(r"\d", tag), (name, image)


def test_worker_host_file_matches_the_main_workers(services: dict[str, Any]) -> None:
    other = load(WORKER_HOST)["services"]
    assert set(other) == {"worker-gpu-0"}
    worker = other["worker-gpu-0"]
    assert worker["command"] == services["worker-gpu-0"]["command"]
    assert devices(worker) == GPU_0
    assert worker["environment"]["AAM_DEVICE"] == "cuda:0"
    assert worker["build"] == {"context": "..", "dockerfile": "docker/worker.Dockerfile"}
    assert worker["image"] == services["worker-gpu-0"]["image"]


def test_objectstore_covers_every_service_that_reads_artifacts(services: dict[str, Any]) -> None:
    override = load(OBJECTSTORE)["services"]
    readers = {name for name, s in services.items() if s.get("volumes") == ["data:/data"]}
    assert readers == {"api", "worker-gpu-0", "worker-cpu"}
    assert set(override) == readers | {"postgres", "redis"}
    required = {
        "AAM_STORAGE_URL": "${AAM_STORAGE_URL:?",
        "AWS_ACCESS_KEY_ID": "${AWS_ACCESS_KEY_ID:?",
        "AWS_SECRET_ACCESS_KEY": "${AWS_SECRET_ACCESS_KEY:?",
    }
    for name in readers:
        environment = override[name]["environment"]
        assert {k: v[: len(required[k])] for k, v in environment.items()} == required, name
        # Nothing else changes: in particular no volume, so the data volume stays local.
        assert set(override[name]) == {"environment"}, name
    # Every service built on the shared environment passes the object store's settings through.
    for name in ("migrate", "api", "worker-gpu-0", "worker-cpu"):
        environment = services[name]["environment"]
        for key in ("AAM_STORAGE_URL", "AAM_S3_ENDPOINT_URL", "AAM_CACHE_BYTES", *AWS_VARIABLES):
            assert environment[key] is None, (name, key)


def test_worker_host_s3_file_matches_the_other_worker_host_file() -> None:
    nfs = load(WORKER_HOST)["services"]["worker-gpu-0"]
    s3 = load(WORKER_HOST_S3)["services"]
    assert set(s3) == {"worker-gpu-0"}
    worker = s3["worker-gpu-0"]
    same = ("image", "build", "command", "deploy", "shm_size", "stop_grace_period", "restart")
    assert {k: worker[k] for k in same} == {k: nfs[k] for k in same}
    storage = {"AAM_STORAGE_URL", "AAM_S3_ENDPOINT_URL", "AAM_CACHE_BYTES", *AWS_VARIABLES}
    assert set(worker["environment"]) == set(nfs["environment"]) | storage
    common = set(nfs["environment"])
    assert {k: worker["environment"][k] for k in common} == nfs["environment"]
    # A named volume of this host instead of the shared directory.
    assert worker["volumes"] == ["data:/data"]
    assert load(WORKER_HOST_S3)["volumes"] == {"data": None}
