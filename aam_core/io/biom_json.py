"""Checks of a JSON BIOM (v1) document's shape and data, made before biom-format reads it:
biom truncates fractional indices, ignores extra elements, adds up a cell given twice and
reads any unknown matrix type as sparse."""

from __future__ import annotations

import reprlib
from collections import Counter
from typing import Any

from aam_core.io.errors import UnreadableFileError


def check_json_shape(doc: dict[str, Any], n_rows: int, n_cols: int, file: str) -> None:
    """Refuse a declared shape, matrix type or data that do not describe a table of
    ``n_rows`` features and ``n_cols`` samples (before biom-format reads the document)."""
    shape = doc["shape"]
    if not (isinstance(shape, list) and len(shape) == 2):
        raise UnreadableFileError(f"declared shape {shape!r} is not [rows, columns]", file=file)
    if shape != [n_rows, n_cols]:
        raise UnreadableFileError(
            f"declared shape {shape} does not match the data: {n_rows} rows (features) "
            f"and {n_cols} columns (samples)",
            file=file,
        )
    if doc["matrix_type"] not in ("sparse", "dense"):  # biom reads any other as sparse
        raise UnreadableFileError(
            f"matrix_type is {reprlib.repr(doc['matrix_type'])}; expected 'sparse' or 'dense'",
            file=file,
        )
    data = doc["data"]
    if not isinstance(data, list):
        raise UnreadableFileError("malformed 'data' in the JSON BIOM table", file=file)
    try:
        if doc["matrix_type"] == "sparse":
            bad = [e for e in data if not (0 <= e[0] < n_rows and 0 <= e[1] < n_cols)]
            if bad:
                raise UnreadableFileError(
                    f"{len(bad)} sparse entries lie outside the declared shape {shape} "
                    f"(e.g. row {bad[0][0]}, column {bad[0][1]})",
                    file=file,
                )
            malformed = [e for e in data if not _is_sparse_entry(e)]
            if malformed:
                raise UnreadableFileError(
                    f"{len(malformed)} sparse entries are not [row, column, count] with whole-"
                    f"number row and column (e.g. {reprlib.repr(malformed[0])})",
                    file=file,
                )
            given = Counter((e[0], e[1]) for e in data if e[2] != 0)  # explicit zeros add 0
            repeated = [cell for cell, n in given.items() if n > 1]
            if repeated:  # biom would add them up
                raise UnreadableFileError(
                    f"{len(repeated)} cells have more than one non-zero sparse entry (e.g. row "
                    f"{repeated[0][0]}, column {repeated[0][1]}); each count must be given once",
                    file=file,
                )
        else:
            lengths = sorted({len(row) for row in data})
            if len(data) != n_rows or lengths not in ([n_cols], []):
                raise UnreadableFileError(
                    f"declared shape {shape} does not match the dense data: {len(data)} rows "
                    f"of lengths {lengths}",
                    file=file,
                )
    except (TypeError, IndexError, KeyError):
        raise UnreadableFileError("malformed 'data' in the JSON BIOM table", file=file) from None


def _is_sparse_entry(entry: object) -> bool:
    """``[row, column, count]`` with whole-number indices (2.0 is fine, 0.5 and true are not)."""
    return (
        isinstance(entry, list)
        and len(entry) == 3
        and all(
            (isinstance(i, int) and not isinstance(i, bool))
            or (isinstance(i, float) and i.is_integer())
            for i in entry[:2]
        )
    )
