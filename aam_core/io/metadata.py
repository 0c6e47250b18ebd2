"""QIIME-style sample metadata (TSV): first column = sample ID, columns typed by content.

Everything is read as text first; a column is numeric when every non-missing value parses
as a number, unless a ``#q2:types`` row (right after the header) declares its type.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from aam_core.io.errors import EmptyInputError, MetadataError, UnreadableFileError, preview
from aam_core.io.types import ColumnKind, Metadata, MetadataColumn

ID_HEADERS = ("#SampleID", "sample-id", "sampleid", "sample_id", "id", "sample name")
MISSING = frozenset(  # compared lower-case
    {
        "",
        "na",
        "n/a",
        "nan",
        "null",
        "none",
        "not applicable",
        "missing",
        "not provided",
        "not collected",
    }
)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TYPES_ROW = "#q2:types"
# csv's errors (strict mode) for a quote that is never closed, or text after a closing quote
_QUOTE_ERRORS = {
    "unexpected end of data": "a cell starts with a double quote that no later quote closes",
    "'\t' expected after '\"'": "a quoted cell goes on after its closing double quote",
}


def read_metadata(path: str | Path, *, name: str | None = None) -> Metadata:
    """Read a metadata TSV (``name`` is the file name shown in messages)."""
    file = name or Path(path).name
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise UnreadableFileError(f"cannot open the file ({exc.strerror})", file=file) from None
    except UnicodeDecodeError:
        raise UnreadableFileError("not a TSV file: it is not UTF-8 text", file=file) from None
    try:
        header, declared, rows = _split(text, file)
    except csv.Error as exc:  # NUL bytes, a field over csv's size limit, an unclosed quote
        quotes = _QUOTE_ERRORS.get(str(exc))
        reason = (
            f": {quotes} (a quoted cell ends with a quote right before a tab or a line end)"
            if quotes
            else f" ({exc})"
        )
        raise UnreadableFileError(f"not a readable TSV file{reason}", file=file) from None
    columns = header[1:]
    ids = [row[0] for _, row in rows]
    _check_ids(ids, [line for line, _ in rows], file)
    index = pd.Index(ids, dtype=object, name="sample_id")
    typed: dict[str, pd.Series] = {}
    described: list[MetadataColumn] = []
    warnings: list[str] = []
    for j, column in enumerate(columns, start=1):
        values = [row[j] for _, row in rows]
        kind = _column_kind(column, values, declared.get(column), ids, file)
        typed[column] = _typed(values, kind, index)
        if kind == "numeric":
            _check_finite(column, values, typed[column], file)
        described.append(describe(column, kind, typed[column]))
        if typed[column].isna().all():
            warnings.append(f"metadata column {column!r} has no values")
    frame = pd.DataFrame(typed, index=index)  # built at once: no fragmented frame
    return Metadata(frame=frame, columns=tuple(described), source=file, warnings=tuple(warnings))


def is_missing(value: str) -> bool:
    return value.strip().lower() in MISSING


def describe(name: str, kind: ColumnKind, series: pd.Series) -> MetadataColumn:
    """Missing values and distinct values of one typed column: classes of a categorical one;
    for a numeric one how many values and whether all are whole numbers (integer codes can be
    class labels)."""
    present = series.dropna()
    n_missing = int(len(series) - len(present))
    if kind == "categorical":
        return MetadataColumn(name, kind, n_missing, n_classes=int(present.nunique()))
    values = np.unique(present.to_numpy(dtype=np.float64))
    values = values[np.isfinite(values)]
    return MetadataColumn(
        name,
        kind,
        n_missing,
        n_distinct=int(values.size),
        integer=bool((values == np.round(values)).all()),
    )


def align_metadata(metadata: Metadata, sample_ids: Sequence[str]) -> tuple[pd.DataFrame, int, int]:
    """Rows of ``metadata`` for ``sample_ids`` (in that order; all-missing where absent),
    the number of table samples without metadata, and the number of metadata rows ignored.

    A metadata file that shares no sample ID with the table is the wrong file: MetadataError.
    """
    frame = metadata.frame
    present = frame.index.isin(list(sample_ids))
    n_matched = int(present.sum())
    if n_matched == 0:
        raise MetadataError(
            "no sample ID in the metadata matches the table; is it the metadata of another "
            f"study? (metadata IDs: {preview(frame.index, 3)}; "
            f"table IDs: {preview(sample_ids, 3)})",
            file=metadata.source,
        )
    aligned = frame.reindex(pd.Index(list(sample_ids), dtype=object, name=frame.index.name))
    for col in metadata.columns:
        if col.kind == "categorical":
            column = aligned[col.name].astype(object)
            aligned[col.name] = column.where(column.notna(), None)
    return aligned, len(sample_ids) - n_matched, len(frame) - n_matched


def _split(text: str, file: str) -> tuple[list[str], dict[str, str], list[tuple[int, list[str]]]]:
    """Header cells, declared ``#q2:types`` by column, and the data rows with line numbers."""
    header: list[str] | None = None
    declared: dict[str, str] = {}
    rows: list[tuple[int, list[str]]] = []
    just_after_header = False
    # strict: an unclosed quote is an error, not a cell that swallows the rest of the file
    for line, raw in enumerate(csv.reader(io.StringIO(text), delimiter="\t", strict=True), 1):
        cells = [c.strip() for c in raw]
        if not any(cells):
            continue
        first = cells[0]
        if header is None:
            if first.lower() in {h.lower() for h in ID_HEADERS}:
                header, just_after_header = cells, True
                _check_header(header, file)
                continue
            if first.startswith("#"):
                continue
            accepted = ", ".join(repr(h) for h in ID_HEADERS)
            raise MetadataError(
                f"the first column is {first!r}, not a sample ID header; expected one of "
                f"{accepted} (any case)",
                file=file,
            )
        if just_after_header and first.lower() == _TYPES_ROW:
            declared = {c: t.lower() for c, t in zip(header[1:], cells[1:], strict=False) if t}
        just_after_header = False
        if first.startswith("#"):
            continue
        if len(cells) > len(header) and any(cells[len(header) :]):
            raise MetadataError(
                f"line {line} has {len(cells)} cells but the header has {len(header)}", file=file
            )
        rows.append((line, (cells + [""] * len(header))[: len(header)]))
    if header is None:
        raise EmptyInputError("the metadata file has no header line", file=file)
    if not rows:
        raise EmptyInputError("the metadata has a header but no sample rows", file=file)
    return header, declared, rows


def _check_header(header: list[str], file: str) -> None:
    empty = [j + 1 for j, c in enumerate(header) if not c]
    if empty:
        raise MetadataError(
            f"{len(empty)} header cells are empty (columns {preview(empty, quote=False)}); "
            "every column needs a name",
            file=file,
        )
    dups = [c for c, n in Counter(c.lower() for c in header).items() if n > 1]
    if dups:
        raise MetadataError(f"column names appear more than once: {preview(dups)}", file=file)


def _check_ids(ids: list[str], lines: list[int], file: str) -> None:
    empty = [line for line, i in zip(lines, ids, strict=True) if not i]
    if empty:
        raise MetadataError(
            f"{len(empty)} rows have an empty sample ID (lines {preview(empty, quote=False)})",
            file=file,
        )
    dups = [i for i, n in Counter(ids).items() if n > 1]
    if dups:
        raise MetadataError(
            f"{len(dups)} sample IDs appear more than once: {preview(dups)}", file=file
        )


def _column_kind(
    column: str, values: list[str], declared: str | None, ids: list[str], file: str
) -> ColumnKind:
    not_numbers = [
        (i, v)
        for i, v in zip(ids, values, strict=True)
        if not is_missing(v) and not _NUMBER.fullmatch(v)
    ]
    if declared is None:
        return "categorical" if not_numbers else "numeric"
    if declared == "categorical":
        return "categorical"
    if declared == "numeric":
        if not_numbers:
            raise MetadataError(
                f"column {column!r} is declared numeric in #q2:types but {len(not_numbers)} "
                f"values are not numbers (e.g. {preview(v for _, v in not_numbers)} in samples "
                f"{preview(i for i, _ in not_numbers)})",
                file=file,
            )
        return "numeric"
    raise MetadataError(
        f"#q2:types declares {declared!r} for column {column!r}; expected 'numeric' or "
        "'categorical'",
        file=file,
    )


def _check_finite(column: str, values: list[str], series: pd.Series, file: str) -> None:
    """Refuse numbers beyond float64 ('1e999'), which would become infinity."""
    huge = np.isinf(series.to_numpy())
    if huge.any():
        raise MetadataError(
            f"column {column!r} has {int(huge.sum())} numbers too large for a 64-bit float (e.g. "
            f"{preview(v for v, h in zip(values, huge, strict=True) if h)} in samples "
            f"{preview(series.index[huge])}); numbers must lie within ±1.8e308",
            file=file,
        )


def _typed(values: list[str], kind: ColumnKind, index: pd.Index) -> pd.Series:
    if kind == "numeric":
        numbers = [np.nan if is_missing(v) else float(v) for v in values]
        return pd.Series(numbers, index=index, dtype=np.float64)
    labels = [None if is_missing(v) else v for v in values]
    return pd.Series(labels, index=index, dtype=object)
