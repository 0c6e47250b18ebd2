"""Nucleotide tokens: each distinct ASV of a table is tokenised once, ``uint8 [n_asv, max_bp]``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from aam_core.data.ragged import ragged_positions
from aam_core.io.errors import SequenceError, preview

PAD = 0
A, C, G, T = 1, 2, 3, 4
N = 5  # any IUPAC ambiguity code
MASK = 6
VOCAB_SIZE = 7
BASES = "ACGT"

_AMBIGUOUS = "RYSWKMBDHVN"


def _lookup_table() -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)  # 255 marks a byte that is not DNA
    for code, base in enumerate(BASES, start=A):
        lut[ord(base)] = lut[ord(base.lower())] = code
    for base in _AMBIGUOUS:
        lut[ord(base)] = lut[ord(base.lower())] = N
    return lut


_LUT = _lookup_table()


def tokenize(sequences: Sequence[str], *, max_bp: int = 150, truncate: bool = False) -> np.ndarray:
    """Tokenise DNA sequences into ``uint8 [len(sequences), max_bp]``, right-padded with 0.

    A sequence longer than ``max_bp`` is an error unless ``truncate`` is set, and a character
    that is not DNA is always an error: neither ever silently becomes padding.
    """
    if max_bp < 1:
        raise ValueError(f"max_bp must be >= 1, got {max_bp}")
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    too_long = np.flatnonzero(lengths > max_bp)
    if too_long.size and not truncate:
        examples = [f"{sequences[i][:12]}... ({lengths[i]} bp)" for i in too_long[:3]]
        raise SequenceError(
            f"{too_long.size} of {len(sequences)} sequences are longer than max_bp={max_bp} "
            f"(e.g. {', '.join(examples)}); raise max_bp or ask for truncation"
        )
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise SequenceError(f"{empty.size} sequences are empty (positions {preview(empty)})")
    kept = np.minimum(lengths, max_bp)  # [n]
    flat = np.frombuffer(
        "".join(s[:max_bp] for s in sequences).encode("ascii", errors="replace"), dtype=np.uint8
    )
    codes = _LUT[flat]  # [sum(kept)]
    if (codes == 255).any():
        starts = np.concatenate([[0], np.cumsum(kept)[:-1]])
        bad_rows = np.unique(
            np.searchsorted(starts, np.flatnonzero(codes == 255), side="right") - 1
        )
        raise SequenceError(
            f"{bad_rows.size} sequences contain characters that are not DNA "
            f"(e.g. {preview([sequences[i][:20] for i in bad_rows], 3)})"
        )
    out = np.zeros((len(sequences), max_bp), dtype=np.uint8)  # [n, max_bp]
    rows, cols = ragged_positions(kept)  # [sum(kept)] each
    out[rows, cols] = codes
    return out


