"""The distributed code path on CPU: torchrun, gloo, 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_two_process_ddp_compares_pairs_across_ranks(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc-per-node",
            "2",
            str(ROOT / "tests" / "train" / "ddp_check.py"),
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert abs(result["loss"] - result["reference_loss"]) < 1e-6
    assert result["max_grad_diff"] < 1e-5
    # batch size 4 per process, 2 processes: each step covers 8 samples of the train split
    assert result["steps"] == 2 * -(-result["n_train"] // 8)
    assert result["epochs_run"] == 2 and "unifrac_mae" in result["validation"]
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()
