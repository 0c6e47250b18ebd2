"""Corruption for the self-supervised tasks. Randomness comes from ``generator`` (or torch's
global generator, which training seeds)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aam_core.data.tokens import MASK, A, T


@dataclass(frozen=True, eq=False)
class NucleotideCorruption:
    tokens: torch.Tensor  # int64 [U, L]: the corrupted input
    chosen: torch.Tensor  # bool [U, L]: positions the loss covers
    targets: torch.Tensor  # int64 [n_chosen]: original base, 0..3 = A/C/G/T


def corrupt_nucleotides(
    tokens: torch.Tensor, fraction: float, generator: torch.Generator | None = None
) -> NucleotideCorruption:
    """Choose ``fraction`` of the real A/C/G/T positions; of those 80% become MASK, 10% a
    random base and 10% stay unchanged (the loss covers all chosen positions)."""
    is_base = (tokens >= A) & (tokens <= T)  # [U, L]; padding and ambiguity codes never chosen
    draw = torch.rand(tokens.shape, device=tokens.device, generator=generator)  # [U, L]
    chosen = is_base & (draw < fraction)
    action = torch.rand(tokens.shape, device=tokens.device, generator=generator)  # [U, L]
    random_base = torch.randint(
        A, T + 1, tokens.shape, device=tokens.device, generator=generator
    )  # [U, L]
    corrupted = torch.where(chosen & (action < 0.8), torch.full_like(tokens, MASK), tokens)
    corrupted = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_base, corrupted)
    return NucleotideCorruption(corrupted, chosen, tokens[chosen] - A)


def choose_hidden_slots(
    mask: torch.Tensor, fraction: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``bool [B, S]``: ``fraction`` of the real ASV slots whose abundance is hidden."""
    draw = torch.rand(mask.shape, device=mask.device, generator=generator)  # [B, S]
    return mask & (draw < fraction)
