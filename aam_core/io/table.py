"""Feature tables: BIOM 2.1 (HDF5), BIOM 1.0 (JSON) or a QIIME 2 FeatureTable[Frequency].

The format is judged by content, never by extension (uploads are stored under hashes).
IDs and shapes are checked on the raw file before biom-format parses it, so that duplicate
IDs and shape mismatches are reported by name instead of as biom's internal errors.

One rule for every entry (uploads, predict jobs, the command-line tool, and JSON samples sent
to ``POST /predict`` through :func:`table_from_counts`):

- a count is a whole number of reads from 0 to ``MAX_READS``, and so is a sample's total (far
  above any sequencing run, far below the int64 sums every later step takes);
- a sample or feature ID is non-empty and holds no control character (tab, newline, ...),
  which would break the rows of every TSV file the service writes, and no lone surrogate
  (a JSON escape such as ``"\\ud800"``), which no UTF-8 file or response can hold.
"""

from __future__ import annotations

import json
import numbers
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import biom
import h5py
import numpy as np
import scipy.sparse as sp

from aam_core.io.archive import DEFAULT_MAX_BYTES, TABLE_MEMBER, TABLE_TYPES, extract_member, is_zip
from aam_core.io.biom_hdf5 import check_hdf5_matrix
from aam_core.io.biom_json import check_json_shape
from aam_core.io.errors import (
    CountsError,
    DuplicateIdError,
    EmptyInputError,
    UnreadableFileError,
    preview,
    short_reason,
)
from aam_core.io.types import FeatureTable

MAX_READS = 10**12  # reads in one sample; a count can be no larger either
_READS = "counts must be whole numbers of reads from 0 to 10^12"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_HDF5_OFFSETS = (0, 512, 1024, 2048)  # the superblock may follow a user block
# Unicode's control characters (category Cc: tab, newline, NUL, DEL, ...) and lone surrogates
# (category Cs), as character classes: a regular expression scans a request's IDs (150 ASVs of
# 150 bp per sample) in microseconds, where a category lookup per character took milliseconds.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def read_table(
    path: str | Path, *, name: str | None = None, max_archive_bytes: int = DEFAULT_MAX_BYTES
) -> FeatureTable:
    """Read a feature table and return it with samples as rows (CSR int64, no stored zeros).

    ``name`` is the file name shown in messages (default: the path's basename).
    """
    file = name or Path(path).name
    head = _head(path, file)
    if is_zip(head):
        with extract_member(
            path, TABLE_MEMBER, expected=TABLE_TYPES, name=file, max_bytes=max_archive_bytes
        ) as member:
            return _read_biom(member, _head(member, file), file)
    return _read_biom(Path(path), head, file)


def zero_count_samples(table: FeatureTable) -> list[str]:
    """IDs of samples without a single read (kept in the table; rarefaction drops them)."""
    return [table.sample_ids[i] for i in np.flatnonzero(table.depths() == 0)]


def _head(path: str | Path, file: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            head = fh.read(max(_HDF5_OFFSETS) + len(_HDF5_MAGIC))
    except OSError as exc:
        raise UnreadableFileError(f"cannot open the file ({exc.strerror})", file=file) from None
    if not head:
        raise UnreadableFileError("the file is empty (0 bytes)", file=file)
    return head


def _is_hdf5(head: bytes) -> bool:
    return any(head[o : o + len(_HDF5_MAGIC)] == _HDF5_MAGIC for o in _HDF5_OFFSETS)


def _read_biom(path: Path, head: bytes, file: str) -> FeatureTable:
    if _is_hdf5(head):
        table = _read_hdf5(path, file)
    elif head.lstrip()[:1] in (b"{", b"["):
        table = _read_json(path, file)
    else:
        start = head[:24].decode("utf-8", errors="replace").split("\n")[0]
        raise UnreadableFileError(
            "not a feature table: expected BIOM 2.1 (HDF5), BIOM 1.0 (JSON) or a QIIME 2 "
            f".qza, but the file starts with {start!r} (a TSV table can be converted with "
            "`biom convert --to-hdf5`)",
            file=file,
        )
    return _to_feature_table(table, file)


def _h5_reason(exc: BaseException) -> str:
    """h5py's messages nest the useful part in parentheses ("Unable to synchronously open
    file (truncated file: eof = ...)"): keep that part only."""
    found = re.search(r"\(([^():]+)", str(exc))
    return found.group(1) if found else short_reason(exc, 120)


def _read_hdf5(path: Path, file: str) -> biom.Table:
    try:
        with h5py.File(path, "r") as h5:
            try:
                samples = [_decode(v) for v in h5["sample/ids"][:]]
                features = [_decode(v) for v in h5["observation/ids"][:]]
            except (KeyError, TypeError, AttributeError, ValueError):  # absent, a group, not UTF-8
                raise UnreadableFileError(
                    "an HDF5 file but not a BIOM 2.1 table "
                    "(sample/ids or observation/ids missing or unreadable)",
                    file=file,
                ) from None
            _check_ids(samples, features, file)
            check_hdf5_matrix(h5, len(features), len(samples), file)
            try:
                return biom.Table.from_hdf5(h5)
            except Exception as exc:  # biom raises KeyError, ValueError, TypeError, ...
                raise UnreadableFileError(
                    f"not a valid BIOM 2.1 table ({type(exc).__name__}: {_h5_reason(exc)})",
                    file=file,
                ) from None
    except OSError as exc:
        reason = _h5_reason(exc)
        hint = " (was the upload cut short?)" if "truncated" in reason else ""
        raise UnreadableFileError(
            f"cannot read as BIOM 2.1 (HDF5): {reason}{hint}", file=file
        ) from None


def _decode(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _read_json(path: Path, file: str) -> biom.Table:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except UnicodeDecodeError:
        raise UnreadableFileError(
            "not a JSON BIOM table: the file is not UTF-8 text", file=file
        ) from None
    except json.JSONDecodeError as exc:
        raise UnreadableFileError(
            f"not valid JSON BIOM: {exc.msg} at line {exc.lineno}, column {exc.colno}", file=file
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of 5000 digits, deep nesting
        raise UnreadableFileError(f"not valid JSON BIOM: {short_reason(exc)}", file=file) from None
    if not isinstance(doc, dict):
        raise UnreadableFileError("not a JSON BIOM table: the JSON is not an object", file=file)
    missing = [k for k in ("shape", "rows", "columns", "data", "matrix_type") if k not in doc]
    if missing:
        raise UnreadableFileError(
            f"not a JSON BIOM table: missing {', '.join(map(repr, missing))}", file=file
        )
    try:
        features = [str(r["id"]) for r in doc["rows"]]
        samples = [str(c["id"]) for c in doc["columns"]]
    except (KeyError, TypeError):
        raise UnreadableFileError(
            "not a JSON BIOM table: every row and column needs an 'id'", file=file
        ) from None
    shape = doc["shape"]
    if isinstance(shape, list) and len(shape) == 2 and 0 in shape:  # biom writes no IDs then
        _check_empty(n_samples=shape[1], n_features=shape[0], file=file)
    check_json_shape(doc, len(features), len(samples), file)
    _check_ids(samples, features, file)
    for axis in ("rows", "columns"):  # biom requires the key; many writers omit it
        doc[axis] = [{"id": str(e["id"]), "metadata": e.get("metadata")} for e in doc[axis]]
    if doc["matrix_type"] == "sparse" and not doc["data"]:  # biom reads [] as a 0 x 0 matrix
        doc["data"] = [[0, 0, 0]]  # an explicit zero: the all-zero table of the declared shape
    try:
        return biom.Table.from_json(doc)
    except Exception as exc:  # biom raises KeyError, ValueError, TypeError, ...
        raise UnreadableFileError(
            f"not a valid JSON BIOM table ({type(exc).__name__}: {short_reason(exc)})", file=file
        ) from None


def _duplicates(ids: Sequence[str]) -> list[str]:
    return [i for i, n in Counter(ids).items() if n > 1]


def _check_empty(*, n_samples: int, n_features: int, file: str) -> None:
    if not n_samples or not n_features:
        raise EmptyInputError(
            f"the table is empty: it has {n_samples} samples and {n_features} features",
            file=file,
        )


def _unusable_id(value: str) -> bool:
    """Empty, or holding a control character (tab, newline, NUL, ...: Unicode category Cc)."""
    return not value or _CONTROL.search(value) is not None


def check_id_text(kind: str, ids: Sequence[str], file: str) -> None:
    """Refuse empty IDs and IDs with control characters or lone surrogates, naming them
    (quoted as Python literals, so that a tab shows as ``\\t``)."""
    bad = [i for i in ids if _unusable_id(i)]
    if bad:
        raise UnreadableFileError(
            f"{len(bad)} {kind} IDs are empty or hold a control character (tab, newline, ...): "
            f"{preview(bad)}; an ID must be printable text",
            file=file,
        )
    unpaired = [i for i in ids if _SURROGATE.search(i) is not None]
    if unpaired:
        raise UnreadableFileError(
            f"{len(unpaired)} {kind} IDs hold a lone surrogate ({preview(unpaired)}), which is "
            "not text; an ID must be printable text",
            file=file,
        )


def _check_ids(samples: Sequence[str], features: Sequence[str], file: str) -> None:
    _check_empty(n_samples=len(samples), n_features=len(features), file=file)
    for kind, ids in (("sample", samples), ("feature", features)):
        check_id_text(kind, ids, file)
        dups = _duplicates(ids)
        if dups:
            raise DuplicateIdError(
                f"{len(dups)} {kind} IDs appear more than once: {preview(dups)}", file=file
            )


def _check_depths(depths: np.ndarray, sample_ids: Sequence[str], file: str) -> None:
    """Refuse samples whose reads add up to more than ``MAX_READS`` (``depths``: float64 sums,
    which cannot wrap as int64 sums do)."""
    rows = np.flatnonzero(np.asarray(depths, dtype=np.float64) > MAX_READS)
    over = [sample_ids[int(i)] for i in rows]
    if over:
        raise CountsError(
            f"{len(over)} samples have more than 10^12 reads in all ({preview(over)}); {_READS}",
            file=file,
        )


def _is_whole(count: object) -> bool:
    """An integer, or a float with a whole value (a JSON parser may give 2.0 for 2); not a bool,
    NaN, infinity, text or None."""
    if isinstance(count, bool) or not isinstance(count, numbers.Real):
        return False
    return isinstance(count, numbers.Integral) or float(count).is_integer()


def table_from_counts(
    samples: Sequence[tuple[str, Mapping[str, int]]], *, file: str
) -> FeatureTable:
    """A table from ``(sample ID, {feature ID: count})`` pairs, under the rule of
    :func:`read_table` (features sorted; zero counts dropped)."""
    ids = [sample_id for sample_id, _ in samples]
    features = sorted({feature for _, counts in samples for feature in counts})
    if not ids:
        _check_empty(n_samples=0, n_features=len(features), file=file)
    check_id_text("sample", ids, file)
    check_id_text("feature", features, file)
    dups = _duplicates(ids)
    if dups:
        raise DuplicateIdError(
            f"sample IDs must be unique; {len(dups)} appear more than once ({preview(dups)})",
            file=file,
        )
    for what, test in (
        ("non-integer", lambda c: not _is_whole(c)),  # first: the others compare numbers
        ("negative", lambda c: c < 0),
        ("above 10^12", lambda c: c > MAX_READS),
    ):
        bad = [sid for sid, counts in samples if any(test(c) for c in counts.values())]
        if bad:
            raise CountsError(
                f"{len(bad)} samples have {what} counts ({preview(bad)}); {_READS}", file=file
            )
    _check_depths(np.array([sum(c.values()) for _, c in samples], dtype=np.float64), ids, file)
    column = {feature: j for j, feature in enumerate(features)}
    rows, cols, values = [], [], []
    for i, (_, counts) in enumerate(samples):
        for feature, count in counts.items():
            if count > 0:
                rows.append(i)
                cols.append(column[feature])
                values.append(count)
    matrix = sp.csr_matrix(
        (np.asarray(values, dtype=np.int64), (rows, cols)),
        shape=(len(ids), len(features)),
        dtype=np.int64,
    )  # [n_samples, n_features]
    return FeatureTable(
        sample_ids=tuple(ids), feature_ids=tuple(features), counts=matrix, source=file
    )


def _to_feature_table(table: biom.Table, file: str) -> FeatureTable:
    counts = sp.csr_matrix(table.matrix_data.T, dtype=np.float64)  # [n_samples, n_features]
    counts.sort_indices()
    values = counts.data
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))  # row of each value
    sample_ids = tuple(str(s) for s in table.ids(axis="sample"))
    finite = np.isfinite(values)
    for what, bad, rule in (
        ("non-finite (NaN or infinite)", ~finite, _READS),
        ("negative", finite & (values < 0), _READS),
        ("above 10^12", finite & (values > MAX_READS), _READS),
        (
            "non-integer",
            finite & (values != np.round(values)),
            f"{_READS}, not relative abundances",
        ),
    ):
        if bad.any():
            samples = [sample_ids[i] for i in np.unique(rows[bad])]
            raise CountsError(
                f"{int(bad.sum())} counts are {what}, in {len(samples)} samples "
                f"({preview(samples)}); {rule}",
                file=file,
            )
    _check_depths(np.asarray(counts.sum(axis=1)).ravel(), sample_ids, file)  # float64 sums
    result = sp.csr_matrix(counts, dtype=np.int64)
    result.eliminate_zeros()
    return FeatureTable(
        sample_ids=sample_ids,
        feature_ids=tuple(str(f) for f in table.ids(axis="observation")),
        counts=result,
        source=file,
    )
