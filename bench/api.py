"""API latency benchmark: prints one JSON object.

Registers a ``default()`` regressor (random weights: latency does not depend on training) and
measures p50/p99 of

- ``POST /predict`` with 1 and with 100 samples (about 150 ASVs of 150 bp each), warm model
  (loaded, and the study's ASVs seen once before);
- ``POST /jobs`` (a pretrain job) followed by ``GET /jobs/{id}``: the pair, and each request
  on its own (``parts``);

each under 1 and 32 concurrent clients: coroutines of one asyncio client (aiohttp: the
lightest on CPU, as the client shares the machine with the server), each sending its next
request when the last one has answered.

Two layouts (``--layout``):

- ``api`` (default): the API as the image runs it (``python -m app`` under uvicorn, loopback,
  SQLite), a Redis broker on a dedicated database number with no worker consuming;
  ``--api-workers`` and ``--predict-concurrency`` set ``AAM_API_WORKERS`` and
  ``AAM_PREDICT_CONCURRENCY``.
- ``serve``: ``make serve`` (``python -m aam_service``): the API and a real CPU worker on one
  SQLite file and the embedded broker. The worker consumes the submitted jobs (1-epoch tiny
  pretraining on a small study) while the measurements run, and for ``--drain`` seconds
  after; the report adds the jobs by state and the failed ones' errors.

Both report the error lines and any "database is locked" in the processes' output (``log``).
Targets: warm single-sample prediction p50 <= 12 ms and 100 samples p50 <= 500 ms at one
client on 2 CPU cores (float32, the default; ``--precision fp64`` measures the exact mode);
job submission (``POST /jobs``) p99 <= 150 ms at 32 clients on SQLite; zero errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import redis
import torch
from _server import (
    HEADERS,
    KEY,
    SMALL_JOB,
    SMALL_STUDY,
    child_running,
    children,
    cpu_seconds,
    log_errors,
    start,
    summary,
)

from aam_core.checkpoint import checkpoint_from_model, save_checkpoint
from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.model import AAMConfig, SequenceRegressor, TargetConfig
from app.api.threads import usable_cores
from app.registration import register_checkpoint
from app.settings import Settings
from app.store import LocalArtifactStore, make_engine, make_session_factory

REDIS_DB = 10  # its own: 11, 13 and 14 are the tests', 12 bench/jobs.py's


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


Call = Callable[[aiohttp.ClientSession, int], Awaitable[dict[str, float] | None]]


def _api_pids(server: int, layout: str) -> list[int]:
    """The API process and its children (the API processes under AAM_API_WORKERS > 1); under
    ``serve``, the ``python -m app`` child of serve (not the worker)."""
    if layout == "serve":
        server = child_running(server, "app") or server
    return [server, *children(server)]


def _measure(
    base: str, call: Call, n: int, concurrency: int, pids: list[int] | None = None
) -> dict[str, Any]:
    """``n`` calls from ``concurrency`` clients (coroutines sharing one connection pool, a
    connection each). A call returns its latencies (ms) by part, the first part being the whole
    call, or None when a response was not the expected one."""
    latencies: dict[str, list[float]] = {}
    errors = 0
    indices = iter(range(n))

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal errors
        for i in indices:  # shared: each client takes the next index
            parts = await call(http, i)
            if parts is None:
                errors += 1
                continue
            for part, value in parts.items():
                latencies.setdefault(part, []).append(value)

    async def run() -> None:
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(
            base, headers=HEADERS, connector=connector, timeout=timeout
        ) as http:
            await asyncio.gather(*(client(http) for _ in range(concurrency)))

    pids = pids or []
    server_before, client_before = cpu_seconds(pids), time.process_time()
    asyncio.run(run())
    server_cpu, client_cpu = cpu_seconds(pids) - server_before, time.process_time() - client_before
    whole, *parts = latencies or {"none": [math.nan]}
    result: dict[str, Any] = {
        "requests": n,
        "concurrency": concurrency,
        **summary(latencies.get(whole, [math.nan])),
        "errors": errors,
        # CPU per call, to see where a loaded machine's time goes (client: this process)
        "client_cpu_ms": round(client_cpu * 1000 / n, 2),
    }
    if pids:
        result["server_cpu_ms"] = round(server_cpu * 1000 / n, 2)
    if parts:
        result["parts"] = {part: summary(latencies[part]) for part in parts}
    return result


def _start(layout: str, settings: Settings, args: argparse.Namespace, log: Path) -> Any:
    """The server process of the layout, its output in ``log``; its URL once it answers."""
    env = {
        "AAM_DATA_DIR": str(settings.data_dir),
        "AAM_API_KEYS": f"bench:{KEY}",
        "AAM_LOG_LEVEL": "WARNING",
        "AAM_API_WORKERS": str(args.api_workers),
        "AAM_PREDICT_CONCURRENCY": str(args.predict_concurrency),
    }
    if layout == "api":
        env["AAM_BROKER_URL"] = f"redis://127.0.0.1:6379/{REDIS_DB}"
        return start("app", env, log)
    env["AAM_DEVICE"] = "cpu"
    return start("aam_service", env, log, ready="/ready", probe_timeout=5)  # the worker too


def _jobs_report(base: str) -> dict[str, Any]:
    """Jobs by state (the /metrics gauges) and the first failed jobs' errors."""
    metrics = httpx.get(f"{base}/metrics", timeout=30).text
    states = {}
    for line in metrics.splitlines():
        if line.startswith('aam_jobs{state="'):
            name, value = line.split(" ")
            states[name.split('"')[1]] = int(float(value))
    failed = httpx.get(f"{base}/jobs", params={"state": "failed", "limit": 3}, headers=HEADERS,
                       timeout=30).json()["items"]  # fmt: skip
    return {"by_state": states, "failed_errors": [job["error"] for job in failed]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement")
    parser.add_argument("--layout", choices=("api", "serve"), default="api",
                        help="api: python -m app with Redis, no worker; serve: make serve "
                        "(API + worker, SQLite, embedded broker)")  # fmt: skip
    parser.add_argument("--parts", default="predict,jobs",
                        help="predict, jobs, or both (comma-separated)")  # fmt: skip
    parser.add_argument("--batch-requests", type=int, default=20,
                        help="requests per 100-sample measurement")  # fmt: skip
    parser.add_argument("--precision", choices=("fp32", "fp64"), default="fp32",
                        help="POST /predict's precision (fp64: the exact mode)")  # fmt: skip
    parser.add_argument("--api-workers", type=int, default=1,
                        help="API processes (AAM_API_WORKERS)")  # fmt: skip
    parser.add_argument("--predict-concurrency", type=int, default=0,
                        help="predictions at once per API process (AAM_PREDICT_CONCURRENCY; "
                        "0: the server's cores)")  # fmt: skip
    parser.add_argument(
        "--drain",
        type=float,
        default=30.0,
        help="serve layout: seconds the worker goes on after the measurements",
    )
    args = parser.parse_args()
    layout = args.layout
    work = Path(tempfile.mkdtemp(prefix="aam-bench-api-"))
    settings = Settings(data_dir=work / "data")
    log = work / "server.log"
    server, base = _start(layout, settings, args, log)
    try:
        model_id = _register_default_model(settings, work)
        study = generate(SyntheticSpec(n_samples=100, n_asvs=3000, asvs_per_sample=150, seed=0))
        table = study.table
        samples = [
            {"id": sample_id, "counts": table.row_counts(row)}
            for row, sample_id in enumerate(table.sample_ids)
        ]
        # jobs: on the big study (nothing consumes them), or on a small one a worker trains on
        files = write_study(study if layout == "api" else generate(SMALL_STUDY), work / "study")
        with open(files["table"], "rb") as t, open(files["tree"], "rb") as tr, \
                open(files["metadata"], "rb") as m:  # fmt: skip
            created = httpx.post(f"{base}/datasets", headers=HEADERS, timeout=300,
                                 files={"table": t, "tree": tr, "metadata": m})  # fmt: skip
        created.raise_for_status()
        dataset_id = created.json()["id"]

        def predict(n: int) -> Call:
            async def call(http: aiohttp.ClientSession, i: int) -> dict[str, float] | None:
                chosen = [samples[(i + k) % len(samples)] for k in range(n)]
                start = time.perf_counter()
                body = {"model_id": model_id, "samples": chosen, "precision": args.precision}
                async with http.post("/predict", json=body) as r:
                    await r.read()
                took = (time.perf_counter() - start) * 1000
                return {"predict": took} if r.status == 200 else None

            return call

        config = {"preset": "tiny", "epochs": 1} if layout == "api" else SMALL_JOB
        job = {"kind": "pretrain", "dataset_id": dataset_id, "config": config}

        async def submit(http: aiohttp.ClientSession, i: int) -> dict[str, float] | None:
            start = time.perf_counter()
            async with http.post("/jobs", json=job) as r:
                created = await r.json()
            posted = time.perf_counter()
            if r.status != 202:
                return None
            async with http.get(f"/jobs/{created['id']}") as read:
                await read.read()
            end = time.perf_counter()
            if read.status != 200:
                return None
            return {"post+get": (end - start) * 1000, "post": (posted - start) * 1000,
                    "get": (end - posted) * 1000}  # fmt: skip

        # warm: the model loaded and the study's ASVs seen once, as for a lab predicting new
        # samples of a study the model has met; several connections, so that every API
        # process is warm
        parts = set(args.parts.split(","))
        if "predict" in parts:
            _measure(base, predict(50), 8 * args.api_workers, 4 * args.api_workers)
        pids = _api_pids(server.pid, layout)
        results: dict[str, Any] = {}
        for concurrency in (1, 32):
            if "predict" in parts:
                results[f"predict_1_c{concurrency}"] = _measure(
                    base, predict(1), args.requests, concurrency, pids
                )
                results[f"predict_100_c{concurrency}"] = _measure(
                    base, predict(100), args.batch_requests, concurrency, pids
                )
            if "jobs" in parts:
                key = f"jobs_submit_get_c{concurrency}"
                results[key] = _measure(base, submit, args.requests, concurrency, pids)
        if layout == "serve" and "jobs" in parts:
            time.sleep(args.drain)
            results["jobs"] = _jobs_report(base)
    finally:
        server.terminate()
        server.wait(timeout=180)
        if layout == "api":  # remove the messages this run queued (no worker consumes them)
            broker = redis.Redis(db=REDIS_DB)
            broker.delete("gpu", *broker.keys("_kombu.binding.*"))
    print(json.dumps({
        "benchmark": "api",
        "layout": layout,
        "machine": {"cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "model": "default() regressor, random weights",
        "api_workers": args.api_workers,
        "predict_concurrency": args.predict_concurrency or usable_cores(),
        "sample_shape": "~150 ASVs x 150 bp",
        "precision": args.precision,
        **results,
        "log": log_errors(log),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
