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
        )


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
        self._static = table
        if depth is not None and not rerarefy:
            self._static = rarefy(table, depth, seed=seed).table

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.table.n_samples

    def __getitem__(self, row: int) -> Sample:
        if self.depth is not None and self.rerarefy:
            csr = self.table.counts
            lo, hi = csr.indptr[row], csr.indptr[row + 1]
            drawn = subsample_row(
                csr.data[lo:hi], self.depth, sample_rng(self.seed, row, self.epoch)
            )
            features, counts = csr.indices[lo:hi][drawn > 0], drawn[drawn > 0]
        else:
            csr = self._static.counts
            lo, hi = csr.indptr[row], csr.indptr[row + 1]
            features, counts = csr.indices[lo:hi], csr.data[lo:hi]
        features, counts = select_asvs(
            features, counts, ranks=self.ranks, token_limit=len(features)
        )
        target = None if self.targets is None else self.targets[row]
        return Sample(row, self.table.sample_ids[row], features, counts.astype(np.int64), target)


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
        target_dtype: torch.dtype = torch.float32,
        vocabulary: np.ndarray | None = None,
    ) -> None:
        """``distances``: a precomputed UniFrac matrix ``[n, n]`` over the dataset's rows, used
        instead of an engine (then no Faith PD). ``vocabulary``: int64 ``[n_features]``, each
        feature's row of the model's ASV vocabulary (0: not in it)."""
        if token_limit < 1:
            raise ValueError(f"token_limit must be >= 1, got {token_limit}")
        if engine is not None and distances is not None:
            raise ValueError("give an engine or precomputed distances, not both")
        self.distances = distances
        self.tokens = tokens  # uint8 [n_features, max_bp]
        self.token_limit = token_limit
        self.engine = engine
        self.target_dtype = target_dtype
        self.vocabulary = vocabulary

    def __call__(self, samples: Sequence[Sample]) -> Batch:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        kept = [s.features[: self.token_limit] for s in samples]
        width = max(1, max(len(k) for k in kept))
        distinct, inverse = np.unique(np.concatenate(kept), return_inverse=True)  # [U], [sum k]
        n = len(samples)
        asv_index = np.full((n, width), -1, dtype=np.int64)  # [B, S]
        abundance = np.zeros((n, width, N_ABUNDANCE_FEATURES), dtype=np.float32)  # [B, S, 2]
        offset = 0
        for i, (s, k) in enumerate(zip(samples, kept, strict=True)):
            asv_index[i, : len(k)] = inverse[offset : offset + len(k)]
            abundance[i, : len(k)] = abundance_features(s.counts[: len(k)], float(s.counts.sum()))
            offset += len(k)
        distinct_tokens = self.tokens[distinct]  # [U, max_bp], right-padded
        length = max(1, int((distinct_tokens != PAD).sum(axis=1).max(initial=0)))
        token_rows = distinct_tokens[:, :length]  # [U, L]: trimmed to the longest ASV

        counts = sp.csr_matrix(
            (
                np.concatenate([s.counts for s in samples]),
                np.concatenate([s.features for s in samples]),
                np.concatenate([[0], np.cumsum([len(s.features) for s in samples])]),
            ),
            shape=(n, self.tokens.shape[0]),
        )  # [B, n_features]
        unifrac = faith = None
        if self.engine is not None:
            unifrac, faith = self.engine.unweighted_and_faith_pd(counts)
        elif self.distances is not None:
            rows = np.array([s.row for s in samples])
            unifrac = torch.from_numpy(self.distances[np.ix_(rows, rows)].astype(np.float64))
        return Batch(
            tokens=torch.from_numpy(token_rows.astype(np.int64)),
            asv_index=torch.from_numpy(asv_index),
            abundance=torch.from_numpy(abundance),
            mask=torch.from_numpy(asv_index >= 0),
            rows=torch.tensor([s.row for s in samples], dtype=torch.int64),
            sample_ids=tuple(s.sample_id for s in samples),
            counts=counts,
            target=self._targets(samples),
            unifrac=unifrac,
            faith_pd=faith,
            identity=self._identity(kept, width),
        )

    def _identity(self, kept: Sequence[np.ndarray], width: int) -> torch.Tensor | None:
        if self.vocabulary is None:
            return None
        identity = np.zeros((len(kept), width), dtype=np.int64)  # [B, S]; 0 = none or padding
        for i, features in enumerate(kept):
            identity[i, : len(features)] = self.vocabulary[features]
        return torch.from_numpy(identity)

    def _targets(self, samples: Sequence[Sample]) -> torch.Tensor | None:
        values = [s.target for s in samples]
        if all(v is None for v in values):
            return None
        if any(v is None for v in values):
            raise ValueError("a batch mixes samples with and without a target")
        return torch.as_tensor(np.asarray(values), dtype=self.target_dtype)
