"""Checks of a BIOM 2.1 file's sparse matrix arrays, made before biom-format and scipy see
them: scipy trusts the arrays it is given, and an index out of range makes it read and write
outside its buffers (the process aborts, or counts silently vanish)."""

from __future__ import annotations

import h5py
import numpy as np

from aam_core.io.errors import UnreadableFileError

_CSC_ARRAYS = ("indptr", "indices", "data")


def check_hdf5_matrix(h5: h5py.File, n_features: int, n_samples: int, file: str) -> None:
    """Refuse a declared shape, or sample/matrix arrays (one compressed column per sample:
    what biom reads), that do not describe a table of the IDs' size."""
    try:
        declared = h5.attrs.get("shape")  # absent: biom reports it
        indptr, indices, data = (np.asarray(h5["sample/matrix"][k][()]) for k in _CSC_ARRAYS)
    except (KeyError, TypeError, AttributeError, ValueError):
        raise UnreadableFileError(
            "an HDF5 file but not a BIOM 2.1 table (the shape, or sample/matrix/indptr, indices "
            "or data, missing or unreadable)",
            file=file,
        ) from None
    shape = None if declared is None else np.asarray(declared).ravel().tolist()
    if shape is not None and shape != [n_features, n_samples]:
        raise UnreadableFileError(
            f"declared shape {shape} does not match the IDs: {n_features} features and "
            f"{n_samples} samples",
            file=file,
        )
    problem = _csc_problem(indptr, indices, data, n_features, n_samples)
    if problem:
        raise UnreadableFileError(
            f"the sample/matrix arrays are not a sparse table of {n_features} features and "
            f"{n_samples} samples: {problem}",
            file=file,
        )


def _csc_problem(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n_rows: int, n_cols: int
) -> str | None:
    """What is wrong with compressed-column arrays of an ``n_rows x n_cols`` matrix, if anything."""
    if not (
        indptr.ndim == indices.ndim == data.ndim == 1
        and np.issubdtype(indptr.dtype, np.integer)
        and np.issubdtype(indices.dtype, np.integer)
    ):
        return "indptr and indices must be 1-D integer arrays, and data a 1-D array"
    if len(indptr) != n_cols + 1:
        return f"indptr has {len(indptr)} entries, expected {n_cols + 1}"
    falls = (indptr[1:] < indptr[:-1]).any()  # compared, not subtracted: no int64 wrap
    if indptr[0] != 0 or falls or not indptr[-1] == len(indices) == len(data):
        return (
            f"indptr must rise from 0 to the number of values, but it runs from {indptr[0]} to "
            f"{indptr[-1]} for {len(indices)} indices and {len(data)} values"
        )
    outside = indices[(indices < 0) | (indices >= n_rows)]
    if len(outside):
        return f"{len(outside)} row indices lie outside 0 to {n_rows - 1} (e.g. {outside[0]})"
    cells = np.repeat(np.arange(n_cols, dtype=np.int64), np.diff(indptr)) * n_rows + indices
    if len(np.unique(cells)) < len(cells):
        return f"{len(cells) - len(np.unique(cells))} entries repeat a row within a column"
    return None
