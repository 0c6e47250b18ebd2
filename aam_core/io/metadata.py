"""QIIME-style sample metadata (TSV): first column = sample ID, columns typed by content.

Everything is read as text first; a column is numeric when every non-missing value parses
as a number, unless a ``#q2:types`` row (right after the header) declares its type. Which cells
are missing follows a ``#q2:missing`` row when there is one (QIIME 2 2023.5+: per column
``INSDC:missing``, ``no-missing`` or ``blank``); otherwise empty cells, INSDC's terms ('not
provided', Qiita's 'Missing: Not provided', '<not provided>', ...) and NA-like spellings are.
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

# QIIME 2's sample/feature ID headers (qiime2.metadata SUPPORTED_ID_HEADERS: Qiita's
# 'sample_name', QIIME 1's '#SampleID', biom's '#OTUID', ...), then this project's own earlier
# spellings. All are compared in any case: QIIME 2 matches the '#' forms and 'sample_name'
# exactly, so any file it accepts is accepted here.
ID_HEADERS = (
    "#SampleID",
    "#Sample ID",
    "sample-id",
    "sample id",
    "sampleid",
    "sample_id",
    "sample_name",
    "sample name",
    "id",
    "feature-id",
    "feature id",
    "featureid",
    "#OTUID",
    "#OTU ID",
)
_ID_HEADERS = frozenset(h.lower() for h in ID_HEADERS)
# INSDC's missing-value reporting terms, Qiita's "Missing: ..." spellings of them and the
# bracketed "<not provided>" forms (all compared lower-case): missing values, never categories.
_INSDC_TERMS = (
    "not applicable",
    "not collected",
    "not provided",
    "restricted access",
)
INSDC_MISSING = frozenset(
    {"", "missing"}
    | set(_INSDC_TERMS)
    | {f"missing: {t}" for t in _INSDC_TERMS}
    | {f"<{t}>" for t in (*_INSDC_TERMS, "missing")}
    | {
        f"missing: {reason}"  # INSDC's reasons for a missing value (2023)
        for reason in (
            "control sample",
            "sample group",
            "synthetic construct",
            "lab stock",
            "third party data",
            "data agreement established pre-2023",
            "endangered species",
            "human-identifiable",
        )
    }
)
MISSING = INSDC_MISSING | {"na", "n/a", "nan", "null", "none"}  # without a #q2:missing row
# ``#q2:missing`` schemes (QIIME 2 2023.5+): the cells that are missing in such a column
MISSING_SCHEMES = {
    "INSDC:missing": INSDC_MISSING,
    "no-missing": frozenset({""}),  # QIIME 2's own: an empty cell is still no value
    "blank": frozenset({""}),
}
_SCHEMES = {k.lower(): v for k, v in MISSING_SCHEMES.items()}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TYPES_ROW = "#q2:types"
_MISSING_ROW = "#q2:missing"
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
        header, directives, rows = _split(text, file)
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
    declared = {c: t.lower() for c, t in directives.get(_TYPES_ROW, {}).items()}
    schemes = directives.get(_MISSING_ROW, {})
    for j, column in enumerate(columns, start=1):
        values = [row[j] for _, row in rows]
        terms = _missing_terms(column, schemes.get(column), file)
        kind = _column_kind(column, values, declared.get(column), ids, file, terms)
        typed[column] = _typed(values, kind, index, terms)
        if kind == "numeric":
            _check_finite(column, values, typed[column], file)
        described.append(describe(column, kind, typed[column]))
        if typed[column].isna().all():
            warnings.append(f"metadata column {column!r} has no values")
    frame = pd.DataFrame(typed, index=index)  # built at once: no fragmented frame
    return Metadata(frame=frame, columns=tuple(described), source=file, warnings=tuple(warnings))


def is_missing(value: str, terms: frozenset[str] = MISSING) -> bool:
    """Whether a cell is a missing value (``terms``: a ``MISSING_SCHEMES`` value, lower-case)."""
    return value.strip().lower() in terms


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


def _split(
    text: str, file: str
) -> tuple[list[str], dict[str, dict[str, str]], list[tuple[int, list[str]]]]:
    """Header cells, the directive rows right after it (``#q2:types``, ``#q2:missing``: the
    value by column, non-empty only), and the data rows with line numbers."""
    header: list[str] | None = None
    directives: dict[str, dict[str, str]] = {}
    rows: list[tuple[int, list[str]]] = []
    in_directives = False
    # strict: an unclosed quote is an error, not a cell that swallows the rest of the file
    for line, raw in enumerate(csv.reader(io.StringIO(text), delimiter="\t", strict=True), 1):
        cells = [c.strip() for c in raw]
        if not any(cells):
            continue
        first = cells[0]
        if header is None:
            if first.lower() in _ID_HEADERS:
                header, in_directives = cells, True
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
        # QIIME 2 takes its directives in any order, all before the first data row
        in_directives = in_directives and first.lower() in (_TYPES_ROW, _MISSING_ROW)
        if in_directives:
            directives[first.lower()] = {
                c: v for c, v in zip(header[1:], cells[1:], strict=False) if v
            }
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
    return header, directives, rows


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


def _missing_terms(column: str, scheme: str | None, file: str) -> frozenset[str]:
    if scheme is None:
        return MISSING
    terms = _SCHEMES.get(scheme.lower())
    if terms is None:
        accepted = ", ".join(repr(s) for s in MISSING_SCHEMES)
        raise MetadataError(
            f"#q2:missing declares {scheme!r} for column {column!r}; expected one of {accepted}",
            file=file,
        )
    return terms


def _column_kind(
    column: str,
    values: list[str],
    declared: str | None,
    ids: list[str],
    file: str,
    terms: frozenset[str] = MISSING,
) -> ColumnKind:
    not_numbers = [
        (i, v)
        for i, v in zip(ids, values, strict=True)
        if not is_missing(v, terms) and not _NUMBER.fullmatch(v)
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


def _typed(
    values: list[str], kind: ColumnKind, index: pd.Index, terms: frozenset[str] = MISSING
) -> pd.Series:
    if kind == "numeric":
        numbers = [np.nan if is_missing(v, terms) else float(v) for v in values]
        return pd.Series(numbers, index=index, dtype=np.float64)
    labels = [None if is_missing(v, terms) else v for v in values]
    return pd.Series(labels, index=index, dtype=object)
