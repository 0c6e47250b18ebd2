"""Per-sample ASV selection (top ``token_limit`` by count, in rank order) and abundance features."""

from __future__ import annotations

import numpy as np

N_ABUNDANCE_FEATURES = 2  # log1p(count), count / depth


def select_asvs(
    features: np.ndarray, counts: np.ndarray, token_limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sort one sample's ASVs by count, descending (ties by ASV index), and keep the top
    ``token_limit``. Position in the result is the rank position the model sees."""
    features = np.asarray(features, dtype=np.int64)
    counts = np.asarray(counts)
    order = np.lexsort((features, -counts))[:token_limit]  # primary key last: -counts
    return features[order], counts[order]


def abundance_features(counts: np.ndarray, depth: float) -> np.ndarray:
    """``float32 [n, 2]``: log1p(count) and relative abundance count / depth (the sample's
    total reads, not only the selected ones, so truncation does not inflate abundances)."""
    counts = np.asarray(counts, dtype=np.float64)
    rel = counts / depth if depth > 0 else np.zeros_like(counts)
    return np.stack([np.log1p(counts), rel], axis=-1).astype(np.float32)
