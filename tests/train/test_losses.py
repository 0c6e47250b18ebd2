from __future__ import annotations

import math

import pytest
import torch

from aam_core.model import LossWeights, TargetConfig
from aam_core.train.losses import (
    masked_mse,
    nucleotide_loss,
    target_loss,
    unifrac_loss,
    weighted_total,
)


def test_unifrac_loss_counts_each_pair_once() -> None:
    predicted = torch.tensor([[0.0, 0.5, 0.9], [0.5, 0.0, 0.2], [0.9, 0.2, 0.0]])
    true = torch.tensor([[0.0, 0.4, 1.0], [0.4, 0.0, 0.5], [1.0, 0.5, 0.0]])
    # pairs (0,1), (0,2), (1,2): errors 0.1, -0.1, -0.3 -> (0.01 + 0.01 + 0.09) / 3
    assert unifrac_loss(predicted, true).item() == pytest.approx(0.11 / 3, abs=1e-7)


@pytest.mark.parametrize("b", [2, 3, 5, 8])
def test_unifrac_loss_any_batch_size(b: int) -> None:
    torch.manual_seed(b)
    p, t = torch.rand(b, b), torch.rand(b, b)
    direct = sum((p[i, j] - t[i, j]) ** 2 for i in range(b) for j in range(i + 1, b))
    assert unifrac_loss(p, t).item() == pytest.approx(float(direct) / (b * (b - 1) / 2), rel=1e-6)


def test_unifrac_loss_of_a_single_sample_is_zero_with_a_gradient_path() -> None:
    p = torch.zeros(1, 1, requires_grad=True)
    loss = unifrac_loss(p, torch.zeros(1, 1))
    loss.backward()
    assert loss.item() == 0.0 and p.grad is not None


def test_nucleotide_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 3.0, 0.0]])
    targets = torch.tensor([0, 1])
    nll0 = -math.log(math.exp(2) / (math.exp(2) + 3))
    nll1 = -math.log(math.exp(1) / (1 + math.exp(1) + math.exp(3) + 1))
    assert nucleotide_loss(logits, targets).item() == pytest.approx((nll0 + nll1) / 2, rel=1e-6)
    assert nucleotide_loss(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)).item() == 0.0


def test_masked_mse_and_regression_targets() -> None:
    assert masked_mse(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])).item() == 2.5
    cfg = TargetConfig()
    pred = torch.tensor([[0.5], [3.0]])
    true = torch.tensor([0.0, 0.0])
    assert target_loss(pred, true, cfg).item() == pytest.approx((0.25 + 9) / 2)
    huber = TargetConfig(loss="huber", huber_delta=1.0)
    # 0.5·0.5² for |e| <= 1; 1·(3 - 0.5·1) for |e| > 1
    assert target_loss(pred, true, huber).item() == pytest.approx((0.125 + 2.5) / 2)


def test_class_weighted_cross_entropy() -> None:
    cfg = TargetConfig(task="classification", out_dim=3)
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]])
    labels = torch.tensor([0, 1, 1])
    weights = torch.tensor([1.0, 3.0, 0.5])
    log_p = torch.log_softmax(logits, dim=1)
    nll = -log_p[torch.arange(3), labels]
    w = weights[labels]
    direct = (w * nll).sum() / w.sum()
    assert target_loss(logits, labels, cfg, weights).item() == pytest.approx(
        direct.item(), rel=1e-6
    )
    assert target_loss(logits, labels, cfg).item() == pytest.approx(nll.mean().item(), rel=1e-6)


def test_weighted_total_uses_every_weight_and_never_ignores_one() -> None:
    weights = LossWeights(unifrac=2.0, target=0.5)
    parts = {
        "unifrac": torch.tensor(0.3),
        "target": torch.tensor(4.0),
        "faith_pd": torch.tensor(9.0),
    }
    result = weighted_total(weights, parts)
    assert result.total.item() == pytest.approx(2.0 * 0.3 + 0.5 * 4.0)
    assert result.component_values() == pytest.approx(
        {"unifrac": 0.3, "target": 4.0}
    )  # faith weight 0
    with pytest.raises(ValueError, match="loss weights > 0 without predictions: target"):
        weighted_total(weights, {"unifrac": torch.tensor(0.3)})
    relaxed = weighted_total(weights, {"unifrac": torch.tensor(0.3)}, strict=False)
    assert relaxed.total.item() == pytest.approx(0.6)


def test_nucleotide_loss_ignores_unchosen_positions() -> None:
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 9.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]])
    targets = torch.tensor([[0, -100, 3]])  # position 1 was not chosen: its logits never count
    log_p = torch.log_softmax(logits[0], dim=-1)
    direct = -(log_p[0, 0] + log_p[2, 3]) / 2
    assert nucleotide_loss(logits, targets).item() == pytest.approx(direct.item(), rel=1e-6)
    assert nucleotide_loss(logits, torch.full((1, 3), -100)).item() == 0.0


def test_unifrac_loss_in_units_of_the_train_split_s_spread() -> None:
    torch.manual_seed(3)
    p, t = torch.rand(5, 5), torch.rand(5, 5)
    spread = torch.tensor(0.12)
    i, j = torch.triu_indices(5, 5, offset=1)
    direct = (((p[i, j] - t[i, j]) / 0.12) ** 2).mean()
    assert unifrac_loss(p, t, spread).item() == pytest.approx(direct.item(), rel=1e-6)
    # a model that predicts the mean distance scores the variance over the spread squared
    mean = torch.full((5, 5), float(t[i, j].mean()))
    expected = float(t[i, j].var(unbiased=False)) / 0.12**2
    assert unifrac_loss(mean, t, spread).item() == pytest.approx(expected, rel=1e-5)
