"""The AAM models: ``SequenceEncoder`` (pretraining) and ``SequenceRegressor`` (a regressor or
classifier composing a SequenceEncoder)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from aam_core.data.batching import Batch
from aam_core.model.blocks import Standardizer
from aam_core.model.config import AAMConfig, ConfigError
from aam_core.model.encoders import NucleotideEncoder, SampleEncoder
from aam_core.model.heads import NucleotideHead, ScalarHead, TargetHead, UniFracHead
from aam_core.model.masking import choose_hidden_slots, corrupt_nucleotides


@dataclass(frozen=True, eq=False)
class Encoded:
    asv_states: torch.Tensor  # [B, S, D]
    embedding: torch.Tensor  # [B, D]
    nucleotide_logits: torch.Tensor | None = None  # [U, L, 4]
    nucleotide_targets: torch.Tensor | None = None  # [U, L]: 0..3 where masked, else IGNORE


@dataclass(frozen=True, eq=False)
class ModelOutput:
    embedding: torch.Tensor  # [B, D]
    unifrac: torch.Tensor | None = None  # [B, B] predicted distances
    unifrac_z: torch.Tensor | None = None  # [B, D] the UniFrac head's projected embeddings
    faith_pd: torch.Tensor | None = None  # [B], standardised
    nucleotide_logits: torch.Tensor | None = None  # [U, L, 4]
    nucleotide_targets: torch.Tensor | None = None  # [U, L]: 0..3 where masked, else IGNORE
    count: torch.Tensor | None = None  # [n_hidden] predicted log relative abundance
    count_targets: torch.Tensor | None = None  # [n_hidden] true log relative abundance
    target: torch.Tensor | None = None  # [B, out_dim]: standardised values, or class logits


class SequenceEncoder(nn.Module):
    """Nucleotide encoder + sample encoder + self-supervised heads (UniFrac, Faith PD,
    masked nucleotides)."""

    kind = "encoder"

    def __init__(self, config: AAMConfig) -> None:
        super().__init__()
        self.config = config
        self.nucleotide = NucleotideEncoder(config.nucleotide)
        self.sample = SampleEncoder(config.sample)
        self.unifrac_head = UniFracHead(config.dim, affine=config.unifrac_head == "affine")
        self.faith_head = ScalarHead(config.dim)
        self.nucleotide_head = NucleotideHead(config.dim)
        self.faith_norm = Standardizer(1)

    def encode(
        self,
        batch: Batch,
        *,
        mask_nucleotides: bool = False,
        hidden: torch.Tensor | None = None,
        dedup: bool = True,
        asv_vectors: torch.Tensor | None = None,
    ) -> Encoded:
        """Encode a batch. ``dedup=False`` encodes every real (sample, ASV) slot separately:
        the reference path that per-batch deduplication must equal.

        ``asv_vectors [U, D]``: the nucleotide encoder's vectors of ``batch.tokens``, computed
        before (a prediction cache); the nucleotide encoder is then skipped. Inference only."""
        if asv_vectors is not None:
            if mask_nucleotides or not dedup:
                raise ValueError("asv_vectors is for inference: no masking, dedup=True")
            rows = asv_vectors[batch.asv_index.clamp_min(0)] * batch.mask[..., None]  # [B, S, D]
            out = self.sample(
                rows, batch.abundance, batch.mask, hidden, batch.identity, batch.slot_positions
            )
            return Encoded(out.states, out.embedding)
        mask = batch.mask  # [B, S]
        if dedup:
            tokens, index = batch.tokens, batch.asv_index  # [U, L], [B, S]
            token_positions = batch.token_positions
        else:
            tokens = batch.tokens[batch.asv_index[mask]]  # [n_slots, L]
            index = torch.full_like(batch.asv_index, -1)
            index[mask] = torch.arange(tokens.shape[0], device=tokens.device)
            token_positions = None  # the reference path: padded throughout
        corruption = None
        if mask_nucleotides:
            corruption = corrupt_nucleotides(tokens, self.config.nucleotide_mask_fraction)
            tokens = corruption.tokens
        nuc = self.nucleotide(tokens, token_positions)  # vectors [U, D], states [U, L, D]
        asv_vectors = nuc.vectors[index.clamp_min(0)] * mask[..., None]  # [B, S, D]
        slot_positions = batch.slot_positions if dedup else None
        out = self.sample(
            asv_vectors, batch.abundance, mask, hidden, batch.identity, slot_positions
        )
        if corruption is None:
            return Encoded(out.states, out.embedding)
        logits = self.nucleotide_head(nuc.states)  # [U, L, 4]; the loss ignores unchosen
        return Encoded(out.states, out.embedding, logits, corruption.targets)

    def heads(self, encoded: Encoded, active: frozenset[str]) -> ModelOutput:
        z = unifrac = None
        if "unifrac" in active:
            z, unifrac = self.unifrac_head(encoded.embedding)
        return ModelOutput(
            embedding=encoded.embedding,
            unifrac=unifrac,
            unifrac_z=z,
            faith_pd=self.faith_head(encoded.embedding) if "faith_pd" in active else None,
            nucleotide_logits=encoded.nucleotide_logits,
            nucleotide_targets=encoded.nucleotide_targets,
        )

    def forward(
        self, batch: Batch, *, dedup: bool = True, asv_vectors: torch.Tensor | None = None
    ) -> ModelOutput:
        active = self.config.loss_weights.active()
        mask_nucleotides = self.training and "nucleotide" in active and asv_vectors is None
        encoded = self.encode(
            batch, mask_nucleotides=mask_nucleotides, dedup=dedup, asv_vectors=asv_vectors
        )
        return self.heads(encoded, active)


class SequenceRegressor(nn.Module):
    """A SequenceEncoder plus masked-abundance (count) and target heads. A regressor when
    ``config.target.task == 'regression'``, a classifier for 'classification'.

    ``freeze_base=True`` freezes the encoder's parameters and keeps it in eval mode (no
    dropout, no masking); only the target head then trains.
    """

    def __init__(
        self, config: AAMConfig, base: SequenceEncoder | None = None, *, freeze_base: bool = False
    ) -> None:
        super().__init__()
        if config.target is None:
            raise ConfigError("a SequenceRegressor needs config.target")
        if freeze_base and config.loss_weights.active() - {"target"}:
            raise ConfigError(
                "with freeze_base only loss_weights.target may be > 0: the frozen encoder "
                "cannot learn the other tasks (and never masks its inputs)"
            )
        self.config = config
        self.freeze_base = freeze_base
        self.base = base if base is not None else SequenceEncoder(config)
        if (
            self.base.config.nucleotide != config.nucleotide
            or self.base.config.sample != config.sample
        ):
            raise ConfigError("the base encoder's architecture differs from config's")
        self.count_head = ScalarHead(config.dim)
        self.target_head = TargetHead(
            config.dim, config.target, vocabulary=config.sample.vocabulary
        )
        self.target_norm = Standardizer(config.target.out_dim)
        if freeze_base:
            self.base.requires_grad_(False)
            self.base.eval()

    @property
    def kind(self) -> str:
        assert self.config.target is not None
        return "regressor" if self.config.target.task == "regression" else "classifier"

    def train(self, mode: bool = True) -> SequenceRegressor:
        super().train(mode)
        if self.freeze_base:
            self.base.eval()  # dropout and masking stay off in a frozen encoder
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def forward(
        self, batch: Batch, *, dedup: bool = True, asv_vectors: torch.Tensor | None = None
    ) -> ModelOutput:
        """``asv_vectors``: see :meth:`SequenceEncoder.encode` (inference only)."""
        active = self.config.loss_weights.active() | {"target"}
        training = self.training and not self.freeze_base and asv_vectors is None
        hidden = None
        if training and "count" in active:
            hidden = choose_hidden_slots(batch.mask, self.config.count_mask_fraction)  # [B, S]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_base):
            encoded = self.base.encode(
                batch,
                mask_nucleotides=training and "nucleotide" in active,
                hidden=hidden,
                dedup=dedup,
                asv_vectors=asv_vectors,
            )
            out = self.base.heads(encoded, active)
        count = count_targets = None
        if hidden is not None:
            count = self.count_head(encoded.asv_states[hidden])  # [n_hidden]
            relative = batch.abundance[..., 1][hidden]  # [n_hidden]
            count_targets = torch.log(relative.clamp_min(1e-12))
        return ModelOutput(
            embedding=out.embedding,
            unifrac=out.unifrac,
            unifrac_z=out.unifrac_z,
            faith_pd=out.faith_pd,
            nucleotide_logits=out.nucleotide_logits,
            nucleotide_targets=out.nucleotide_targets,
            count=count,
            count_targets=count_targets,
            # [B, out_dim]; abundance[..., 1] is each slot's share of the sample's reads
            target=self.target_head(
                encoded.asv_states,
                batch.mask,
                batch.abundance[..., 1],
                batch.abundance[..., 0],
                batch.identity,
            ),
        )
