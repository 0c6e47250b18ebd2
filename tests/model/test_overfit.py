"""Golden behaviour: the tiny model can fit one batch (seeded, bounded CPU steps)."""

from __future__ import annotations

import pytest
import torch

from aam_core.model import AAMConfig, LossWeights, SequenceEncoder, SequenceRegressor, TargetConfig
from aam_core.train.losses import compute_losses
from tests.conftest import BatchFactory

MAX_STEPS = 200


@pytest.mark.parametrize("task", ["unifrac", "target"])
def test_tiny_model_overfits_a_batch_of_16(make_batch: BatchFactory, task: str) -> None:
    batch = make_batch(list(range(16)))
    torch.manual_seed(0)
    model: SequenceEncoder | SequenceRegressor
    if task == "unifrac":
        model = SequenceEncoder(AAMConfig.tiny(loss_weights=LossWeights(unifrac=1.0)))
    else:
        config = AAMConfig.tiny().with_target(TargetConfig(hidden=32), LossWeights(target=1.0))
        model = SequenceRegressor(config)
        assert batch.target is not None
        model.target_norm.fit(batch.target)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    history = []
    for _ in range(MAX_STEPS):
        loss = compute_losses(model, model(batch), batch)
        optimiser.zero_grad()
        loss.total.backward()
        optimiser.step()
        history.append(loss.component_values()[task])
        if history[-1] <= 0.1 * history[0]:
            break
    assert history[-1] <= 0.1 * history[0], (history[0], history[-1], len(history))
