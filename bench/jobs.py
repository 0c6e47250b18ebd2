"""Job service benchmark: prints one JSON object.

For each broker (Redis, and the embedded broker ``make serve`` uses), with SQLite and local
files, this starts the real API (``python -m app``) and a real worker (``python -m worker``)
on loopback and measures, through HTTP:

- queue latency: from sending ``POST /jobs`` to the job's ``started_at`` (the worker claimed
  it and set it ``running``), for predict jobs submitted one at a time to an idle worker;
- the demo flow end to end: upload the study of ``aam demo`` (160 samples, 150 ASVs),
  pretrain an encoder, train an age regressor from it, run a predict job over the whole
  dataset and download the predictions.

Target (issue 6): queue latency p50 <= 1 s on both brokers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.demo import (
    DEMO_ASVS,
    DEMO_ASVS_PER_SAMPLE,
    DEMO_PRETRAIN_EPOCHS,
    DEMO_RUN,
    DEMO_TRAIN_EPOCHS,
)

TERMINAL = ("succeeded", "failed", "cancelled")
# The demo's settings as a job config (the same keys: one schema).
DEMO_CONFIG = dict(DEMO_RUN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait(what: str, check: Any, timeout: float, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


class Service:
    """The API and one worker on a fresh data directory."""

    def __init__(self, data_dir: Path, broker_url: str | None, device: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AAM_")}
        env.update(AAM_DATA_DIR=str(data_dir), AAM_PORT=str(self.port), AAM_DEVICE=device,
                   AAM_LOG_LEVEL="WARNING")  # fmt: skip
        if broker_url:
            env["AAM_BROKER_URL"] = broker_url
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", module],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=(data_dir / f"{module}.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
            for module in ("app", "worker")
        ]
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)

    def ready(self) -> None:
        def workers_ok() -> bool:
            if any(p.poll() is not None for p in self.processes):
                raise RuntimeError("the API or the worker exited; see the logs in the data dir")
            try:
                return bool(self.client.get("/ready").json()["workers"]["ok"])
            except (httpx.HTTPError, ValueError, KeyError):
                return False

        wait("the API and a worker", workers_ok, timeout=120, every=0.2)

    def close(self) -> None:
        self.client.close()
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()

    def submit(self, body: dict[str, Any]) -> tuple[str, float]:
        sent = time.time()
        answer = self.client.post("/jobs", json=body)
        answer.raise_for_status()
        return answer.json()["id"], sent

    def finish(self, job_id: str, timeout: float = 600) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job: dict[str, Any] = self.client.get(f"/jobs/{job_id}").json()
            return job if job["state"] in TERMINAL else None

        job: dict[str, Any] = wait(f"job {job_id}", done, timeout)
        if job["state"] != "succeeded":
            raise RuntimeError(f"job {job_id} ended {job['state']}: {job['error']}")
        return job


def demo_flow(service: Service, files: dict[str, Path]) -> dict[str, Any]:
    started = time.perf_counter()
    upload = {role: (path.name, path.read_bytes()) for role, path in files.items()}
    answer = service.client.post("/datasets", files=upload, data={"name": "demo"})
    answer.raise_for_status()
    dataset = answer.json()["id"]
    pretrain = service.finish(service.submit({
        "kind": "pretrain", "dataset_id": dataset,
        "config": {**DEMO_CONFIG, "epochs": DEMO_PRETRAIN_EPOCHS}})[0])  # fmt: skip
    train = service.finish(service.submit({
        "kind": "train", "dataset_id": dataset, "target": {"column": "age", "task": "regression"},
        "base_model_id": pretrain["model_id"],
        "config": {**DEMO_CONFIG, "epochs": DEMO_TRAIN_EPOCHS}})[0])  # fmt: skip
    predict = service.finish(service.submit({
        "kind": "predict", "dataset_id": dataset, "model_id": train["model_id"]})[0])  # fmt: skip
    rows = service.client.get(f"/jobs/{predict['id']}/predictions").text.strip().splitlines()
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "jobs_seconds": {
            name: round(_seconds(job["started_at"], job["finished_at"]), 2)
            for name, job in (("pretrain", pretrain), ("train", train), ("predict", predict))
        },
        "validation_mae": train["metrics"]["validation"].get("mae"),
        "baseline_mae": train["metrics"]["baseline"].get("mae"),
        "predicted_samples": len(rows) - 1,
        "dataset_id": dataset,
        "model_id": train["model_id"],
    }


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def queue_latency(service: Service, dataset: str, model_id: str, jobs: int) -> dict[str, Any]:
    latencies = []
    for _ in range(jobs):
        job_id, sent = service.submit({"kind": "predict", "dataset_id": dataset,
                                       "model_id": model_id})  # fmt: skip
        job = service.finish(job_id)
        latencies.append(datetime.fromisoformat(job["started_at"]).timestamp() - sent)
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "p50_s": round(statistics.median(ordered), 3),
        "p90_s": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
        "max_s": round(ordered[-1], 3),
        "all_s": [round(x, 3) for x in latencies],
    }


def run_broker(broker: str, redis_url: str, jobs: int, device: str, study: dict[str, Path]) -> Any:
    with tempfile.TemporaryDirectory(prefix=f"aam-bench-{broker}-") as tmp:
        service = Service(Path(tmp), redis_url if broker == "redis" else None, device)
        try:
            started = time.perf_counter()
            service.ready()
            startup = time.perf_counter() - started
            flow = demo_flow(service, study)
            latency = queue_latency(service, flow["dataset_id"], flow["model_id"], jobs)
        finally:
            service.close()
    return {"startup_s": round(startup, 2), "queue_latency": latency, "demo_flow": flow}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="redis,embedded")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--jobs", type=int, default=7, help="predict jobs timed per broker")
    parser.add_argument("--samples", type=int, default=160)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aam-bench-study-") as tmp:
        spec = SyntheticSpec(n_samples=args.samples, n_asvs=DEMO_ASVS,
                             asvs_per_sample=DEMO_ASVS_PER_SAMPLE, seed=0)  # fmt: skip
        study = write_study(generate(spec), Path(tmp))
        results = {
            broker: run_broker(broker, args.redis_url, args.jobs, args.device, study)
            for broker in args.brokers.split(",")
        }
    print(json.dumps({
        "benchmark": "jobs",
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                 "machine": platform.machine()},
        "device": args.device,
        "target": "queue latency p50 <= 1 s on both brokers",
        "met": all(r["queue_latency"]["p50_s"] <= 1.0 for r in results.values()),
        "brokers": results,
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
