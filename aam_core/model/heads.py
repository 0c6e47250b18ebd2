"""Output heads on top of the encoders."""

from __future__ import annotations

import torch
from torch import nn

from aam_core.model.blocks import AttentionPool
from aam_core.model.config import TargetConfig

# d = sqrt(max(|z_i - z_j|², EPS)): finite gradients when two embeddings coincide.
DISTANCE_EPS = 1e-12


def pairwise_distances(z: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[B, B]`` between rows of ``z [B, D]``, safe at zero."""
    diff = z[:, None, :] - z[None, :, :]  # [B, B, D]
    squared = diff.pow(2).sum(dim=-1)  # [B, B]
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    return torch.sqrt(squared.clamp_min(DISTANCE_EPS)).masked_fill(eye, 0.0)  # [B, B]


class UniFracHead(nn.Module):
    """z = Linear(D, D)(sample embedding); predicted distance d_ij = ||z_i - z_j||_2."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected embeddings ``z [B, D]`` and their distances ``[B, B]`` (under DDP the
        loop gathers ``z`` from every GPU and compares the global batch)."""
        z = self.proj(embedding)  # [B, D]
        return z, pairwise_distances(z)


class ScalarHead(nn.Module):
    """Linear(D, 1) per row: Faith PD on sample embeddings, log abundance on ASV states."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).squeeze(-1)  # [...]


class NucleotideHead(nn.Module):
    """Linear(D, 4) over A/C/G/T on nucleotide-encoder states at the chosen positions."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 4)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.proj(states)  # [n, 4]


class TargetHead(nn.Module):
    """Attention pooling over ASV states (and with ``pooling="attention+abundance"`` the
    abundance-weighted mean of the states beside it) -> MLP -> out_dim (values or logits)."""

    def __init__(self, dim: int, config: TargetConfig) -> None:
        super().__init__()
        self.pool = AttentionPool(dim)
        self.weighted = config.pooling == "attention+abundance"
        width = 2 * dim if self.weighted else dim
        self.mlp = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, config.hidden),
            nn.GELU(),
            nn.Linear(config.hidden, config.out_dim),
        )

    def forward(
        self, states: torch.Tensor, mask: torch.Tensor, relative: torch.Tensor
    ) -> torch.Tensor:
        """``states [B, S, D]``, ``mask [B, S]``, ``relative [B, S]``: each slot's share of
        the sample's reads (0 for padding)."""
        pooled = self.pool(states, mask)  # [B, D]
        if self.weighted:
            share = relative * mask  # [B, S]
            share = share / share.sum(-1, keepdim=True).clamp_min(1e-12)  # [B, S], rows sum to 1
            mean = torch.einsum("bs,bsd->bd", share, states)  # [B, D]
            pooled = torch.cat([pooled, mean], dim=-1)  # [B, 2D]
        return self.mlp(pooled)  # [B, out_dim]
