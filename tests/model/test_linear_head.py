"""The target head's linear term (``linear_head``): a weight per ASV of the vocabulary times its
log1p(count) / log1p(depth), added to the network's output; its own learning rate; on by
default, off (with a note) where there is no vocabulary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from aam_core.checkpoint import load_checkpoint
from aam_core.io import Inputs
from aam_core.model.aam import SequenceRegressor
from aam_core.model.config import AAMConfig, TargetConfig
from aam_core.model.heads import TargetHead
from aam_core.plan import RunConfig, TargetSpec
from aam_core.predict import Predictor
from aam_core.train.callbacks import Callback
from aam_core.train.loop import LINEAR_HEAD_LR, parameter_groups
from aam_core.train.stages import run_train
from tests.conftest import train_plan

AGE = TargetSpec("age", "regression")
B, S, D, V, K = 3, 5, 8, 6, 2


def _inputs() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(B, S, D, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    counts = torch.tensor(
        [[40, 9, 1, 0, 0], [5, 5, 5, 5, 80], [100, 0, 0, 0, 0]], dtype=torch.float32
    )
    relative = counts / counts.sum(-1, keepdim=True)
    identity = torch.tensor([[1, 0, 6, 0, 0], [2, 3, 4, 5, 6], [3, 0, 0, 0, 0]])  # 0: unknown
    return states, mask, relative, torch.log1p(counts), identity, counts


def test_the_linear_term_is_a_weight_per_asv_times_its_log_abundance() -> None:
    head = TargetHead(D, TargetConfig(out_dim=K, linear=True), vocabulary=V).eval()
    assert head.linear is not None
    with torch.no_grad():
        head.linear.weight[1:] = torch.randn(V, K, generator=torch.Generator().manual_seed(1))
    states, mask, relative, log_counts, identity, counts = _inputs()
    with torch.no_grad():
        network = head(states, mask, relative)  # no identities: the network alone
        got = head(states, mask, relative, log_counts, identity) - network  # [B, K]
    weights = head.linear.weight.detach().numpy()  # [V + 1, K]
    expected = np.zeros((B, K))
    for b in range(B):
        depth = counts[b].sum().item()
        for s in range(S):
            if mask[b, s]:
                share = np.log1p(counts[b, s].item()) / np.log1p(depth)
                expected[b] += weights[identity[b, s]] * share
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.all(weights[0] == 0)  # an ASV outside the vocabulary adds nothing


def test_the_term_starts_at_zero_and_unknown_asvs_never_learn() -> None:
    head = TargetHead(D, TargetConfig(out_dim=K, linear=True), vocabulary=V)
    states, mask, relative, log_counts, identity, _ = _inputs()
    out = head.eval()(states, mask, relative, log_counts, identity)
    torch.testing.assert_close(out, head(states, mask, relative))  # a fresh term is zero
    out.sum().backward()
    assert head.linear is not None and head.linear.weight.grad is not None
    grad = head.linear.weight.grad  # [V + 1, K]
    assert torch.all(grad[0] == 0) and torch.all(grad[[1, 2, 3, 4, 5, 6]] != 0)


def test_identities_drop_out_of_the_term_only_while_training() -> None:
    head = TargetHead(D, TargetConfig(out_dim=K, linear=True), vocabulary=V, identity_dropout=0.5)
    assert head.linear is not None
    with torch.no_grad():
        head.linear.weight[1:] = 1.0
    states, mask, relative, log_counts, identity, _ = _inputs()
    args = (states, mask, relative, log_counts, identity)
    head.eval()
    torch.testing.assert_close(head(*args), head(*args))
    head.train()
    torch.manual_seed(0)
    draws = torch.stack([head(*args) for _ in range(20)])  # [20, B, K]
    assert draws.std(dim=0).max() > 0.05  # some identities hidden, differently each time
    assert torch.all(draws <= head.eval()(*args) + 1e-6)  # hiding only removes positive terms


def test_no_vocabulary_no_term_and_old_configs_have_none() -> None:
    assert TargetHead(D, TargetConfig(out_dim=K, linear=True), vocabulary=0).linear is None
    assert TargetConfig().linear is False  # checkpoints written before the field
    assert RunConfig().linear_head is True


def test_the_term_trains_at_its_own_learning_rate() -> None:
    config = AAMConfig.tiny(
        sample=dataclasses.replace(AAMConfig.tiny().sample, vocabulary=V),
        target=TargetConfig(out_dim=1, linear=True),
    )
    model = SequenceRegressor(config)
    trainable = model.trainable_parameters()
    groups = parameter_groups(model, trainable, 1e-3)
    assert [g["lr"] for g in groups] == [1e-3, LINEAR_HEAD_LR]
    assert groups[1]["params"] == [model.target_head.linear.weight]  # type: ignore[union-attr]
    assert len(groups[0]["params"]) == len(trainable) - 1
    plain = SequenceRegressor(AAMConfig.tiny(target=TargetConfig(out_dim=1)))
    assert len(parameter_groups(plain, plain.trainable_parameters(), 1e-3)) == 1


class _Lines(Callback):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def on_log(self, message: str) -> None:
        self.lines.append(message)


@pytest.mark.parametrize("vocabulary", [True, False], ids=["default", "no-vocabulary"])
def test_a_train_run_keeps_the_term_only_with_a_vocabulary(
    study_inputs: Inputs, tmp_path: Path, vocabulary: bool
) -> None:
    plan = train_plan(study_inputs, AGE, epochs=2, asv_vocabulary=vocabulary)
    lines = _Lines()
    run = run_train(study_inputs, plan, tmp_path / "run", callbacks=lines)
    assert run.best_checkpoint is not None
    checkpoint = load_checkpoint(run.best_checkpoint)
    assert checkpoint.config.target is not None
    assert checkpoint.config.target.linear is vocabulary
    note = "linear_head: off, it needs the ASV vocabulary (asv_vocabulary)"
    assert (note in lines.lines) is not vocabulary
    weights = checkpoint.state_dict.get("target_head.linear.weight")
    if vocabulary:  # it learnt, and prediction applies it
        assert weights is not None and weights[1:].abs().max() > 0
        predictor = Predictor.from_path(run.best_checkpoint)
        values = predictor.predict(study_inputs.table, study_inputs.sequences).samples
        assert all(s.prediction is not None and np.isfinite(s.prediction[0]) for s in values)
    else:
        assert weights is None
