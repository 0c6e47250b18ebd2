"""Contract fuzzing for longer than ``make test`` allows: prints one JSON object.

Runs ``tests/api/test_contract.py`` (schemathesis on every route of ``/openapi.json``, positive
and negative, against ``python -m app`` on loopback; and JSON predictions of arbitrary counts)
once per seed, with ``--examples`` examples per route and generation mode instead of the suite's
25 (and three times as many prediction requests). Reports, per seed, the tests that passed and
failed, with the failing tests' names; exit status 1 when any failed. Each failure's report
(request, response, a ``curl`` line to reproduce it) is in the pytest output printed to stderr.

    python bench/contract.py --seeds 1 2 3 --examples 200
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = "tests/api/test_contract.py"


def run(seed: int, examples: int) -> dict[str, Any]:
    env = {**os.environ, "AAM_CONTRACT_SEED": str(seed), "AAM_CONTRACT_EXAMPLES": str(examples)}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", TESTS, "-q", "-rf", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode not in (0, 1):  # 2-5: interrupted, internal or usage error
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"pytest exited with {done.returncode} for seed {seed}")
    if done.returncode:
        sys.stderr.write(done.stdout)
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|error)", done.stdout)}
    failures = re.findall(r"^FAILED (\S+)", done.stdout, re.MULTILINE)
    return {
        "seed": seed,
        "passed": counts.get("passed", 0),
        "failed": counts.get("failed", 0) + counts.get("error", 0),
        "failures": failures,
        "seconds": round(time.monotonic() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--examples", type=int, default=200)
    args = parser.parse_args()
    if args.examples < 1:
        parser.error("--examples must be at least 1")
    runs = [run(seed, args.examples) for seed in args.seeds]
    report = {
        "benchmark": "contract",
        "examples_per_route_and_mode": args.examples,
        "runs": runs,
        "failed": sum(r["failed"] for r in runs),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(json.dumps(report, indent=2))
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
