"""Learning-rate schedule: linear warmup over a fraction of the total optimiser steps, then
cosine decay to ``min_lr_ratio`` of the peak at the last step."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, total_steps: int, warmup_fraction: float, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based)."""
    total_steps = max(total_steps, 1)
    warmup = min(max(round(warmup_fraction * total_steps), 0), total_steps)
    if step < warmup:
        return (step + 1) / warmup  # reaches 1 at the last warmup step, on any data size
    decay_steps = max(total_steps - warmup, 1)
    progress = min((step - warmup) / decay_steps, 1.0)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(
    optimiser: torch.optim.Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_ratio: float = 0.01,
) -> LambdaLR:
    return LambdaLR(
        optimiser, lambda step: lr_factor(step, total_steps, warmup_fraction, min_lr_ratio)
    )
