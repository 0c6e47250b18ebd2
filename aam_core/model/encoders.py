"""Nucleotide encoder (one ASV sequence -> one vector) and sample encoder (ASVs -> sample)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from aam_core.data.tokens import PAD
from aam_core.model.blocks import AttentionPool, Transformer, hide_identities
from aam_core.model.config import NucleotideEncoderConfig, SampleEncoderConfig

# Size of the largest tensor of a chunk of the nucleotide encoder on the CPU (its feed-forward
# layer's: ffn_mult x dim floats a position): 54 ASVs of 150 bp at the default width.
CPU_CHUNK_BYTES = 16 * 2**20


@dataclass(frozen=True, eq=False)
class NucleotideOutput:
    vectors: torch.Tensor  # [U, D]: one vector per encoded ASV
    states: torch.Tensor  # [U, L, D]: per-position states (for the masked-nucleotide head)


class NucleotideEncoder(nn.Module):
    """Token + learned position embedding -> transformer -> attention pool -> LayerNorm."""

    def __init__(self, config: NucleotideEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.token = nn.Embedding(config.vocab_size, config.dim, padding_idx=PAD)
        self.position = nn.Embedding(config.max_bp, config.dim)
        self.transformer = Transformer(
            config.dim, config.heads, config.layers, config.ffn_mult, config.dropout
        )
        self.pool = AttentionPool(config.dim)
        self.norm = nn.LayerNorm(config.dim)

    def forward(
        self, tokens: torch.Tensor, positions: torch.Tensor | None = None
    ) -> NucleotideOutput:
        """``positions``: the flat indices of the real (not padding) positions of ``tokens``
        in ``U * L``, to run the transformer packed (see :class:`Transformer`).

        On the CPU the ASVs go through in chunks of about ``CPU_CHUNK_BYTES`` (each
        ASV is encoded on its own, so the result is the same): the tensors of a chunk stay
        small enough for the allocator to reuse their memory, where tensors of hundreds of MB
        are mapped and zeroed again by the kernel at every step."""
        u, length = tokens.shape  # tokens: int64 [U, L]
        if length > self.config.max_bp:
            raise ValueError(f"sequences of {length} bp exceed max_bp={self.config.max_bp}")
        widest = self.config.ffn_mult * self.config.dim * 4  # bytes of a position's FFN layer
        rows = max(1, CPU_CHUNK_BYTES // (length * widest))  # ASVs per chunk
        if tokens.device.type != "cpu" or u <= rows:
            return self._encode(tokens, positions)
        bounds = range(0, u, rows)
        if positions is not None:  # each chunk's own flat positions
            cuts = torch.searchsorted(positions, torch.tensor([*bounds, u]) * length).tolist()
        parts = [
            self._encode(
                tokens[lo : lo + rows],
                None if positions is None else positions[cuts[i] : cuts[i + 1]] - lo * length,
            )
            for i, lo in enumerate(bounds)
        ]
        return NucleotideOutput(
            torch.cat([p.vectors for p in parts]), torch.cat([p.states for p in parts])
        )

    def _encode(self, tokens: torch.Tensor, positions: torch.Tensor | None) -> NucleotideOutput:
        _u, length = tokens.shape  # tokens: int64 [U, L]
        valid = tokens != PAD  # [U, L]
        offsets = torch.arange(length, device=tokens.device)  # [L]
        x = self.token(tokens) + self.position(offsets)[None]  # [U, L, D]
        states = self.transformer(x, valid, positions)  # [U, L, D]
        return NucleotideOutput(self.norm(self.pool(states, valid)), states)


@dataclass(frozen=True, eq=False)
class SampleOutput:
    states: torch.Tensor  # [B, S, D]: ASV states in sample context
    embedding: torch.Tensor  # [B, D]: sample embedding


class SampleEncoder(nn.Module):
    """ASV vector + Linear(abundance features) + rank-position embedding -> transformer ->
    ASV states; attention pooling -> sample embedding.

    ``hidden`` marks ASV slots whose abundance input is replaced by a learned mask vector
    (the masked-abundance task), so the model must infer their abundance from context.
    """

    def __init__(self, config: SampleEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.abundance = nn.Linear(config.abundance_features, config.dim)
        self.abundance_mask = nn.Parameter(torch.zeros(config.dim))
        self.rank = nn.Embedding(config.token_limit, config.dim)
        self.identity: nn.Embedding | None = None
        if config.vocabulary:  # row 0: an ASV outside the vocabulary (or padding), always zero
            self.identity = nn.Embedding(config.vocabulary + 1, config.dim, padding_idx=0)
            nn.init.normal_(self.identity.weight, std=0.02)
            with torch.no_grad():
                self.identity.weight[0].zero_()
        self.transformer = Transformer(
            config.dim, config.heads, config.layers, config.ffn_mult, config.dropout
        )
        self.pool = AttentionPool(config.dim)
        self.richness: nn.Linear | None = None
        if config.richness:  # starts at zero: log richness (~4) would swamp the pooled states
            self.richness = nn.Linear(1, config.dim)
            nn.init.zeros_(self.richness.weight)
            nn.init.zeros_(self.richness.bias)

    def forward(
        self,
        asv_vectors: torch.Tensor,
        abundance: torch.Tensor,
        mask: torch.Tensor,
        hidden: torch.Tensor | None = None,
        identity: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> SampleOutput:
        """``identity [B, S]``: each slot's row of the ASV vocabulary (0: none); used when the
        encoder has a vocabulary. ``positions``: the flat indices of the real slots in
        ``B * S``, to run the transformer packed (see :class:`Transformer`)."""
        _b, s, _ = asv_vectors.shape  # asv_vectors: [B, S, D], abundance: [B, S, F], mask: [B, S]
        if s > self.config.token_limit:
            raise ValueError(f"{s} ASVs per sample exceed token_limit={self.config.token_limit}")
        abundance_in = self.abundance(abundance)  # [B, S, D]
        if hidden is not None:
            abundance_in = torch.where(hidden[..., None], self.abundance_mask, abundance_in)
        ranks = torch.arange(s, device=asv_vectors.device)  # [S]
        x = asv_vectors + abundance_in + self.rank(ranks)[None]  # [B, S, D]
        if self.identity is not None and identity is not None:
            rate = self.config.identity_dropout if self.training else 0.0
            # hide some identities so the sequence path learns to stand on its own (an ASV
            # never seen in training has only its sequence), and scale the others up as
            # dropout does: evaluation sees every identity, as many as training on average
            identity = hide_identities(identity, rate)  # [B, S]
            x = x + self.identity(identity) / (1.0 - rate)  # [B, S, D]
        x = x * mask[..., None]  # padding slots carry nothing
        states = self.transformer(x, mask, positions)  # [B, S, D]
        embedding = self.pool(states, mask)  # [B, D]
        if self.richness is not None:
            n_asvs = mask.sum(-1, keepdim=True).clamp_min(1).to(embedding.dtype)  # [B, 1]
            embedding = embedding + self.richness(torch.log(n_asvs))  # [B, D]
        return SampleOutput(states, embedding)
