"""Samples and batches for the model.

A batch holds the token rows of its *distinct* ASVs only (``[U, L]``) plus an index map
``[B, S]`` into them, so the nucleotide encoder runs once per distinct ASV. ``S`` is the
batch's largest sample (capped at ``token_limit``), never the token limit itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import Dataset

from aam_core.data.ragged import ragged_positions
from aam_core.data.rarefy import rarefy, sample_rng, subsample_row
from aam_core.data.selection import (
    N_ABUNDANCE_FEATURES,
    abundance_features,
    select_asvs,
    sequence_ranks,
)
from aam_core.data.tokens import PAD
from aam_core.data.unifrac import UniFracEngine
from aam_core.io.types import FeatureTable


@dataclass(frozen=True, eq=False)
class Sample:
    row: int  # row of the sample in the dataset's table
    sample_id: str
    features: np.ndarray  # int64 [k]: every ASV of the sample, in rank order (count desc, seq)
    counts: np.ndarray  # int64 [k]: reads after rarefaction, same order
    target: float | int | np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Batch:
    tokens: torch.Tensor  # int64 [U, L]: the batch's distinct ASVs (L = longest of them)
    asv_index: torch.Tensor  # int64 [B, S]: row of `tokens` for each slot, -1 = padding
    abundance: torch.Tensor  # float32 [B, S, 2]: log1p(count), count / depth
    mask: torch.Tensor  # bool [B, S]: True for a real ASV slot
    rows: torch.Tensor  # int64 [B]: rows of the samples in the dataset's table
    sample_ids: tuple[str, ...]
    counts: sp.csr_matrix  # int64 [B, n_features]: all rarefied reads (for UniFrac)
    target: torch.Tensor | None = None  # float32 [B] / [B, k] or int64 [B] (class index)
    unifrac: torch.Tensor | None = None  # [B, B] distances from the engine
    faith_pd: torch.Tensor | None = None  # [B]
    identity: torch.Tensor | None = None  # int64 [B, S]: row of the ASV vocabulary, 0 = none
    # The flat indices of the real positions in ``U * L`` (tokens) and ``B * S`` (slots), set
    # when padding is a large share of them: the encoders then run packed (less work).
    token_positions: torch.Tensor | None = None  # int64 [n_real_tokens]
    slot_positions: torch.Tensor | None = None  # int64 [n_real_slots]

    @property
    def size(self) -> int:
        return int(self.asv_index.shape[0])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return replace(
            self,
            tokens=self.tokens.to(device, non_blocking=non_blocking),
            asv_index=self.asv_index.to(device, non_blocking=non_blocking),
            abundance=self.abundance.to(device, non_blocking=non_blocking),
            mask=self.mask.to(device, non_blocking=non_blocking),
            rows=self.rows.to(device, non_blocking=non_blocking),
            target=move(self.target),
            unifrac=move(self.unifrac),
            faith_pd=move(self.faith_pd),
            identity=move(self.identity),
            token_positions=move(self.token_positions),
            slot_positions=move(self.slot_positions),
        )


# A batch whose real tokens (or ASV slots) fill less than this share of the padded tensor runs
# its encoder packed; above it, packing's gathers would cost more than the padding it skips.
PACK_BELOW = 0.85


class SampleDataset(Dataset[Sample]):
    """The samples of one table, rarefied to ``depth`` (samples below it must be removed
    beforehand, e.g. with :func:`aam_core.data.rarefy.rarefy`, which lists them).

    ``depth=None`` serves counts as they are. With ``rerarefy=True`` every epoch draws a new
    rarefaction (seeded by seed, epoch and row; call :meth:`set_epoch`).

    ``sequences`` (one per feature) break ties in count when ASVs are ranked, as prediction
    does. The default, the table's feature IDs, is right when the IDs are the sequences; with
    hashed IDs (QIIME 2) ties would follow the hashes: still not file order, but not the order
    prediction uses.
    """

    def __init__(
        self,
        table: FeatureTable,
        *,
        depth: int | None = None,
        seed: int = 0,
        rerarefy: bool = False,
        targets: Sequence[float | int] | np.ndarray | None = None,
        sequences: Sequence[str] | None = None,
    ) -> None:
        if sequences is not None and len(sequences) != table.n_features:
            raise ValueError(
                f"number of sequences ({len(sequences)}) must match number of features "
                f"({table.n_features})"
            )
        if targets is not None and len(targets) != table.n_samples:
            raise ValueError(
                f"number of targets ({len(targets)}) must match number of samples "
                f"({table.n_samples})"
            )
        if depth is not None:
            shallow = np.flatnonzero(table.depths() < depth)
            if shallow.size:
                raise ValueError(
                    f"{shallow.size} samples have fewer than {depth} reads; rarefy first"
                )
        self.table = table
        self.depth = depth
        self.seed = seed
        self.rerarefy = rerarefy
        self.targets = None if targets is None else np.asarray(targets)
        self.ranks = sequence_ranks(table.feature_ids if sequences is None else sequences)
        self.epoch = 0
        self._static = table  # the counts served when they are drawn once (or not at all)
        self._ranked: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if depth is None or not rerarefy:
            if depth is not None:
                self._static = rarefy(table, depth, seed=seed).table
            self._ranked = rank_order(self._static.counts, self.ranks)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.table.n_samples

    def __getitem__(self, row: int) -> Sample:
        if self._ranked is not None:  # ranked once, when the dataset was built
            indptr, all_features, all_counts = self._ranked
            lo, hi = indptr[row], indptr[row + 1]
            features, counts = all_features[lo:hi], all_counts[lo:hi]
        else:
            assert self.depth is not None
            csr = self.table.counts
            lo, hi = csr.indptr[row], csr.indptr[row + 1]
            drawn = subsample_row(
                csr.data[lo:hi], self.depth, sample_rng(self.seed, row, self.epoch)
            )
            kept = drawn > 0
            features, counts = select_asvs(
                csr.indices[lo:hi][kept], drawn[kept], ranks=self.ranks, token_limit=int(hi - lo)
            )
        target = None if self.targets is None else self.targets[row]
        return Sample(row, self.table.sample_ids[row], features, counts, target)


def rank_order(
    counts: sp.csr_matrix, ranks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every sample's ASVs in rank order (as :func:`select_asvs` orders one sample), for a
    whole table at once: ``indptr [n + 1]``, ``features int64 [nnz]``, ``counts int64 [nnz]``;
    sample ``i`` is ``[indptr[i], indptr[i + 1])``."""
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))  # [nnz]
    order = np.lexsort((ranks[counts.indices], -counts.data, rows))  # row, count desc, sequence
    features = counts.indices[order].astype(np.int64)
    return counts.indptr.astype(np.int64), features, counts.data[order].astype(np.int64)


class Collator:
    """Turns samples into a :class:`Batch`: distinct ASVs, index map, abundance features,
    targets, and (with an engine) the batch's UniFrac distances and Faith PD."""

    def __init__(
        self,
        tokens: np.ndarray,
        *,
        token_limit: int = 1024,
        engine: UniFracEngine | None = None,
        distances: np.ndarray | None = None,
        faith_pd: np.ndarray | None = None,
        target_dtype: torch.dtype = torch.float32,
        vocabulary: np.ndarray | None = None,
    ) -> None:
        """``distances``: a precomputed UniFrac matrix ``[n, n]`` over the dataset's rows, used
        instead of an engine, and ``faith_pd [n]`` beside it (else no Faith PD).
        ``vocabulary``: int64 ``[n_features]``, each feature's row of the model's ASV
        vocabulary (0: not in it)."""
        if token_limit < 1:
            raise ValueError(f"token_limit must be >= 1, got {token_limit}")
        if engine is not None and distances is not None:
            raise ValueError("give an engine or precomputed distances, not both")
        if faith_pd is not None and distances is None:
            raise ValueError("precomputed Faith PD comes with precomputed distances")
        self.distances = distances
        self.faith_pd = faith_pd
        self.tokens = tokens  # uint8 [n_features, max_bp]
        self.lengths = (tokens != PAD).sum(axis=1)  # [n_features]: each ASV's length
        self.token_limit = token_limit
        self.engine = engine
        self.target_dtype = target_dtype
        self.vocabulary = vocabulary

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        n = len(samples)
        sizes = np.fromiter((len(s.features) for s in samples), dtype=np.int64, count=n)  # [B]
        all_features = np.concatenate([s.features for s in samples])  # [sum sizes]
        all_counts = np.concatenate([s.counts for s in samples])  # [sum sizes]
        kept = np.minimum(sizes, self.token_limit)  # [B]: slots of each sample
        width = max(1, int(kept.max()))
        # (sample, slot) of every kept ASV, and its position in the concatenated samples
        slot_row, slot_col = ragged_positions(kept)  # [K] each
        source = np.repeat(np.cumsum(sizes) - sizes, kept) + slot_col  # [K]
        features = all_features[source]  # [K]
        # the batch's distinct ASVs: mark the features present, number them in feature order
        present = np.zeros(self.tokens.shape[0], dtype=bool)  # [n_features]
        present[features] = True
        distinct = np.flatnonzero(present)  # [U]
        inverse = (np.cumsum(present) - 1)[features]  # [K]: row of each slot's ASV
        asv_index = np.full((n, width), -1, dtype=np.int64)  # [B, S]
        asv_index[slot_row, slot_col] = inverse
        # abundance features: log1p(count) and count / the sample's total reads (all its ASVs,
        # not only the kept ones, so truncation does not inflate abundances)
        owner = np.repeat(np.arange(n), sizes)  # [sum sizes]: sample of each ASV
        depths = np.bincount(owner, weights=all_counts, minlength=n)  # float64 [B]
        abundance = np.zeros((n, width, N_ABUNDANCE_FEATURES), dtype=np.float32)  # [B, S, 2]
        abundance[slot_row, slot_col] = abundance_features(all_counts[source], depths[slot_row])
        token_rows, token_positions = self._token_rows(distinct)  # [U, L], [T] or None
        slot_positions = None
        if kept.sum() < PACK_BELOW * n * width:
            slot_positions = slot_row * width + slot_col

        counts = sp.csr_matrix(
            (all_counts, all_features, np.concatenate([[0], np.cumsum(sizes)])),
            shape=(n, self.tokens.shape[0]),
        )  # [B, n_features]
        rows = np.fromiter((s.row for s in samples), dtype=np.int64, count=n)  # [B]
        unifrac, faith = self._phylogeny(counts, rows)
        identity = None
        if self.vocabulary is not None:
            identity = np.zeros((n, width), dtype=np.int64)  # [B, S]; 0 = none or padding
            identity[slot_row, slot_col] = self.vocabulary[features]
        return Batch(
            tokens=torch.from_numpy(token_rows.astype(np.int64)),
            asv_index=torch.from_numpy(asv_index),
            abundance=torch.from_numpy(abundance),
            mask=torch.from_numpy(asv_index >= 0),
            rows=torch.from_numpy(rows),
            sample_ids=tuple(s.sample_id for s in samples),
            counts=counts,
            target=self._targets(samples),
            unifrac=unifrac,
            faith_pd=faith,
            identity=None if identity is None else torch.from_numpy(identity),
            token_positions=None if token_positions is None else torch.from_numpy(token_positions),
            slot_positions=None if slot_positions is None else torch.from_numpy(slot_positions),
        )

    def _token_rows(self, distinct: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The tokens of the batch's ``distinct [U]`` ASVs, ``uint8 [U, L]`` trimmed to the
        longest, and the flat positions ``[T]`` of their real tokens in it when packing them
        pays (else None)."""
        lengths = self.lengths[distinct]  # [U]
        length = max(1, int(lengths.max(initial=0)))
        token_rows = self.tokens[distinct, :length]  # [U, L]
        positions = None
        if lengths.sum() < PACK_BELOW * lengths.size * length:
            token_row, token_col = ragged_positions(lengths)
            positions = token_row * length + token_col  # [T]
        return token_rows, positions

    def _phylogeny(
        self, counts: sp.csr_matrix, rows: np.ndarray
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The batch's UniFrac distances ``float64 [B, B]`` and Faith PD ``[B]``, from the
        engine or the precomputed ones; None for what the collator has not."""
        unifrac = faith = None
        if self.engine is not None:
            unifrac, faith = self.engine.unweighted_and_faith_pd(counts)
        elif self.distances is not None:
            unifrac = self.unifrac(counts, rows)
            if self.faith_pd is not None:
                faith = torch.from_numpy(self.faith_pd[rows].astype(np.float64))
        return unifrac, faith

    def unifrac(self, counts: sp.csr_matrix, rows: np.ndarray) -> torch.Tensor | None:
        """UniFrac distances ``float64 [n, n]`` between the samples of ``counts [n,
        n_features]`` (rarefied reads), which are the dataset's ``rows [n]``: from the engine
        or the precomputed matrix; None when the collator has neither."""
        if self.engine is not None:
            return self.engine.unweighted(counts)
        if self.distances is not None:
            return torch.from_numpy(self.distances[np.ix_(rows, rows)].astype(np.float64))
        return None

    def _targets(self, samples: Sequence[Sample]) -> torch.Tensor | None:
        values = [s.target for s in samples]
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise ValueError("a batch mixes samples with and without a target")
        return torch.as_tensor(np.asarray(values), dtype=self.target_dtype)
