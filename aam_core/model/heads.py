"""Output heads on top of the encoders."""

from __future__ import annotations

import torch
from torch import nn

from aam_core.model.blocks import AttentionPool, Standardizer
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
    """z = Linear(D, D)(sample embedding); predicted distance d_ij = ||z_i - z_j||_2, or with
    ``affine`` d_ij = a ||z_i - z_j||_2 + b.

    Real UniFrac distances sit well above 0 (ECAM: mean 0.59, SD 0.12): without the offset b the
    embeddings must place every pair of samples ~0.6 apart, which the plain head (checkpoints
    written before ``affine``) learnt slowly. ``b`` starts at the train split's mean distance
    (:meth:`fit`), ``a = exp(log_scale)`` stays positive, and ``norm`` keeps the train split's
    distance mean and spread: the loss compares distances in units of that spread, so that its
    scale does not depend on the study.
    """

    def __init__(self, dim: int, *, affine: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.affine = affine
        if affine:
            self.log_scale = nn.Parameter(torch.zeros(()))
            self.offset = nn.Parameter(torch.zeros(()))
            self.norm = Standardizer(1)

    def fit(self, distances: torch.Tensor) -> None:
        """The train split's pairwise distances ``[n_pairs]``: their mean and spread, and the
        offset's start at their mean (an affine head only)."""
        if self.affine:
            self.norm.fit(distances.reshape(-1, 1).float())
            with torch.no_grad():
                self.offset.copy_(self.norm.mean[0])

    def distances(self, z: torch.Tensor) -> torch.Tensor:
        """Predicted distances ``[G, G]`` between rows of ``z [G, D]`` (the diagonal is 0)."""
        d = pairwise_distances(z)  # [G, G]
        if not self.affine:
            return d
        eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
        return (torch.exp(self.log_scale) * d + self.offset).masked_fill(eye, 0.0)  # [G, G]

    def spread(self) -> torch.Tensor | None:
        """The train split's distance SD, the unit of the loss (None: the plain head, raw)."""
        return self.norm.std[0] if self.affine else None

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected embeddings ``z [B, D]`` and their distances ``[B, B]`` (under DDP the
        loop gathers ``z`` from every GPU and compares the global batch)."""
        z = self.proj(embedding)  # [B, D]
        return z, self.distances(z)


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


class LinearBase(nn.Module):
    """A linear model on the ASVs of a vocabulary of V: ``intercept + sum_s presence[id_s] +
    weight[id_s] * log1p(count_s) / log1p(depth)`` over a sample's ASVs, ``[B, out_dim]``.

    Its numbers are buffers, not parameters: they are fitted in closed form on the train split
    (:mod:`aam_core.train.linear_base`) before the network trains, and no optimiser moves them.
    Row 0 (an ASV outside the vocabulary, and padding) stays zero. A checkpoint written before
    the presence term holds ``weight`` alone (the log term, then trained with the network).
    """

    weight: torch.Tensor
    presence: torch.Tensor | None
    intercept: torch.Tensor | None

    def __init__(self, vocabulary: int, out_dim: int, *, presence: bool) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(vocabulary + 1, out_dim))
        # None buffers are left out of the state dict (checkpoints without the presence term)
        self.register_buffer("presence", torch.zeros(vocabulary + 1, out_dim) if presence else None)
        self.register_buffer("intercept", torch.zeros(out_dim) if presence else None)

    def forward(
        self, identity: torch.Tensor, log_counts: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """``identity [B, S]`` (vocabulary rows, 0: none), ``log_counts [B, S]`` (log1p of
        each slot's reads), ``mask [B, S]``."""
        # in fp32 (or the buffers' float64, at exact prediction) under bf16 autocast too: the
        # base was fitted in float64, and bf16's 8-bit mantissa would move epoch 0 away from it
        dtype = torch.promote_types(self.weight.dtype, torch.float32)
        with torch.autocast(identity.device.type, enabled=False):
            counts = torch.expm1(log_counts.to(dtype)) * mask  # [B, S]
            depth = torch.log1p(counts.sum(-1, keepdim=True)).clamp_min(1e-6)  # [B, 1]
            scale = log_counts.to(dtype) * mask / depth  # [B, S], in [0, 1]
            out = torch.einsum("bs,bso->bo", scale, self.weight[identity].to(dtype))
            if self.presence is not None and self.intercept is not None:
                present = mask.to(dtype)  # [B, S]
                out = out + torch.einsum("bs,bso->bo", present, self.presence[identity].to(dtype))
                out = out + self.intercept.to(dtype)
        return out  # [B, out_dim]


class TargetHead(nn.Module):
    """Attention pooling over ASV states (and with ``pooling="attention+abundance"`` the
    abundance-weighted mean of the states beside it) -> MLP -> out_dim (values or logits).

    With ``config.linear`` and a vocabulary, :class:`LinearBase` is added to the MLP's output.
    With its presence term (``linear_features="presence+log"``) the MLP's last layer starts at
    zero: the model begins as its fitted linear base, and the network learns what that leaves.
    """

    def __init__(self, dim: int, config: TargetConfig, *, vocabulary: int = 0) -> None:
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
        self.linear: LinearBase | None = None
        rows = config.vocabulary or vocabulary
        if config.linear and rows > 0:
            fitted = config.linear_features == "presence+log"
            self.linear = LinearBase(rows, config.out_dim, presence=fitted)
            if fitted:
                last = self.mlp[-1]
                assert isinstance(last, nn.Linear)
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    @property
    def fitted_base(self) -> LinearBase | None:
        """The linear base when it is fitted before training (it has the presence term)."""
        return self.linear if self.linear is not None and self.linear.presence is not None else None

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
        base = self.linear(identity, log_counts, mask)  # fp32, even under bf16 autocast
        dtype = torch.promote_types(out.dtype, base.dtype)
        return out.to(dtype) + base.to(dtype)  # [B, out_dim]
