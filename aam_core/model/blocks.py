"""Building blocks: pre-LayerNorm transformer blocks on ``scaled_dot_product_attention`` with
key-padding masks, and masked attention pooling."""

from __future__ import annotations

import math

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


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, t, d = x.shape  # x: [N, T, D], mask: [N, 1, 1, T] or None (no padding)
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(  # [N, H, T, D/H]
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(n, t, d))  # [N, T, D]


class TransformerBlock(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))``, then ``x + FFN(LN(x))`` with GELU."""

    def __init__(self, dim: int, heads: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim),
            nn.GELU(),
            nn.Linear(ffn_mult * dim, dim),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask))  # [N, T, D]
        return x + self.drop(self.ffn(self.norm2(x)))  # [N, T, D]


class Transformer(nn.Module):
    def __init__(self, dim: int, heads: int, layers: int, ffn_mult: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, ffn_mult, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
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
