"""What the API benchmarks (bench/api.py, bench/soak.py) share: a service process on a free
loopback port with its output in a log file, its process tree and memory, latency summaries,
and the error lines of the log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from aam_core.data.synthetic import SyntheticSpec

KEY = "bench-key-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {KEY}"}
# Jobs a CPU worker keeps up with: a tiny pretraining of one epoch takes seconds on two cores.
SMALL_STUDY = SyntheticSpec(n_samples=48, n_asvs=60, asvs_per_sample=12, seed=3)
SMALL_JOB = {"preset": "tiny", "epochs": 1, "batch_size": 8, "rarefaction_depth": 1000,
             "token_limit": 32}  # fmt: skip
ERROR_MARKS = ("database is locked", "Traceback", '"level": "ERROR"', '"level": "CRITICAL"',
               "ERROR/", "CRITICAL/")  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {
        "p50_ms": round(float(np.percentile(array, 50)), 2),
        "p99_ms": round(float(np.percentile(array, 99)), 2),
    }


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (Linux /proc), 0 where unreadable."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def child_running(parent: int, module: str) -> int | None:
    """The child of ``parent`` that runs ``python -m module`` (``aam_service`` starts the API
    as ``-m app`` and the worker as ``-m worker``), None when there is none."""
    for child in children(parent):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:3] == [b"-m", module.encode()]:
            return child
    return None


def rss_kib(pid: int) -> int | None:
    """Resident memory (VmRSS) of one process in KiB, None when it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def start(
    module: str, env: dict[str, str], log: Path, ready: str = "/health", probe_timeout: float = 1
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m module`` on a free loopback port, with the ``AAM_*`` variables of ``env``
    only (not the caller's), its output appended to ``log``; the process and its URL once
    ``ready`` answers 200."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AAM_")}
    environment.update({**env, "AAM_PORT": str(port)})
    with log.open("ab") as sink:
        server = subprocess.Popen([sys.executable, "-m", module], env=environment,
                                  stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if server.poll() is not None or time.monotonic() > deadline:
            server.terminate()  # aam_service stops its children on SIGTERM
            server.wait(timeout=60)
            raise SystemExit(f"the server did not start:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}{ready}", timeout=probe_timeout).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return server, base


def log_errors(log: Path) -> dict[str, Any]:
    """Error lines in the processes' output, and how many say "database is locked"."""
    lines = log.read_text(errors="replace").splitlines()
    errors = [line for line in lines if any(mark in line for mark in ERROR_MARKS)]
    return {
        "database_locked": sum("database is locked" in line for line in lines),
        "error_lines": len(errors),
        "first_errors": [line[:300] for line in errors[:5]],
    }
