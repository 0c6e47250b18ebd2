from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aam_core.checkpoint import load_checkpoint
from aam_core.io import Inputs
from aam_core.train.callbacks import Callback, EpochEvent, History, StopAfter
from aam_core.train.prepare import TargetSpec
from aam_core.train.stages import run_pretrain, run_train
from tests.conftest import tiny_run

AGE = TargetSpec("age", "regression")


class CrashAfterEpoch(Callback):
    """Simulates a worker dying right after an epoch's checkpoint was written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch(self, event: EpochEvent) -> None:
        if event.epoch == self.epoch:
            raise KeyboardInterrupt("simulated crash")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def test_resume_after_a_crash_reaches_the_same_weights(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    config = tiny_run(epochs=3, loss_weights={"target": 1.0, "count": 0.5})
    straight = run_train(study_inputs, AGE, config, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run_train(study_inputs, AGE, config, tmp_path / "resumed", callbacks=CrashAfterEpoch(1))
    resumed = run_train(study_inputs, AGE, config, tmp_path / "resumed", resume=True)
    assert resumed.fit.epochs_run == 3 and resumed.fit.steps == straight.fit.steps
    a, b = _weights(straight.last_checkpoint), _weights(resumed.last_checkpoint)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the history (and metrics.jsonl) continues instead of restarting
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 1, 2, 2, 3, 3]
    assert resumed.fit.history == straight.fit.history


def test_stop_request_saves_then_resume_finishes_identically(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    config = tiny_run(epochs=2)
    straight = run_pretrain(study_inputs, config, tmp_path / "straight")
    stopped = run_pretrain(study_inputs, config, tmp_path / "stopped", callbacks=StopAfter(3))
    assert stopped.fit.stopped == "requested" and stopped.fit.steps == 3
    checkpoint = load_checkpoint(stopped.last_checkpoint)
    assert checkpoint.resume is not None and checkpoint.resume["batches_done"] == 3
    resumed = run_pretrain(study_inputs, config, tmp_path / "stopped", resume=True)
    assert resumed.fit.stopped == "completed" and resumed.fit.steps == straight.fit.steps
    a, b = _weights(straight.last_checkpoint), _weights(resumed.last_checkpoint)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_progress_events_and_early_stopping(study_inputs: Inputs, tmp_path: Path) -> None:
    history = History()
    # an lr this small cannot improve the validation MAE for long: early stopping must end it
    config = tiny_run(epochs=30, patience=2, lr=1e-9, warmup_fraction=0.0)
    result = run_train(study_inputs, AGE, config, tmp_path / "run", callbacks=history)
    assert result.fit.stopped == "early_stopping"
    assert result.fit.epochs_run < 30
    assert len(history.epochs) == result.fit.epochs_run
    assert result.fit.epochs_run - result.fit.best_epoch == 2  # patience epochs without gain
    steps = [e.step for e in history.steps]
    assert steps == list(range(1, result.fit.steps + 1))
    assert history.steps[-1].steps == history.steps[0].epochs * (
        result.fit.steps // len(history.epochs)
    )
    assert all(0 < e.fraction <= 1 for e in history.steps)
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best.metrics["best"]["epoch"] == result.fit.best_epoch
    assert any("early stopping" in line for line in history.logs)


def test_gradient_accumulation_steps_and_clipping(study_inputs: Inputs, tmp_path: Path) -> None:
    history = History()
    config = tiny_run(epochs=1, batch_size=8, grad_accumulation=3, grad_clip=0.5)
    result = run_pretrain(study_inputs, config, tmp_path / "run", callbacks=history)
    n_train = result.report["n_train"]
    batches = -(-n_train // 8)
    assert result.fit.steps == -(-batches // 3)  # one optimiser step per 3 batches (last partial)
