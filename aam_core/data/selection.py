"""Per-sample ASV selection (top ``token_limit`` by count, in rank order) and abundance features.

Ties in count are broken by the ASV's sequence (docs/design.md section 3.3), never by its index in a
file: the rank position is a model input, so an index tie-break would make a prediction depend
on the order of the table's features.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_ABUNDANCE_FEATURES = 2  # log1p(count), count / depth


def sequence_ranks(sequences: Sequence[str]) -> np.ndarray:
    """``int64 [n_features]``: each feature's rank among the table's distinct sequences, in
    alphabetical order of the uppercase sequence. Equal sequences (two IDs for one ASV, or two
    spellings of its case) share a rank: the model cannot tell them apart either."""
    upper = [s.upper() for s in sequences]
    rank = {s: i for i, s in enumerate(sorted(set(upper)))}
    return np.fromiter((rank[s] for s in upper), dtype=np.int64, count=len(upper))


def select_asvs(
    features: np.ndarray, counts: np.ndarray, *, ranks: np.ndarray, token_limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sort one sample's ASVs by count, descending, ties by sequence (``ranks``: from
    :func:`sequence_ranks`, indexed by feature), and keep the top ``token_limit``. Position in
    the result is the rank position the model sees.

    Entries left tied after that have the same count and sequence: they are the same input to
    the model in either order."""
    features = np.asarray(features, dtype=np.int64)
    counts = np.asarray(counts)
    order = np.lexsort((ranks[features], -counts))[:token_limit]  # primary key last: -counts
    return features[order], counts[order]


def abundance_features(counts: np.ndarray, depth: float | np.ndarray) -> np.ndarray:
    """``float32 [n, 2]``: log1p(count) and relative abundance count / depth (the sample's
    total reads, not only the selected ones, so truncation does not inflate abundances).
    ``depth``: one sample's, or ``[n]``, each count's own sample's (0 gives abundance 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    depth = np.broadcast_to(np.asarray(depth, dtype=np.float64), counts.shape)
    rel = np.divide(counts, depth, out=np.zeros_like(counts), where=depth > 0)
    return np.stack([np.log1p(counts), rel], axis=-1).astype(np.float32)
