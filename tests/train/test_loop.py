from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from aam_core.checkpoint import load_checkpoint
from aam_core.io import Inputs
from aam_core.plan import TargetSpec
from aam_core.train.callbacks import Callback, EpochEvent
from aam_core.train.loop import Progress, restore, resume_state, warmup_cosine
from aam_core.train.run import run_pretrain, run_train
from tests.callbacks import History, StopAfter
from tests.conftest import pretrain_plan, train_plan

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
    plan = train_plan(study_inputs, AGE, epochs=3, loss_weights={"target": 1.0, "count": 0.5})
    straight = run_train(study_inputs, plan, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run_train(study_inputs, plan, tmp_path / "resumed", callbacks=CrashAfterEpoch(1))
    resumed = run_train(study_inputs, plan, tmp_path / "resumed", resume=True)
    assert resumed.fit.epochs_run == 3 and resumed.fit.steps == straight.fit.steps
    a, b = _weights(straight.last_checkpoint), _weights(resumed.last_checkpoint)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the history (and metrics.jsonl) continues instead of restarting
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    # epoch 0: the linear base alone, on validation, recorded once
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1, 1, 2, 2, 3, 3]
    assert resumed.fit.history == straight.fit.history


def test_stop_request_saves_then_resume_finishes_identically(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    plan = pretrain_plan(study_inputs, epochs=2)
    straight = run_pretrain(study_inputs, plan, tmp_path / "straight")
    stopped = run_pretrain(study_inputs, plan, tmp_path / "stopped", callbacks=StopAfter(3))
    assert stopped.fit.stopped == "requested" and stopped.fit.steps == 3
    checkpoint = load_checkpoint(stopped.last_checkpoint)
    assert checkpoint.resume is not None and checkpoint.resume["batches_done"] == 3
    resumed = run_pretrain(study_inputs, plan, tmp_path / "stopped", resume=True)
    assert resumed.fit.stopped == "completed" and resumed.fit.steps == straight.fit.steps
    a, b = _weights(straight.last_checkpoint), _weights(resumed.last_checkpoint)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_progress_events_and_early_stopping(study_inputs: Inputs, tmp_path: Path) -> None:
    history = History()
    # an lr this small cannot improve the validation MAE for long: early stopping must end it
    plan = train_plan(study_inputs, AGE, epochs=30, patience=2, lr=1e-9, warmup_fraction=0.0)
    result = run_train(study_inputs, plan, tmp_path / "run", callbacks=history)
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
    plan = pretrain_plan(study_inputs, epochs=1, batch_size=8, grad_accumulation=3, grad_clip=0.5)
    result = run_pretrain(study_inputs, plan, tmp_path / "run", callbacks=history)
    n_train = result.report["n_train"]
    batches = -(-n_train // 8)
    assert result.fit.steps == -(-batches // 3)  # one optimiser step per 3 batches (last partial)


def test_resuming_a_finished_run_trains_nothing_more(study_inputs: Inputs, tmp_path: Path) -> None:
    plan = pretrain_plan(study_inputs, epochs=2)
    done = run_pretrain(study_inputs, plan, tmp_path)
    again = run_pretrain(study_inputs, plan, tmp_path, resume=True)
    assert (again.fit.stopped, again.fit.epochs_run, again.fit.steps) == (
        "completed",
        2,
        done.fit.steps,
    )
    assert again.fit.history == done.fit.history


def test_finish_epoch_keeps_the_best_value_and_counts_epochs_without_gain() -> None:
    progress = Progress()
    seen = []
    for value in (3.0, 2.0, float("nan"), 2.5, None, 2.0, 1.0):
        improved = progress.finish_epoch([{"epoch": progress.epoch + 1}], value, "min")
        seen.append((improved, progress.bad_epochs))
    # NaN, a missing value and a tie (2.0 again) are epochs without gain
    assert seen == [(True, 0), (True, 0), (False, 1), (False, 2), (False, 3), (False, 4), (True, 0)]
    assert (progress.epoch, progress.best_epoch, progress.best_value) == (7, 7, 1.0)
    assert [r["epoch"] for r in progress.history] == [1, 2, 3, 4, 5, 6, 7]
    accuracy = Progress()
    gains = [accuracy.finish_epoch([], v, "max") for v in (0.5, 0.75, 0.25)]
    assert gains == [True, True, False] and accuracy.best_epoch == 2


def test_checkpoint_metrics_hold_the_last_and_the_best_epoch() -> None:
    progress = Progress(
        epoch=2,
        best_epoch=1,
        history=[
            {"epoch": 1, "split": "train", "loss": 0.5},
            {"epoch": 1, "split": "validation", "mae": 4.0},
            {"epoch": 2, "split": "train", "loss": 0.25},
            {"epoch": 2, "split": "validation", "mae": 5.0},
        ],
    )
    assert progress.metrics("mae") == {
        "final": {"epoch": 2, "train": {"loss": 0.25}, "validation": {"mae": 5.0}},
        "best": {"epoch": 1, "monitor": "mae", "train": {"loss": 0.5}, "validation": {"mae": 4.0}},
    }


def _optimiser() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 1)
    optimiser = torch.optim.AdamW(layer.parameters(), lr=0.1)
    return optimiser, warmup_cosine(optimiser, total_steps=10, warmup_fraction=0.2)


def test_resume_state_restores_progress_optimiser_scheduler_and_rng() -> None:
    optimiser, scheduler = _optimiser()
    for _ in range(3):
        sum(p.sum() for group in optimiser.param_groups for p in group["params"]).backward()
        optimiser.step()
        scheduler.step()
    progress = Progress(epoch=1, batches_done=2, step=3, best_value=0.5, best_epoch=1)
    progress.history.append({"epoch": 1, "split": "train", "loss": 0.5})
    state = resume_state(progress, optimiser, scheduler, world_size=1)
    # the keys every last.pt holds: checkpoints written before this module keep resuming
    assert set(state) == {
        "epoch",
        "batches_done",
        "step",
        "best_value",
        "best_epoch",
        "bad_epochs",
        "history",
        "optimizer",
        "scheduler",
        "rng",
        "world_size",
    }
    expected_draw = torch.rand(4)
    fresh_optimiser, fresh_scheduler = _optimiser()
    restored = restore(state, fresh_optimiser, fresh_scheduler, world_size=1)
    assert restored == progress
    assert torch.equal(torch.rand(4), expected_draw)
    assert fresh_scheduler.last_epoch == 3
    # warmup 2 steps, then cosine over 8 to 1% of the peak: step 3 is 1/8 of the way down
    assert fresh_optimiser.param_groups[0]["lr"] == pytest.approx(
        0.1 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi / 8)))
    )
    old, new = optimiser.state_dict()["state"], fresh_optimiser.state_dict()["state"]
    assert all(torch.equal(old[0][k], new[0][k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    with pytest.raises(ValueError, match="checkpointed with 1 processes; .* not 2"):
        restore(state, fresh_optimiser, fresh_scheduler, world_size=2)


def test_a_moving_average_is_what_validation_and_best_pt_use_and_it_resumes(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    plan = train_plan(study_inputs, AGE, epochs=3, ema=0.9)
    straight = run_train(study_inputs, plan, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run_train(study_inputs, plan, tmp_path / "resumed", callbacks=CrashAfterEpoch(2))
    resumed = run_train(study_inputs, plan, tmp_path / "resumed", resume=True)
    assert resumed.fit.history == straight.fit.history  # validation of the same averages
    for name in ("best.pt", "last.pt"):
        a = _weights(tmp_path / "straight" / "checkpoints" / name)
        b = _weights(tmp_path / "resumed" / "checkpoints" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    last = load_checkpoint(straight.last_checkpoint)
    assert last.resume is not None
    average = {k.removeprefix("module."): v for k, v in last.resume["ema"].items()}
    raw = last.state_dict
    key = "target_head.mlp.1.weight"
    assert not torch.equal(raw[key], average[key])  # last.pt keeps the raw weights to resume
    if straight.fit.best_epoch == 3:  # best.pt holds the average of the epoch it was saved at
        assert torch.equal(_weights(straight.best_checkpoint)[key], average[key])
