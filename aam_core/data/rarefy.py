"""Seeded rarefaction (subsampling without replacement) and the default-depth rule.

Training seeds each sample's draw from its row (any subset of a dataset reproduces); prediction
seeds it from the sample's content (:func:`content_rng`), so that a sample is subsampled the
same way whatever other samples share its table (docs/design.md section 13.2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from aam_core.io.types import FeatureTable

DEFAULT_DEPTH = 5000
DROP_LIMIT_PERCENT = 10  # the default depth may drop at most this share of samples


@dataclass(frozen=True)
class DepthChoice:
    depth: int
    note: str | None  # set when the default was lowered to keep 90% of samples


@dataclass(frozen=True, eq=False)
class Rarefied:
    table: FeatureTable  # only the kept samples, each with exactly ``depth`` reads
    depth: int
    kept_rows: np.ndarray  # int64 [n_kept]: rows of the input table
    dropped: tuple[str, ...]  # sample IDs below the depth
    note: str | None = None


def choose_depth(
    depths: np.ndarray, requested: int | None = None, *, default: int = DEFAULT_DEPTH
) -> DepthChoice:
    """Rarefaction depth: an explicit request always wins; else ``default`` unless that drops
    more than 10% of samples, in which case the largest depth that keeps 90% of them."""
    depths = np.asarray(depths, dtype=np.int64)
    if requested is not None:
        if requested < 1:
            raise ValueError(f"rarefaction depth must be >= 1, got {requested}")
        return DepthChoice(int(requested), None)
    if depths.size == 0:
        raise ValueError("cannot choose a rarefaction depth for a table with no samples")
    n_below = int((depths < default).sum())
    if n_below * 100 <= DROP_LIMIT_PERCENT * depths.size:  # integers: no rounding at 10%
        return DepthChoice(default, None)
    # sorted[k] with k = floor(10% of n) keeps n - k >= 90% of samples; sorted[k] + 1 would not.
    ordered = np.sort(depths)
    depth = max(int(ordered[DROP_LIMIT_PERCENT * depths.size // 100]), 1)
    note = (
        f"default depth {default} would drop {n_below} of {depths.size} samples; "
        f"rarefied to {depth} instead (the largest depth that keeps 90% of samples)"
    )
    return DepthChoice(depth, note)


# numpy's hypergeometric draws take fewer than 10^9 reads in all; a table may hold 10^12.
MARGINALS_LIMIT = 10**9


def subsample_row(counts: np.ndarray, depth: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``depth`` reads without replacement from one sample's nonzero counts."""
    counts = counts.astype(np.int64)
    total = int(counts.sum())
    if total < MARGINALS_LIMIT:
        return rng.multivariate_hypergeometric(counts, depth, method="marginals")
    # The same draw for deeper samples: ``depth`` distinct read positions out of ``total``
    # (Floyd's algorithm, O(depth) memory), each assigned to the feature whose reads hold it.
    reads = rng.choice(total, size=depth, replace=False)  # (depth,)
    owners = np.searchsorted(np.cumsum(counts), reads, side="right")  # (depth,)
    return np.bincount(owners, minlength=counts.size).astype(np.int64)  # (n_features,)


def sample_rng(seed: int, row: int, epoch: int = 0) -> np.random.Generator:
    """One generator per (seed, epoch, sample row): any subset of samples reproduces."""
    if 0 <= min(seed, epoch, row) and max(seed, epoch, row) < 2**32:
        # The same entropy words as the list gives (one word per value below 2^32), without
        # numpy's conversion of each Python int: 12 us a generator instead of 17.
        return np.random.default_rng(np.array([seed, epoch, row], dtype=np.uint32))
    return np.random.default_rng([seed, epoch, row])


def content_rng(
    sequences: Sequence[str], counts: np.ndarray, seed: int, draw: int = 0
) -> np.random.Generator:
    """One generator per (seed, draw, sample content): the content is the sample's
    (sequence, count) pairs, which the caller gives in a canonical order (sorted by sequence,
    then count) and must draw in that order too, since a draw assigns reads by position.

    The digest is BLAKE2b, not Python's ``hash``, which is salted per process."""
    digest = hashlib.blake2b(digest_size=16)
    for sequence, count in zip(sequences, counts, strict=True):
        digest.update(f"{sequence.upper()}\t{int(count)}\n".encode())
    return np.random.default_rng([seed, draw, int.from_bytes(digest.digest(), "little")])


def rarefy_by_content(
    features: np.ndarray,
    counts: np.ndarray,
    depth: int,
    *,
    sequences: Sequence[str],
    ranks: np.ndarray,
    seed: int,
    draw: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Subsample one sample (``features``: indices into ``sequences`` and ``ranks``, the
    table's :func:`~aam_core.data.selection.sequence_ranks`) to ``depth`` reads, seeded by its
    content: the same sample gives the same reads in any table and any feature order.

    Returns the features with reads and their drawn counts, sorted by sequence."""
    order = np.lexsort((counts, ranks[features]))  # by sequence, then count
    features, counts = features[order], counts[order]
    rng = content_rng([sequences[j] for j in features], counts, seed, draw)
    drawn = subsample_row(counts, depth, rng)
    kept = drawn > 0
    return features[kept], drawn[kept]


def rarefy(
    table: FeatureTable, depth: int | None = None, *, seed: int = 0, epoch: int = 0
) -> Rarefied:
    """Subsample every sample to the same depth; samples below it are dropped and listed."""
    depths = table.depths()
    choice = choose_depth(depths, depth)
    kept_rows = np.flatnonzero(depths >= choice.depth).astype(np.int64)
    dropped = tuple(table.sample_ids[i] for i in np.flatnonzero(depths < choice.depth))
    csr = table.counts
    parts_data: list[np.ndarray] = []
    parts_idx: list[np.ndarray] = []
    indptr = [0]
    for row in kept_rows:
        lo, hi = csr.indptr[row], csr.indptr[row + 1]
        drawn = subsample_row(csr.data[lo:hi], choice.depth, sample_rng(seed, int(row), epoch))
        nz = drawn > 0
        parts_data.append(drawn[nz])
        parts_idx.append(csr.indices[lo:hi][nz])
        indptr.append(indptr[-1] + int(nz.sum()))
    data = np.concatenate(parts_data) if parts_data else np.empty(0, dtype=np.int64)
    indices = np.concatenate(parts_idx) if parts_idx else np.empty(0, dtype=np.int32)
    counts = sp.csr_matrix(
        (data, indices, np.asarray(indptr)), shape=(kept_rows.size, table.n_features)
    )
    kept = FeatureTable(
        sample_ids=tuple(table.sample_ids[i] for i in kept_rows),
        feature_ids=table.feature_ids,
        counts=counts,
        source=table.source,
    )
    return Rarefied(kept, choice.depth, kept_rows, dropped, choice.note)
