from __future__ import annotations

import torch

from aam_core.data.tokens import MASK, PAD, N
from aam_core.model.masking import choose_hidden_slots, corrupt_nucleotides


def test_nucleotide_corruption_rates_and_targets() -> None:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 5, (400, 150), generator=g)  # A/C/G/T
    tokens[:, 120:] = PAD
    tokens[:, 0] = N  # ambiguity codes are never chosen
    out = corrupt_nucleotides(tokens, 0.15, generator=g)
    chosen = out.chosen
    real = (tokens >= 1) & (tokens <= 4)
    assert not (chosen & ~real).any()
    assert abs(chosen.sum().item() / real.sum().item() - 0.15) < 0.01
    changed = out.tokens[chosen]
    original = tokens[chosen]
    masked = (changed == MASK).float().mean().item()
    unchanged = (changed == original).float().mean().item()
    # 80% mask; 10% random base (a quarter of which lands on the original); 10% unchanged
    assert abs(masked - 0.8) < 0.02
    assert abs(unchanged - (0.1 + 0.1 / 4)) < 0.02
    assert torch.equal(out.tokens[~chosen], tokens[~chosen])
    assert torch.equal(out.targets[chosen], original - 1)  # 0..3 = A/C/G/T
    assert (out.targets[~chosen] == -100).all()  # ignored by the loss


def test_hidden_slots_are_real_slots() -> None:
    mask = torch.zeros(64, 100, dtype=torch.bool)
    mask[:, :60] = True
    hidden = choose_hidden_slots(mask, 0.15, generator=torch.Generator().manual_seed(1))
    assert not (hidden & ~mask).any()
    assert abs(hidden.sum().item() / mask.sum().item() - 0.15) < 0.015
