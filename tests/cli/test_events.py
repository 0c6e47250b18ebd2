"""``--events`` (one JSON line per step, epoch and log line), ``--stop-file`` and ``--resume``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aam_core.checkpoint import load_checkpoint
from tests.cli.conftest import FAST, Study, aam

EPOCHS, BATCH = 3, 8


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _pretrain(study: Study, out: Path, *extra: object) -> str:
    result = aam("pretrain", "--table", study.table, "--tree", study.tree, "--out", out, *FAST,
                 "--epochs", EPOCHS, "--batch-size", BATCH, "--quiet", *extra)  # fmt: skip
    return result.stdout


def test_events_file_has_every_step_and_epoch(small_study: Study, tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"
    _pretrain(small_study, tmp_path / "run", "--events", events_path)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    steps_per_epoch = -(-report["n_train"] // BATCH)
    assert report["steps"] == EPOCHS * steps_per_epoch
    events = _events(events_path)
    steps = [e for e in events if e["type"] == "step"]
    epochs = [e for e in events if e["type"] == "epoch"]
    logs = [e for e in events if e["type"] == "log"]
    assert len(events) == len(steps) + len(epochs) + len(logs)
    assert [e["step"] for e in steps] == list(range(1, report["steps"] + 1))
    assert {e["steps"] for e in steps} == {report["steps"]}
    assert steps[-1]["fraction"] == 1.0
    assert [e["epoch"] for e in epochs] == list(range(1, EPOCHS + 1))
    assert [e["step"] for e in epochs] == [steps_per_epoch * k for k in range(1, EPOCHS + 1)]
    assert all(e["monitor"] == "unifrac_r2" and "unifrac_mae" in e["validation"] for e in epochs)
    assert logs[0]["message"].startswith(f"pretrain: {report['n_train']} train / ")
    assert any(e["message"].startswith("best checkpoint (epoch") for e in logs)


def test_stop_file_then_resume_finishes_the_run(small_study: Study, tmp_path: Path) -> None:
    out, events_path, stop = tmp_path / "run", tmp_path / "events.jsonl", tmp_path / "STOP"
    stop.touch()  # asked to stop before it starts: it stops after its first step
    printed = _pretrain(small_study, out, "--events", events_path, "--stop-file", stop)
    assert "pretrain requested: 0 epochs, 1 optimiser steps" in printed
    assert "run the same command with --resume to continue" in printed
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last.resume is not None and last.resume["step"] == 1
    report = json.loads((out / "report.json").read_text())
    assert (report["stopped"], report["steps"]) == ("requested", 1)

    stop.unlink()
    printed = _pretrain(small_study, out, "--events", events_path, "--stop-file", stop, "--resume")
    report = json.loads((out / "report.json").read_text())
    total = EPOCHS * -(-report["n_train"] // BATCH)
    assert (report["stopped"], report["epochs_run"], report["steps"]) == (
        "completed",
        EPOCHS,
        total,
    )
    assert f"pretrain completed: {EPOCHS} epochs, {total} optimiser steps" in printed
    events = _events(events_path)  # both runs appended to the same file
    assert [e["step"] for e in events if e["type"] == "step"] == list(range(1, total + 1))
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == list(range(1, EPOCHS + 1))
    assert any(e["message"] == "resuming at epoch 1, step 1" for e in events if e["type"] == "log")
