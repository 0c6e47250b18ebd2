"""The multi-process launch a job asking for several GPUs gets: ``torchrun`` with N ranks of
``worker.runner``, where rank 0 alone reports to the worker and a stop request reaches every
rank through the training loop. Run here with two CPU ranks (gloo); on a GPU host the same
launch gives each rank its GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aam_core.checkpoint import load_checkpoint
from tests.worker.helpers import PRETRAIN_FAST
from worker.order import JobOrder
from worker.supervisor import Supervisor


def test_two_ranks_report_once_and_stop_together(
    tmp_path: Path, study_files: dict[str, Path]
) -> None:
    order = JobOrder(
        job_id="job_torchrun",
        kind="pretrain",
        out_dir=str(tmp_path / "run"),
        device="cpu",
        nproc=2,
        files={role: str(path) for role, path in study_files.items()},
        names={role: path.name for role, path in study_files.items()},
        config={**PRETRAIN_FAST, "epochs": 50, "gpus": 2},
    )
    (tmp_path / "run").mkdir()
    order.write(tmp_path / "run" / "order.json")
    seen: list[dict[str, Any]] = []

    def stop_after_two_steps() -> str | None:
        return "cancel" if sum(m["type"] == "step" for m in seen) >= 2 else None

    outcome = Supervisor(
        tmp_path / "run" / "order.json", nproc=2, output=tmp_path / "runner.log", grace=30
    ).run(seen.append, stop_after_two_steps)
    assert outcome.returncode == 0, outcome.output_tail
    assert outcome.final is not None and outcome.final["type"] == "done"
    summary = outcome.final["result"]
    assert summary["stopped"] == "requested"
    steps = [m["step"] for m in seen if m["type"] == "step"]
    assert steps == list(range(1, len(steps) + 1))  # rank 0's steps only, each once
    assert summary["steps"] == steps[-1] < 50 * 3
    assert any("x 2 processes" in m["message"] for m in seen if m["type"] == "log")
    last = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert last.resume is not None
    assert (last.resume["world_size"], last.resume["step"]) == (2, summary["steps"])
