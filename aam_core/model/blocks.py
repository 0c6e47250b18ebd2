"""Building blocks: pre-LayerNorm transformer blocks on ``scaled_dot_product_attention`` with
key-padding masks, and masked attention pooling."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(valid: torch.Tensor) -> torch.Tensor:
    """``bool [N, 1, 1, T]`` for SDPA from ``valid [N, T]`` (True = a real key).

    A row with no valid key (all padding) may attend to every position instead, which keeps
    softmax finite; its outputs are padding and ignored by every consumer.
    """
    empty = ~valid.any(dim=-1, keepdim=True)  # [N, 1]
    return (valid | empty)[:, None, None, :]  # [N, 1, 1, T]


@dataclass(frozen=True, eq=False)
class Packing:
    """Where the real positions of a padded ``[N, T, ...]`` tensor lie: ``positions [K]``, their
    flat indices in ``N * T``. Packed tensors ``[K, ...]`` hold only those positions, so the
    per-position layers (projections, feed-forward, norms) never compute padding."""

    positions: torch.Tensor  # int64 [K]
    n: int
    t: int

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, T, C]`` -> ``[K, C]``."""
        return x.reshape(self.n * self.t, x.shape[-1]).index_select(0, self.positions)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``[K, C]`` -> ``[N, T, C]``, zeros at padding."""
        out = x.new_zeros(self.n * self.t, x.shape[-1])
        return out.index_copy(0, self.positions, x).view(self.n, self.t, x.shape[-1])


class SelfAttention(nn.Module):
    """Multi-head self-attention on ``scaled_dot_product_attention``. No dropout on the
    attention weights (the blocks drop out their residual branches): SDPA's fused kernels
    then serve every device, where attention dropout sends the CPU to the unfused path."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, packing: Packing | None = None
    ) -> torch.Tensor:
        """``x [N, T, D]``, or ``[K, D]`` packed by ``packing``; ``mask [N, 1, 1, T]`` or None
        (no padding). Returns the same layout as ``x``."""
        d = x.shape[-1]
        qkv = self.qkv(x)  # [N, T, 3D] or [K, 3D]
        if packing is not None:
            qkv = packing.pad(qkv)  # [N, T, 3D]: attention itself runs padded
        n, t, _ = qkv.shape
        q, k, v = qkv.view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if q.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # bf16 on the CPU: the projections run in bf16, attention itself in fp32 (the CPU's
            # bf16 attention backward is several times slower than its fp32 one)
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [N, H, T, D/H]
        y = y.transpose(1, 2).reshape(n, t, d)  # [N, T, D]
        if packing is not None:
            y = packing.pack(y)  # [K, D]
        return self.out(y)


class TransformerBlock(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))``, then ``x + FFN(LN(x))`` with GELU."""

    def __init__(self, dim: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim),
            nn.GELU(),
            nn.Linear(ffn_mult * dim, dim),
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, packing: Packing | None = None
    ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask, packing))  # [N, T, D] or [K, D]
        return x + self.drop(self.ffn(self.norm2(x)))


class Transformer(nn.Module):
    def __init__(self, dim: int, heads: int, layers: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, ffn_mult, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, valid: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x [N, T, D]``, ``valid [N, T]``. With ``positions`` (the flat indices of the valid
        positions, from the collator) the blocks run packed: the same values at the valid
        positions, zeros at padding, and less work when much of ``x`` is padding."""
        if positions is not None:
            packing = Packing(positions, x.shape[0], x.shape[1])
            h = packing.pack(x)  # [K, D]
            key_mask = attention_mask(valid)  # [N, 1, 1, T]
            for block in self.blocks:
                h = block(h, key_mask, packing)
            return packing.pad(self.norm(h))  # [N, T, D]
        # Without padding no mask is passed (cheaper SDPA on the CPU).
        # On the GPU, checking for padding would cost a host-device sync: always pass the mask.
        no_padding = x.device.type == "cpu" and bool(valid.all())
        mask = None if no_padding else attention_mask(valid)  # [N, 1, 1, T]
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)  # [N, T, D]


class AttentionPool(nn.Module):
    """Masked attention pooling: score = w·h / sqrt(D), softmax over valid positions."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1, bias=False)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        scores = self.score(h).squeeze(-1) * self.scale  # [N, T]
        # A row with no valid position gets finite scores and zero weights: it pools to zeros
        # with finite gradients (softmax over all -inf would be NaN).
        empty = ~valid.any(dim=-1, keepdim=True)  # [N, 1]
        scores = scores.masked_fill(~valid & ~empty, float("-inf"))
        weights = torch.softmax(scores, dim=-1) * valid  # [N, T]
        return torch.einsum("nt,ntd->nd", weights, h)  # [N, D]


def hide_identities(identity: torch.Tensor, rate: float) -> torch.Tensor:
    """``identity [B, S]`` (vocabulary rows) with a random ``rate`` of the slots set to row 0,
    the row of an ASV outside the vocabulary (training only; ``rate`` 0: unchanged)."""
    if rate <= 0:
        return identity
    keep = torch.rand(identity.shape, device=identity.device)
    return identity * (keep >= rate)  # [B, S]


class Standardizer(nn.Module):
    """Train-split mean and std of a value, kept in the state dict (and so in checkpoints)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, size: int = 1) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))

    def fit(self, values: torch.Tensor) -> None:
        """Set mean and std from ``values [n]`` or ``[n, size]`` (a constant gets std 1)."""
        values = values.reshape(values.shape[0], -1).to(self.mean)
        std = (
            values.std(dim=0, unbiased=False) if values.shape[0] > 1 else torch.ones_like(self.std)
        )
        self.mean.copy_(values.mean(dim=0))
        self.std.copy_(torch.where(std > 0, std, torch.ones_like(std)))

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._view(self.mean, x)) / self._view(self.std, x)

    def destandardize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._view(self.std, x) + self._view(self.mean, x)

    @staticmethod
    def _view(stat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return stat if x.ndim > 1 else stat.squeeze(0)
