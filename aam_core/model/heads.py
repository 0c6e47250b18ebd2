"""Output heads on top of the encoders."""

from __future__ import annotations

import torch
from torch import nn

from aam_core.model.blocks import AttentionPool, hide_identities
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
    abundance-weighted mean of the states beside it) -> MLP -> out_dim (values or logits).

    With ``config.linear`` and a vocabulary of V ASVs, a linear term on log abundances is added
    to the MLP's output: ``sum_s W[identity_s] * log1p(count_s) / log1p(depth)``, ``W [V+1,
    out_dim]`` starting at zero (row 0, ASVs outside the vocabulary, stays zero). While
    training, ``identity_dropout`` of the slots drop out of it, as their identity embeddings do.
    """

    def __init__(
        self, dim: int, config: TargetConfig, *, vocabulary: int = 0, identity_dropout: float = 0.0
    ) -> None:
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
        self.linear: nn.Embedding | None = None
        self.identity_dropout = identity_dropout
        if config.linear and vocabulary > 0:
            self.linear = nn.Embedding(vocabulary + 1, config.out_dim, padding_idx=0)
            nn.init.zeros_(self.linear.weight)

    def forward(
        self,
        states: torch.Tensor,
        mask: torch.Tensor,
        relative: torch.Tensor,
        log_counts: torch.Tensor | None = None,
        identity: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``states [B, S, D]``, ``mask [B, S]``, ``relative [B, S]``: each slot's share of
        the sample's reads (0 for padding); ``log_counts [B, S]``: log1p of its reads;
        ``identity [B, S]``: its vocabulary row (0: none), for the linear term."""
        pooled = self.pool(states, mask)  # [B, D]
        if self.weighted:
            share = relative * mask  # [B, S]
            share = share / share.sum(-1, keepdim=True).clamp_min(1e-12)  # [B, S], rows sum to 1
            mean = torch.einsum("bs,bsd->bd", share, states)  # [B, D]
            pooled = torch.cat([pooled, mean], dim=-1)  # [B, 2D]
        out = self.mlp(pooled)  # [B, out_dim]
        if self.linear is None or identity is None or log_counts is None:
            return out
        if self.training:
            identity = hide_identities(identity, self.identity_dropout)  # [B, S]
        counts = torch.expm1(log_counts) * mask  # [B, S]
        depth = torch.log1p(counts.sum(-1, keepdim=True)).clamp_min(1e-6)  # [B, 1]
        scale = (log_counts * mask / depth).to(out.dtype)  # [B, S], in [0, 1]
        return out + torch.einsum("bs,bso->bo", scale, self.linear(identity).to(out.dtype))
