"""Soak benchmark: the whole service under mixed traffic for minutes; prints one JSON object.

It starts the service as ``make serve`` does (``python -m aam_service``: the API and a real CPU
worker on one SQLite file and the embedded broker, in a temporary data directory, on a free
loopback port, with an API key) and drives it for ``--minutes`` (``--seconds`` for a quick
run) from ``--clients`` concurrent clients: coroutines of one aiohttp session, each sending its
next request as soon as the last one has answered and choosing it with its own generator
seeded from ``--seed``. The mix (bench/soak_traffic.py, ``WEIGHTS``):

- ``predict_1``, ``predict_50``: JSON ``POST /predict`` of 1 and 50 samples of generated
  studies, against a tiny regressor imported with ``POST /models`` at start (tiny so that two
  cores keep up; latency at the default size is bench/api.py's subject);
- ``upload_dataset`` (a generated 24-sample study: BIOM table, tree and metadata) and
  ``delete_dataset`` (one of those uploads);
- ``submit_job`` (a 1-epoch tiny pretrain or train job on a 48-sample study, which the worker
  runs; at most ``--max-active-jobs`` unfinished at once, so that the queue does not grow
  without bound: past that the client reads a job instead), ``read_job``, ``list_jobs``;
- ``events``: ``GET /jobs/{id}/events`` of a job (mostly an unfinished one), read to its first
  event (the latency) and up to a second more, then dropped mid-stream;
- ``bad_*``: deliberate mistakes that must answer their 4xx as problem details
  (``application/problem+json`` carrying that status): a malformed prediction body, invalid
  JSON, an unknown dataset id, an out-of-range job config, the events of an unknown job.

Per kind: count, p50/p99 latency and errors. An error is a 5xx, a connection error or timeout,
or any answer other than the expected one (a mistake answered otherwise included); the
provoked 4xx count as ``expected_4xx``. Memory: the resident set (VmRSS) of the API process
(serve's ``python -m app`` child) and of the worker process (``python -m worker``; the jobs
train in children of it, not counted) at start (set up, no traffic yet), after
``--warmup-seconds`` of traffic and at the end of the traffic, with samples every
``--sample-seconds`` between; ``growth_after_warmup_pct`` = (end - warm) / warm * 100. The
worker then gets up to ``--drain-seconds`` to finish the submitted jobs, reported by state with
the failed ones' errors, followed by the error lines of the service's output.

``--mix`` changes the weights, e.g. to find which kind of request a growth comes with;
environment variables other than ``AAM_*`` reach the service (e.g. ``MALLOC_ARENA_MAX``).

Targets (issue 15): a 10-minute run has no errors besides the provoked 4xx, and the API's RSS
at its end is within 10 % of its level after warm-up (``targets`` in the report). Exits 1
when there were errors, failed jobs, error lines (tracebacks, ERROR records) in the service's
output, or a service process that ended and was started again; the data directory, with the
service's log (``server.log``), is then kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import torch
from _server import HEADERS, KEY, SMALL_STUDY, child_running, log_errors, rss_kib, start
from soak_traffic import TERMINAL, WEIGHTS, Traffic, Upload

from aam_core.checkpoint import checkpoint_from_model, save_checkpoint
from aam_core.data.synthetic import SyntheticSpec, SyntheticStudy, generate, write_study
from aam_core.model import AAMConfig, SequenceRegressor, TargetConfig

# The uploads: small studies unlike the jobs' one, so that deleting the last upload of one
# removes its files (uploads of the same files share them).
UPLOAD_STUDIES = [SyntheticSpec(n_samples=24, n_asvs=40, asvs_per_sample=10, seed=100 + k)
                  for k in range(4)]  # fmt: skip
PROCESSES = {"api": "app", "worker": "worker"}  # aam_service's children


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="traffic duration")
    parser.add_argument("--seconds", type=float, help="traffic duration (instead of --minutes)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clients' choices")
    parser.add_argument("--warmup-seconds", type=float, default=60.0,
                        help="traffic before the reference memory sample")  # fmt: skip
    parser.add_argument("--sample-seconds", type=float, default=30.0,
                        help="interval of the memory samples")  # fmt: skip
    parser.add_argument("--max-active-jobs", type=int, default=2,
                        help="unfinished jobs at most; the CPU worker must keep up")  # fmt: skip
    parser.add_argument("--drain-seconds", type=float, default=60.0,
                        help="time the worker gets to finish the jobs afterwards")  # fmt: skip
    parser.add_argument("--mix", default="",
                        help="weights instead of the default ones, e.g. predict_1=0,events=10 "
                        "(0 leaves a kind out); the kinds: " + ", ".join(WEIGHTS))  # fmt: skip
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the data directory even when all went well")  # fmt: skip
    args = parser.parse_args(argv)
    args.duration = args.seconds if args.seconds is not None else args.minutes * 60
    if not 0 < args.warmup_seconds < args.duration:
        parser.error(f"--warmup-seconds must be in (0, duration={args.duration:g}), "
                     f"got {args.warmup_seconds:g}")  # fmt: skip
    if args.clients < 1 or args.max_active_jobs < 1 or args.sample_seconds <= 0:
        parser.error("--clients and --max-active-jobs must be >= 1, --sample-seconds > 0")
    try:
        args.weights = parse_mix(args.mix)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def parse_mix(text: str) -> dict[str, float]:
    """The default weights with ``kind=weight,...`` overrides."""
    weights = dict(WEIGHTS)
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if kind not in WEIGHTS or not weight >= 0:
            raise ValueError(f"--mix takes kind=weight entries, weight >= 0, of the kinds "
                             f"{', '.join(WEIGHTS)}; got {item!r}")  # fmt: skip
        weights[kind] = weight
    if not any(weights.values()):
        raise ValueError("--mix leaves no kind of request")
    return weights


def tiny_regressor(path: Path) -> Path:
    """A tiny age regressor with random weights: prediction latency and memory do not depend
    on training, and importing it takes a second where training one takes many."""
    torch.manual_seed(0)
    model = SequenceRegressor(AAMConfig.tiny().with_target(TargetConfig(task="regression")))
    pre = {"max_bp": 150, "token_limit": 64, "truncate": False, "rarefaction_depth": 500}
    target = {"column": "age", "task": "regression"}
    checkpoint = checkpoint_from_model(model.eval(), preprocessing=pre, target=target)
    return save_checkpoint(checkpoint, path)


def study_files(study: SyntheticStudy, directory: Path) -> Upload:
    files = write_study(study, directory)
    return [(role, files[role].name, files[role].read_bytes())
            for role in ("table", "tree", "metadata")]  # fmt: skip


def samples_of(studies: list[SyntheticStudy]) -> list[dict[str, Any]]:
    """Every sample of the studies as a JSON prediction entry (IDs made unique across them)."""
    return [{"id": f"{k}-{sample_id}", "counts": study.table.row_counts(row)}
            for k, study in enumerate(studies)
            for row, sample_id in enumerate(study.table.sample_ids)]  # fmt: skip


def set_up(base: str, study: SyntheticStudy, work: Path) -> tuple[str, str]:
    """Import the model and upload the jobs' study: their ids."""
    with httpx.Client(base_url=base, headers=HEADERS, timeout=120) as http:
        with tiny_regressor(work / "tiny.pt").open("rb") as checkpoint:
            model = http.post("/models", files={"checkpoint": checkpoint})
        model.raise_for_status()
        files = {role: (name, content)
                 for role, name, content in study_files(study, work / "jobs-study")}  # fmt: skip
        dataset = http.post("/datasets", files=files, data={"name": "soak jobs"})
        dataset.raise_for_status()
        return model.json()["id"], dataset.json()["id"]


class Memory:
    """VmRSS of the API and worker processes over the run."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: list[dict[str, float | None]] = []
        self.marks: dict[str, dict[str, float | None]] = {}

    def sample(self, t: float, mark: str | None = None) -> None:
        kib = {name: rss_kib(pid) for name, pid in self.pids.items()}
        row = {"t_s": round(t, 1)} | {f"{n}_mib": _mib(v) for n, v in kib.items()}
        self.samples.append(row)
        if mark is not None:
            self.marks[mark] = row

    async def watch(self, t0: float, warmup: float, every: float, until: float) -> None:
        """The warm-up mark and the periodic samples, until cancelled (none in the last second
        before ``until``: the end's sample follows)."""
        next_sample = every
        while True:
            now = time.monotonic() - t0
            if "warm" not in self.marks and now >= warmup:
                self.sample(now, "warm")
            elif next_sample <= now < until - 1:
                self.sample(now)
            while next_sample <= now:
                next_sample += every
            await asyncio.sleep(min(0.5, max(next_sample - now, 0.01)))

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, pid in self.pids.items():
            start, warm, end = (self.marks.get(m, {}).get(f"{name}_mib") for m in
                                ("start", "warm", "end"))  # fmt: skip
            growth = round((end - warm) / warm * 100, 2) if end and warm else None
            out[name] = {"pid": pid, "start_mib": start, "warm_mib": warm, "end_mib": end,
                         "growth_after_warmup_pct": growth}  # fmt: skip
        return out | {"samples": self.samples}


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


async def drive(traffic: Traffic, memory: Memory, args: argparse.Namespace) -> float:
    """The traffic with the memory samples alongside; its duration in seconds."""
    t0 = time.monotonic()
    watch = asyncio.create_task(
        memory.watch(t0, args.warmup_seconds, args.sample_seconds, args.duration)
    )
    deadline = t0 + args.duration
    await asyncio.gather(*(traffic.client(random.Random(args.seed * 1000 + i), deadline)
                           for i in range(args.clients)))  # fmt: skip
    elapsed = time.monotonic() - t0
    memory.sample(elapsed, "end")
    watch.cancel()
    return elapsed


async def run_traffic(
    base: str, args: argparse.Namespace, memory: Memory, **context: Any
) -> tuple[Traffic, float]:
    # a connection per client, and one for a client's dropped event stream being replaced
    connector = aiohttp.TCPConnector(limit=args.clients * 2)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base, headers=HEADERS, connector=connector,
                                     timeout=timeout) as http:  # fmt: skip
        traffic = Traffic(http, max_active_jobs=args.max_active_jobs, weights=args.weights,
                          **context)  # fmt: skip
        return traffic, await drive(traffic, memory, args)


def jobs_report(base: str, jobs: list[str], drain: float) -> dict[str, Any]:
    """The submitted jobs by state once they have ended or ``drain`` seconds have passed, and
    the first failed ones' errors."""
    deadline = time.monotonic() + drain
    states: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as http:
        while True:
            for job_id in jobs:
                if states.get(job_id, {}).get("state") not in TERMINAL:
                    states[job_id] = http.get(f"/jobs/{job_id}").raise_for_status().json()
            unfinished = [j for j, d in states.items() if d["state"] not in TERMINAL]
            if not unfinished or time.monotonic() > deadline:
                break
            time.sleep(1)
    by_state: dict[str, int] = {}
    for document in states.values():
        by_state[document["state"]] = by_state.get(document["state"], 0) + 1
    failed = [{"id": j, "kind": d["kind"], "error": d["error"]}
              for j, d in states.items() if d["state"] == "failed"]  # fmt: skip
    return {"submitted": len(jobs), "by_state": by_state, "failed": len(failed),
            "failed_errors": failed[:5]}  # fmt: skip


def stop(server: subprocess.Popen[bytes], pids: dict[str, int]) -> int:
    """Stop serve as Ctrl-C does; its exit code (its children too when it hangs)."""
    server.terminate()
    try:
        return server.wait(timeout=180)
    except subprocess.TimeoutExpired:
        for pid in [*pids.values(), server.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return server.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="aam-bench-soak-"))
    log = work / "server.log"
    env = {"AAM_DATA_DIR": str(work / "data"), "AAM_API_KEYS": f"bench:{KEY}",
           "AAM_LOG_LEVEL": "WARNING", "AAM_DEVICE": "cpu",
           # a job still running at the end stops at its checkpoint within this
           "AAM_CANCEL_GRACE_SECONDS": "10"}  # fmt: skip
    server, base = start("aam_service", env, log, ready="/ready", probe_timeout=5)
    pids: dict[str, int] = {}
    try:
        for name, module in PROCESSES.items():
            pid = child_running(server.pid, module)
            if pid is None:
                raise SystemExit(f"aam_service has no `python -m {module}` child")
            pids[name] = pid
        jobs_study = generate(SMALL_STUDY)
        model_id, dataset_id = set_up(base, jobs_study, work)
        studies = [generate(spec) for spec in UPLOAD_STUDIES]
        uploads = [study_files(s, work / f"upload-{k}") for k, s in enumerate(studies)]
        memory = Memory(pids)
        memory.sample(0.0, "start")
        traffic, elapsed = asyncio.run(run_traffic(
            base, args, memory, model_id=model_id, dataset_id=dataset_id,
            samples=samples_of([jobs_study, *studies]), uploads=uploads,
        ))  # fmt: skip
        jobs = jobs_report(base, list(traffic.jobs), args.drain_seconds)
        restarted = [n for n, m in PROCESSES.items() if child_running(server.pid, m) != pids[n]]
    finally:
        exit_code = stop(server, pids)
    tally = traffic.tally
    errors = sum(tally.errors.values())
    log_report = log_errors(log)
    ok = (errors == 0 and jobs["failed"] == 0 and not restarted and exit_code == 0
          and log_report["error_lines"] == 0)  # fmt: skip
    requests = sum(tally.counts.values())
    memory_report = memory.report()
    growth = memory_report["api"]["growth_after_warmup_pct"]
    report = {
        "benchmark": "soak",
        "arguments": {k: v for k, v in vars(args).items() if k != "duration"},
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                    "cpu": platform.processor() or platform.machine()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "aiohttp": aiohttp.__version__},
        "duration_s": round(elapsed, 1),
        "requests": requests,
        "requests_per_s": round(requests / elapsed, 1),
        "errors": errors,
        "expected_4xx": tally.expected_4xx,
        "error_examples": tally.error_examples,
        "by_kind": tally.report(),
        "event_streams_dropped": tally.dropped_streams,
        "memory": memory_report,
        "jobs": jobs,
        "service": {"restarted": restarted, "exit_code": exit_code},
        "log": log_report,
        "ok": ok,
        # the acceptance; the exit status follows "ok" alone, as a short run's warm-up
        # sample comes before the caches have filled
        "targets": {"no_errors": errors == 0,
                    "api_rss_within_10pct_of_warm": growth is not None and growth <= 10},
        "data_dir": str(work) if not ok or args.keep_data else None,
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    if ok and not args.keep_data:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
