"""API latency benchmark: prints one JSON object.

Starts the service as the image does (``python -m app`` under uvicorn, loopback, a Redis
broker on a dedicated database number with no worker consuming), registers a ``default()``
regressor (random weights: latency does not depend on training), and measures p50/p99 of

- ``POST /predict`` with 1 and with 100 samples (about 150 ASVs of 150 bp each), warm model
  (loaded, and with ``--vector-cache`` > 0 the study's ASVs seen once before; run with
  ``--vector-cache 0`` for requests whose ASVs are all new to the model);
- ``POST /jobs`` (a pretrain job) followed by ``GET /jobs/{id}``;

each under 1 and 32 concurrent clients. Targets (issue 5): warm single-sample prediction p50
<= 30 ms on CPU; job submission p99 <= 100 ms at 32 clients; zero errors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
import torch

from aam_core.checkpoint import checkpoint_from_model, save_checkpoint
from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.model import AAMConfig, SequenceRegressor, TargetConfig
from app.settings import Settings
from app.store import LocalArtifactStore, make_engine, make_session_factory
from app.store.registry import register_checkpoint

KEY = "bench-key-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {KEY}"}
REDIS_DB = 13


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _register_default_model(settings: Settings, directory: Path) -> str:
    torch.manual_seed(0)
    config = AAMConfig.default().with_target(TargetConfig(task="regression"))
    model = SequenceRegressor(config).eval()
    pre = {"max_bp": 150, "token_limit": 256, "truncate": False, "rarefaction_depth": 2000}
    path = save_checkpoint(
        checkpoint_from_model(model, preprocessing=pre, target={"column": "age",
                                                                 "task": "regression"}),
        directory / "default.pt",
    )  # fmt: skip
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_session_factory(engine)() as session:
            row = register_checkpoint(session, LocalArtifactStore(settings.artifacts_dir), path,
                                      owner="bench", name="default", source="import")  # fmt: skip
            session.commit()
            return row.id
    finally:
        engine.dispose()


def _measure(call: Callable[[int], int], n: int, concurrency: int) -> dict[str, Any]:
    """Latencies (ms) of ``n`` calls from ``concurrency`` threads; ``call`` returns a status."""
    latencies: list[float] = []
    errors = 0

    def timed(i: int) -> None:
        nonlocal errors
        start = time.perf_counter()
        ok = call(i)
        latencies.append((time.perf_counter() - start) * 1000)
        errors += int(not ok)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(timed, range(n)))
    values = np.asarray(latencies)
    return {
        "requests": n,
        "concurrency": concurrency,
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    parser.add_argument("--vector-cache", type=int, default=65_536,
                        help="AAM_PREDICT_VECTOR_CACHE of the server (0: every ASV encoded "
                        "on every request)")  # fmt: skip
    parser.add_argument("--parts", default="predict,jobs",
                        help="predict, jobs, or both (comma-separated)")  # fmt: skip
    parser.add_argument("--batch-requests", type=int, default=20,
                        help="requests per 100-sample measurement")  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aam-bench-api-"))
    settings = Settings(data_dir=work / "data")
    port = _free_port()
    env = {
        **os.environ,
        "AAM_DATA_DIR": str(settings.data_dir),
        "AAM_API_KEYS": f"bench:{KEY}",
        "AAM_PORT": str(port),
        "AAM_BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "AAM_LOG_LEVEL": "WARNING",
        "AAM_PREDICT_VECTOR_CACHE": str(args.vector_cache),
    }
    server = subprocess.Popen([sys.executable, "-m", "app"], env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the API did not start") from None
                time.sleep(0.2)
        model_id = _register_default_model(settings, work)
        study = generate(SyntheticSpec(n_samples=100, n_asvs=3000, asvs_per_sample=150, seed=0))
        files = write_study(study, work / "study")
        table = study.table
        samples = [
            {"id": sample_id, "counts": table.row_counts(row)}
            for row, sample_id in enumerate(table.sample_ids)
        ]
        client = httpx.Client(base_url=base, headers=HEADERS, timeout=300,
                              limits=httpx.Limits(max_connections=64))  # fmt: skip
        with open(files["table"], "rb") as t, open(files["tree"], "rb") as tr, \
                open(files["metadata"], "rb") as m:  # fmt: skip
            created = client.post("/datasets", files={"table": t, "tree": tr, "metadata": m})
        created.raise_for_status()
        dataset_id = created.json()["id"]

        def predict(n: int) -> Callable[[int], int]:
            def call(i: int) -> int:
                chosen = [samples[(i + k) % len(samples)] for k in range(n)]
                r = client.post("/predict", json={"model_id": model_id, "samples": chosen})
                return r.status_code == 200

            return call

        def submit(i: int) -> int:
            r = client.post("/jobs", json={"kind": "pretrain", "dataset_id": dataset_id,
                                           "config": {"preset": "tiny", "epochs": 1}})  # fmt: skip
            if r.status_code != 202:
                return False
            return client.get(f"/jobs/{r.json()['id']}").status_code == 200

        # warm: the model loaded, and (with the vector cache) the study's ASVs seen once, as
        # for a lab predicting new samples of a study the model has met
        if "predict" in args.parts:
            predict(50)(0)
            predict(50)(50)
        results: dict[str, Any] = {}
        parts = set(args.parts.split(","))
        for concurrency in (1, 32):
            if "predict" in parts:
                results[f"predict_1_c{concurrency}"] = _measure(
                    predict(1), args.requests, concurrency
                )
                results[f"predict_100_c{concurrency}"] = _measure(
                    predict(100), args.batch_requests, concurrency
                )
            if "jobs" in parts:
                key = f"jobs_submit_get_c{concurrency}"
                results[key] = _measure(submit, args.requests, concurrency)
        print(json.dumps({
            "benchmark": "api",
            "machine": {"cpu": platform.processor() or platform.machine(),
                        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()},
            "model": "default() regressor, random weights",
            "vector_cache": args.vector_cache,
            "sample_shape": "~150 ASVs x 150 bp",
            **results,
        }, indent=2))  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
        # remove the messages this run queued (no worker consumes this database number)
        broker = redis.Redis(db=REDIS_DB)
        broker.delete("gpu", *broker.keys("_kombu.binding.*"))


if __name__ == "__main__":
    main()
