"""Corruption for the self-supervised tasks. Randomness comes from ``generator`` (or torch's
global generator, which training seeds)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aam_core.data.tokens import MASK, A, T

IGNORE = -100  # target of a position the masked-nucleotide loss does not cover


@dataclass(frozen=True, eq=False)
class NucleotideCorruption:
    tokens: torch.Tensor  # int64 [U, L]: the corrupted input
    chosen: torch.Tensor  # bool [U, L]: positions the loss covers
    targets: torch.Tensor  # int64 [U, L]: original base 0..3 = A/C/G/T where chosen, else IGNORE


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
    # Targets keep the full [U, L] shape (no boolean indexing): no host-device sync.
    targets = torch.where(chosen, tokens - A, torch.full_like(tokens, IGNORE))
    return NucleotideCorruption(corrupted, chosen, targets)


def choose_hidden_slots(
    mask: torch.Tensor, fraction: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``bool [B, S]``: ``fraction`` of the real ASV slots whose abundance is hidden."""
    draw = torch.rand(mask.shape, device=mask.device, generator=generator)  # [B, S]
    return mask & (draw < fraction)
