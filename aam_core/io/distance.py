"""A precomputed (UniFrac) distance matrix, reordered to a table: scikit-bio's TSV layout, a
QIIME 2 DistanceMatrix archive (``.qza``) or ssu/unifrac's HDF5."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from skbio import DistanceMatrix
from skbio.stats.distance import PairwiseMatrixError

from aam_core.io.archive import is_zip, read_member
from aam_core.io.errors import (
    DistanceMatrixError,
    DuplicateIdError,
    EmptyInputError,
    UnreadableFileError,
    preview,
    short_reason,
)

_LAYOUT = "tab-separated, IDs in the first row (after an empty cell) and in the first column"
DISTANCE_TYPES = ("DistanceMatrix",)
DISTANCE_MEMBER = "data/distance-matrix.tsv"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def read_distance_matrix(
    path: str | Path, sample_ids: Sequence[str], *, name: str | None = None
) -> np.ndarray:
    """Distances between ``sample_ids``, ``float64 [n, n]`` in that order, from scikit-bio's
    TSV, a QIIME 2 DistanceMatrix ``.qza`` or ssu/unifrac's HDF5 (``--format hdf5``: datasets
    ``order`` and ``matrix``), told apart by content.

    Every table sample must be in the matrix; extra matrix IDs are ignored.
    """
    file = name or Path(path).name
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_HDF5_MAGIC))
    except OSError as exc:
        raise UnreadableFileError(f"cannot open the file ({exc.strerror})", file=file) from None
    if head == _HDF5_MAGIC:
        matrix = _read_hdf5(path, file)
    elif is_zip(head):
        raw = read_member(path, DISTANCE_MEMBER, expected=DISTANCE_TYPES, name=file)
        matrix = _parse_tsv(_decode(raw, file), file)
    else:
        matrix = _parse_tsv(_decode(Path(path).read_bytes(), file), file)
    return _reorder(matrix, sample_ids, file)


def _decode(raw: bytes, file: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableFileError("not a TSV file: it is not UTF-8 text", file=file) from None


def _parse_tsv(text: str, file: str) -> DistanceMatrix:
    if not text.strip():
        raise EmptyInputError("the distance matrix file is empty", file=file)
    header = text.lstrip("\n").split("\n", 1)[0].rstrip("\r").split("\t")[1:]
    _check_unique([h.strip() for h in header], file)
    try:
        return DistanceMatrix.read(io.StringIO(text), format="lsmat", verify=False)
    except PairwiseMatrixError as exc:  # parsed, but not symmetric, hollow or finite
        raise _invalid(exc, file) from None
    except Exception as exc:  # skbio's LSMatFormatError, numpy's ValueError, ...
        reason = short_reason(exc, 300)
        raise UnreadableFileError(
            f"cannot parse as a distance matrix ({_LAYOUT}): {reason}", file=file
        ) from None


def _read_hdf5(path: str | Path, file: str) -> DistanceMatrix:
    """ssu/unifrac's ``--format hdf5``: ``order`` (the sample IDs, bytes) and ``matrix``
    (``[n, n]`` floats); the same checks as the TSV."""
    try:
        with h5py.File(path, "r") as h5:
            found = sorted(h5.keys())
            order, data = h5.get("order"), h5.get("matrix")
            if not isinstance(order, h5py.Dataset) or not isinstance(data, h5py.Dataset):
                raise UnreadableFileError(
                    "an HDF5 file but not a distance matrix of ssu/unifrac (--format hdf5): "
                    f"expected datasets 'order' and 'matrix', found {preview(found) or 'none'}",
                    file=file,
                )
            ids_raw, values = order[()], data[()]
    except OSError as exc:
        raise UnreadableFileError(
            f"not a readable HDF5 file ({short_reason(exc)})", file=file
        ) from None
    ids_array = np.atleast_1d(np.asarray(ids_raw))
    if ids_array.ndim != 1:
        raise UnreadableFileError(
            f"dataset 'order' has shape {ids_array.shape}; expected one sample ID per row",
            file=file,
        )
    try:
        ids = [i.decode("utf-8") if isinstance(i, bytes) else str(i) for i in ids_array.tolist()]
    except UnicodeDecodeError:
        raise UnreadableFileError(
            "dataset 'order' holds IDs that are not UTF-8", file=file
        ) from None
    values = np.asarray(values)
    if values.dtype.kind not in "iuf":
        raise UnreadableFileError(
            f"dataset 'matrix' holds {values.dtype} values; expected numbers", file=file
        )
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        shape = " x ".join(str(d) for d in values.shape) or "a scalar"
        raise DistanceMatrixError(
            f"dataset 'matrix' is {shape}; a distance matrix must be square (n x n)", file=file
        )
    if not ids:
        raise EmptyInputError("the distance matrix holds no samples", file=file)
    if len(ids) != values.shape[0]:
        raise DistanceMatrixError(
            f"number of IDs in 'order' ({len(ids)}) must match the number of rows of "
            f"'matrix' ({values.shape[0]})",
            file=file,
        )
    _check_unique(ids, file)
    try:
        return DistanceMatrix(values.astype(np.float64), ids)
    except PairwiseMatrixError as exc:
        raise _invalid(exc, file) from None


def _check_unique(ids: Sequence[str], file: str) -> None:
    dups = [i for i, n in Counter(ids).items() if n > 1]
    if dups:
        raise DuplicateIdError(
            f"{len(dups)} IDs appear more than once in the distance matrix: {preview(dups)}",
            file=file,
        )


def _invalid(exc: PairwiseMatrixError, file: str) -> DistanceMatrixError:
    reason = " ".join(str(exc).split())  # skbio's messages carry stray double spaces
    return DistanceMatrixError(f"not a valid distance matrix: {reason}", file=file)


def _reorder(matrix: DistanceMatrix, sample_ids: Sequence[str], file: str) -> np.ndarray:
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
