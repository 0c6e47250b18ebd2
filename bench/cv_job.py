"""A cross_validate job through the whole service, as ``make serve`` runs it, on a study
folder of the data pack; prints one JSON object.

    python bench/cv_job.py DATASET_DIR --target COL --task regression|classification \
        [--group COL] [--folds 5] [--kill-at-fold K] [--compare]

Starts ``python -m aam_service`` (SQLite, local files, the embedded broker, one worker) on a
fresh data directory, uploads the study, submits the job with the default recipe, and waits.
``--kill-at-fold K`` sends SIGKILL to the worker and its job's process once fold K has begun:
``aam_service`` starts a new worker, the reaper requeues the job, and the new attempt must
keep the folds already finished (their files are compared before and after). ``--compare``
then runs the same cross-validation with ``bench/quality.py``'s engine in this process (same
models, seed, folds and one fold at a time) and reports the largest difference of any fold's
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _server import HEADERS, KEY, child_running, children, start

from aam_core.crossval.study import FILES

MODELS = ["aam", "forest", "linear", "constant", "depth"]


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for child in children(pid):
        found += _descendants(child)
    return found


def _fold_files(run_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((run_dir / "folds").glob("*.json"))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--target", required=True)
    parser.add_argument("--task", required=True, choices=("regression", "classification"))
    parser.add_argument("--group")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--kill-at-fold", type=int)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="cv-job-"))
    env = {"AAM_DATA_DIR": str(data_dir), "AAM_API_KEYS": f"bench:{KEY}", "AAM_DEVICE": "cpu"}
    server, base = start("aam_service", env, data_dir / "serve.log", ready="/health")
    out: dict[str, Any] = {"dataset": args.dataset.name, "target": args.target}
    try:
        with httpx.Client(base_url=base, headers=HEADERS, timeout=120) as client:
            files = {
                role: (name, (args.dataset / name).read_bytes())
                for role, name in FILES.items()
                if (args.dataset / name).is_file()
            }
            answer = client.post("/datasets", files=files, data={"name": args.dataset.name})
            answer.raise_for_status()
            body = {
                "kind": "cross_validate", "dataset_id": answer.json()["id"],
                "target": {"column": args.target, "task": args.task},
                "cv": {"folds": args.folds, "group_column": args.group, "models": MODELS},
            }  # fmt: skip
            answer = client.post("/jobs", json=body)
            answer.raise_for_status()
            job_id = answer.json()["id"]
            started = time.monotonic()
            run_dir = data_dir / "runs" / job_id
            killed_at: dict[str, Any] | None = None
            while True:
                job = client.get(f"/jobs/{job_id}").json()
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    break
                fold = job["progress"].get("fold") or 0
                if args.kill_at_fold and killed_at is None and fold >= args.kill_at_fold:
                    worker = child_running(server.pid, "worker")
                    assert worker is not None, "aam_service runs no worker"
                    before = _fold_files(run_dir)
                    for pid in _descendants(worker):
                        os.kill(pid, signal.SIGKILL)
                    killed_at = {"fold": fold, "seconds": time.monotonic() - started,
                                 "finished_folds": before}  # fmt: skip
                if time.monotonic() - started > args.timeout:
                    raise SystemExit(f"job {job_id} still {job['state']} after {args.timeout} s")
                time.sleep(1.0)
            out["state"], out["attempts"] = job["state"], job["attempts"]
            out["seconds"] = time.monotonic() - started
            if job["state"] != "succeeded":
                out["error"] = job["error"]
                return out
            report = job["report"]["cross_validation"]
            out["estimate_seconds"] = report["estimate"]["seconds"]
            out["folds_reused"] = report["folds_reused"]
            out["n_samples"], out["n_groups"] = report["n_samples"], report["n_groups"]
            metric = report["primary_metric"]
            out["primary_metric"] = metric
            out["models"] = {
                m: {"per_sample": e["per_sample"][metric],
                    "subject_weighted": e["subject_weighted"][metric]}
                for m, e in report["models"].items()
            }  # fmt: skip
            out["differences"] = {
                k: {x: d[x] for x in ("mean", "low", "high", "better")}
                for k, d in report["differences"].items()
            }
            out["confound"] = report["confounds"].get("depth")
            if killed_at is not None:
                after = _fold_files(run_dir)
                killed_at["kept_untouched"] = all(
                    after.get(name) == mtime for name, mtime in killed_at["finished_folds"].items()
                )
                killed_at["finished_folds"] = sorted(killed_at["finished_folds"])
                out["killed"] = killed_at
            logs = client.get(f"/jobs/{job_id}/logs", params={"limit": 5000}).json()["lines"]
            out["log_reuse"] = [x["message"] for x in logs if "earlier run" in x["message"]]
            if args.compare:
                out["compare"] = compare(args, report, data_dir / "compare")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    return out


def compare(args: argparse.Namespace, report: dict[str, Any], out: Path) -> dict[str, Any]:
    """bench/quality.py's engine on the same study, models, seed and folds, one fold at a
    time; the largest difference of any fold's figures from the job's."""
    import quality

    argv = [str(args.dataset), "--target", args.target, "--task", args.task,
            "--seeds", "1", "--folds", str(args.folds), "--models", ",".join(MODELS),
            "--jobs", "1", "--out", str(out)]  # fmt: skip
    if args.group:
        argv += ["--group", args.group]
    bench = quality.main(argv)
    worst = 0.0
    for model, entry in report["models"].items():
        for job_fold, bench_fold in zip(
            entry["per_fold"], bench["results"][model]["folds"], strict=True
        ):
            for metric, value in bench_fold["per_sample"].items():
                if value is not None and job_fold.get(metric) is not None:
                    worst = max(worst, abs(job_fold[metric] - value))
    return {
        "max_abs_fold_difference": worst,
        "bench_means": {m: r["mean"]["per_sample"] for m, r in bench["results"].items()},
        "bench_seconds": bench["seconds"],
    }


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(json.dumps(main(), indent=2))
