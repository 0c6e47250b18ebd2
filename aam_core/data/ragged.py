"""Index arithmetic for rows of different lengths laid end to end (sequences, samples)."""

from __future__ import annotations

import numpy as np


def ragged_positions(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows of ``lengths [n]`` laid end to end: each element's row and its position within
    that row, both ``int64 [sum(lengths)]``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    rows = np.repeat(np.arange(lengths.size), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, np.arange(rows.size, dtype=np.int64) - starts
