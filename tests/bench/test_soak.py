"""bench/soak.py end to end for 20 seconds: the real service (``python -m aam_service``: the
API and a CPU worker on SQLite and the embedded broker) under every kind of request, with no
error, every deliberate mistake answered as problem details, and the memory figures read."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    """A bench/ script by path (bench/ is not a package), registered under its own name so that
    the next one's ``from _server import ...`` finds it."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


soak = [load(name) for name in ("_server", "soak_traffic", "soak")][-1]

KINDS = {
    "predict_1", "predict_50", "upload_dataset", "delete_dataset", "submit_job", "read_job",
    "list_jobs", "events",
}  # fmt: skip
MISTAKES = {"bad_predict_body", "bad_json", "bad_dataset_id", "bad_job_config", "bad_job_events"}
ARGS = ["--seconds", "20", "--warmup-seconds", "5", "--clients", "4", "--seed", "1",
        "--drain-seconds", "30"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_short_soak_has_no_errors_and_reads_memory(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), *ARGS], cwd=tmp_path,
                         capture_output=True, text=True, timeout=170)  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = json.loads(run.stdout)

    assert report["errors"] == 0 and report["error_examples"] == []
    assert report["targets"]["no_errors"] is True
    assert report["ok"] is True and report["data_dir"] is None  # cleaned up after a good run
    by_kind = report["by_kind"]
    assert set(by_kind) == KINDS | MISTAKES
    assert all(entry["count"] >= 1 and entry["errors"] == 0 for entry in by_kind.values())
    assert all(0 < entry["p50_ms"] <= entry["p99_ms"] for entry in by_kind.values())
    # every mistake, and nothing else, answered its 4xx as problem details
    assert report["expected_4xx"] == sum(by_kind[kind]["count"] for kind in MISTAKES) > 0
    assert report["requests"] == sum(entry["count"] for entry in by_kind.values())
    assert report["event_streams_dropped"] >= 1

    jobs = report["jobs"]
    assert jobs["submitted"] == by_kind["submit_job"]["count"]  # each one answered 202
    assert jobs["submitted"] == sum(jobs["by_state"].values()) and jobs["failed"] == 0
    assert jobs["by_state"].get("succeeded", 0) >= 1  # the worker ran them
    assert report["service"] == {"restarted": [], "exit_code": 0}
    assert report["log"]["error_lines"] == 0

    memory = report["memory"]
    assert memory["api"]["pid"] != memory["worker"]["pid"]
    for process in ("api", "worker"):
        figures = memory[process]
        start, warm, end = figures["start_mib"], figures["warm_mib"], figures["end_mib"]
        assert start > 0 and warm > 0 and end > 0
        assert figures["growth_after_warmup_pct"] == pytest.approx(
            (end - warm) / warm * 100, abs=0.01
        )
    growth = memory["api"]["growth_after_warmup_pct"]
    assert report["targets"]["api_rss_within_10pct_of_warm"] is (growth <= 10)
    start_sample, warm_sample = memory["samples"][:2]
    assert start_sample["t_s"] == 0.0 and 5.0 <= warm_sample["t_s"] <= 6.0
    assert warm_sample["api_mib"] == memory["api"]["warm_mib"]
    assert memory["samples"][-1]["t_s"] == pytest.approx(report["duration_s"], abs=0.1)
    assert report["duration_s"] >= 20
    assert report["arguments"]["clients"] == 4 and report["arguments"]["seed"] == 1
    assert report["machine"]["cores"] >= 1 and report["versions"]["torch"]


def test_mix_overrides_the_default_weights() -> None:
    weights = soak.parse_mix(" predict_1=0, events=2.5 ")
    assert weights == {**soak.WEIGHTS, "predict_1": 0.0, "events": 2.5}
    assert soak.parse_mix("") == soak.WEIGHTS
    kinds = ", ".join(soak.WEIGHTS)
    with pytest.raises(ValueError, match=f"weight >= 0, of the kinds {kinds}; got 'events=-1'"):
        soak.parse_mix("events=-1")
    with pytest.raises(ValueError, match="got 'predict=1'"):
        soak.parse_mix("predict=1")
    with pytest.raises(ValueError, match="--mix leaves no kind of request"):
        soak.parse_mix(",".join(f"{kind}=0" for kind in soak.WEIGHTS))
