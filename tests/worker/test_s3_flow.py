"""The whole service on s3:// storage (a real S3 server process: moto's server mode on
loopback), with hosts that share only PostgreSQL, Redis and the bucket: the API and a worker on
one data directory, then a second worker on an empty one of its own (another host) running jobs
whose inputs exist only in the bucket, and a corrupt object failing only the job that needs it.
"""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import httpx
import pytest

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from tests.s3 import BUCKET, CREDENTIALS, moto_server, object_keys
from tests.services import free_port
from tests.worker.helpers import PRETRAIN_FAST, Store, running, wait_for
from tests.worker.test_flow import HEADERS, TERMINAL, full_flow, start_api, submit, wait_job


def cached(data_dir: Path) -> set[str]:
    cache = data_dir / "cache"
    return {p.name for p in cache.iterdir() if p.is_file()} if cache.exists() else set()


def test_full_flow_on_s3_storage_and_a_second_host(
    tmp_path: Path,
    study_files: dict[str, Path],
    redis_url: str,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)  # the processes' environment: boto3's usual chain
    with moto_server() as s3:
        s3.make_bucket()
        url = f"s3://{BUCKET}/aam"
        main_host, gpu_host = tmp_path / "main-host", tmp_path / "gpu-host"
        with Store.open(
            main_host,
            database_url=postgres_url,
            broker_url=redis_url,
            storage_url=url,
            s3_endpoint_url=s3.endpoint,
        ) as store:
            port = free_port()
            api = start_api(store, port, tmp_path / "api.log")
            try:
                with httpx.Client(
                    base_url=f"http://127.0.0.1:{port}", headers=HEADERS, timeout=60
                ) as client:
                    with running("worker", store.env(), tmp_path / "worker.log") as worker:
                        ids = full_flow(client, study_files, tmp_path, epochs=3)
                        assert worker.stop(signal.SIGTERM, timeout=30) == 0
                    on_second_host(client, store, ids, gpu_host, tmp_path)
            finally:
                api.stop(signal.SIGTERM, timeout=30)

        # every blob went to the bucket; no host kept an artifact store of its own
        for host in (main_host, gpu_host):
            assert not (host / "artifacts").exists()
        keys = object_keys(s3)
        assert keys and all(k.startswith("aam/") for k in keys)


def on_second_host(
    client: httpx.Client, store: Store, ids: dict[str, str], gpu_host: Path, tmp_path: Path
) -> None:
    dataset = client.get(f"/datasets/{ids['dataset']}").json()
    model = client.get(f"/models/{ids['model']}").json()
    inputs = {dataset["files"]["table"]["sha256"], model["checkpoint_sha256"]}  # a predict job's

    # a second dataset whose table object is corrupted in the bucket
    other = write_study(
        generate(SyntheticSpec(n_samples=20, n_asvs=30, asvs_per_sample=8, seed=11)),
        tmp_path / "other",
    )
    answer = client.post("/datasets", files={r: (p.name, p.read_bytes()) for r, p in other.items()})
    assert answer.status_code == 201, answer.text
    broken = answer.json()
    table_sha = broken["files"]["table"]["sha256"]
    key = store.storage.key(table_sha)  # type: ignore[attr-defined]
    client_s3 = store.storage.client  # type: ignore[attr-defined]
    client_s3.put_object(Bucket=BUCKET, Key=key, Body=b"not the table")

    gpu_env = store.env(AAM_DATA_DIR=gpu_host)
    with running("worker", gpu_env, tmp_path / "gpu-worker.log"):
        failing = submit(
            client, {"kind": "pretrain", "dataset_id": broken["id"], "config": PRETRAIN_FAST}
        )

        def ended() -> dict[str, object] | None:
            job: dict[str, object] = client.get(f"/jobs/{failing}").json()
            return job if job["state"] in TERMINAL else None

        job = wait_for("the job on the corrupt table to end", ended, 120, every=0.2)
        bad = hashlib.sha256(b"not the table").hexdigest()
        assert job["state"] == "failed" and job["error"] == {
            "type": "CorruptArtifact",
            "detail": f"the table file 'table.biom' of dataset {broken['id']} is corrupt in "
            f"artifact storage: object s3://{BUCKET}/{key} is corrupt: its content has SHA-256 "
            f"{bad}, expected {table_sha}; upload it again",
            "field": None,
        }
        assert table_sha not in cached(gpu_host)  # never served, never kept

        # nothing else is lost: a job on the first dataset runs on this host, its inputs
        # downloaded from the bucket into this host's empty cache and checked on the way
        body = {"kind": "predict", "dataset_id": ids["dataset"], "model_id": ids["model"]}
        predict = wait_job(client, submit(client, body))
        assert predict["report"]["n_samples"] == 48
        assert inputs <= cached(gpu_host)
        for digest in inputs:
            held = (gpu_host / "cache" / digest).read_bytes()
            assert hashlib.sha256(held).hexdigest() == digest
    checkpoint = client.get(f"/models/{ids['model']}/checkpoint")
    assert hashlib.sha256(checkpoint.content).hexdigest() == model["checkpoint_sha256"]
    assert checkpoint.headers["etag"] == f'"{model["checkpoint_sha256"]}"'
