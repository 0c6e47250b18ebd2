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


def test_cli_train_under_torchrun_two_processes(tmp_path: Path) -> None:
    """A regressor's loss ignores the pooled embedding: DDP must not stall on its parameters."""
    from aam_core.data.synthetic import SyntheticSpec, generate, write_study

    files = write_study(
        generate(SyntheticSpec(n_samples=40, n_asvs=60, asvs_per_sample=12, seed=4)), tmp_path
    )
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "aam_core.cli",
         "train", "--table", str(files["table"]), "--metadata", str(files["metadata"]),
         "--target", "age", "--task", "regression", "--out", str(out), "--preset", "tiny",
         "--epochs", "2", "--batch-size", "8", "--rarefaction-depth", "1500",
         "--token-limit", "32", "--device", "cpu", "--no-baseline", "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # epoch 0: the linear base alone, on validation, before either rank's first step
    assert sorted((e["epoch"], e["split"]) for e in epochs) == [
        (0, "validation"),
        (1, "train"),
        (1, "validation"),
        (2, "train"),
        (2, "validation"),
    ]
    split = (out / "split.tsv").read_text().splitlines()[1:]
    n_validation = sum(1 for line in split if line.endswith("\tvalidation"))
    predictions = (out / "validation_predictions.tsv").read_text().splitlines()[1:]
    assert len(predictions) == n_validation == 8
