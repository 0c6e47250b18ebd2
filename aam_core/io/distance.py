"""A precomputed (UniFrac) distance matrix in scikit-bio's TSV layout, reordered to a table."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from skbio import DistanceMatrix
from skbio.stats.distance import PairwiseMatrixError

from aam_core.io.errors import (
    DistanceMatrixError,
    DuplicateIdError,
    EmptyInputError,
    UnreadableFileError,
    preview,
    short_reason,
)

_LAYOUT = "tab-separated, IDs in the first row (after an empty cell) and in the first column"


def read_distance_matrix(
    path: str | Path, sample_ids: Sequence[str], *, name: str | None = None
) -> np.ndarray:
    """Distances between ``sample_ids``, ``float64 [n, n]`` in that order.

    Every table sample must be in the matrix; extra matrix IDs are ignored.
    """
    file = name or Path(path).name
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise UnreadableFileError(f"cannot open the file ({exc.strerror})", file=file) from None
    except UnicodeDecodeError:
        raise UnreadableFileError("not a TSV file: it is not UTF-8 text", file=file) from None
    if not text.strip():
        raise EmptyInputError("the distance matrix file is empty", file=file)
    header = text.lstrip("\n").split("\n", 1)[0].rstrip("\r").split("\t")[1:]
    dups = [i for i, n in Counter(h.strip() for h in header).items() if n > 1]
    if dups:
        raise DuplicateIdError(
            f"{len(dups)} IDs appear more than once in the distance matrix: {preview(dups)}",
            file=file,
        )
    try:
        matrix = DistanceMatrix.read(io.StringIO(text), format="lsmat", verify=False)
    except PairwiseMatrixError as exc:  # parsed, but not symmetric, hollow or finite
        reason = " ".join(str(exc).split())  # skbio's messages carry stray double spaces
        raise DistanceMatrixError(f"not a valid distance matrix: {reason}", file=file) from None
    except Exception as exc:  # skbio's LSMatFormatError, numpy's ValueError, ...
        reason = short_reason(exc, 300)
        raise UnreadableFileError(
            f"cannot parse as a distance matrix ({_LAYOUT}): {reason}", file=file
        ) from None
    known = set(matrix.ids)
    missing = [s for s in sample_ids if s not in known]
    if missing:
        raise DistanceMatrixError(
            f"{len(missing)} of {len(sample_ids)} table samples are missing from the distance "
            f"matrix (e.g. {preview(missing)})",
            file=file,
        )
    rows = np.array([matrix.index(s) for s in sample_ids], dtype=np.int64)
    data = np.asarray(matrix.data, dtype=np.float64)[np.ix_(rows, rows)]  # [n, n]
    negative = np.argwhere(data < 0)
    if len(negative):
        i, j = negative[0]
        raise DistanceMatrixError(
            f"{len(negative) // 2} distances are negative (e.g. between "
            f"{sample_ids[i]!r} and {sample_ids[j]!r})",
            file=file,
        )
    return data
