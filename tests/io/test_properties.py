"""Property tests of the input layer (issue 15): whatever a user sends, a reader either returns
exactly the numbers and IDs it was given or raises a UserError naming the file; nothing else
escapes (no KeyError, TypeError, OverflowError, h5py or biom error, no crash, no silent change).

Each property carries an oracle written here, independently of the reader: the outcome a
well-formed input must give (counts written = counts read, IDs in order), and the inputs that
must be refused. Newick trees have their own module (test_properties_newick.py). Examples are
derandomized and the database is off, so CI runs the same examples every time.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import biom
import h5py
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aam_core.errors import UserError
from aam_core.io import (
    CountsError,
    InputError,
    MetadataError,
    UnreadableFileError,
    is_dna,
    read_distance_matrix,
    read_metadata,
    read_sequences,
    read_table,
)
from aam_core.io.metadata import ID_HEADERS, MISSING
from aam_core.io.table import MAX_READS, table_from_counts

T = TypeVar("T")


def props(max_examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory for the module's examples: Hypothesis refuses function-scoped fixtures
    such as tmp_path (its function_scoped_fixture health check), whose one directory would
    serve every example of a test anyway. Each test writes its own file name."""
    return tmp_path_factory.mktemp("properties")


def outcome(read: Callable[[], T], file: str) -> T | UserError:
    """What ``read`` returns, or the UserError it raises after checking that the error is one
    line naming ``file``. Any other exception propagates and fails the test."""
    try:
        return read()
    except UserError as error:
        assert isinstance(error, InputError), repr(error)
        assert error.file == file and str(error).startswith(f"{file}: "), str(error)
        assert error.message.strip() == error.message != "", repr(error.message)
        assert "\n" not in str(error) and "\r" not in str(error), repr(str(error))
        return error


def usable_id(value: str) -> bool:
    """Non-empty text without control characters or lone surrogates."""
    return bool(value) and all(unicodedata.category(c) not in ("Cc", "Cs") for c in value)


def whole(value: object) -> bool:
    """A whole number of reads: an int (not a bool) or a finite float without fraction."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


# Arbitrary text (lone surrogates included: a JSON body may escape one as "\ud800"), and the
# values worth meeting in every run, whatever the small example budget draws.
IDS = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=5),
    st.sampled_from(["", "s1", "s 2", "a\tb", "x\n", "\x00", "\ud800", "サンプル", "ACGT"]),
)
COUNTS = st.one_of(
    st.integers(0, 40),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, MAX_READS, MAX_READS + 1, -1, 2**63, 3.0, 1.5, math.nan, math.inf]),
    st.sampled_from([True, False, None, "5"]),  # not numbers of reads at all
)


# --- JSON samples (POST /predict) -------------------------------------------------------


def expected_counts(samples: list[tuple[str, dict[str, Any]]]) -> np.ndarray | None:
    """The samples x features matrix (features sorted), or None when the rule refuses them."""
    ids = [sample_id for sample_id, _ in samples]
    features = sorted({f for _, counts in samples for f in counts})
    values = [c for _, counts in samples for c in counts.values()]
    if not ids or len(set(ids)) < len(ids) or not all(map(usable_id, ids + features)):
        return None
    if not all(whole(c) and 0 <= c <= MAX_READS for c in values):
        return None
    if any(sum(counts.values()) > MAX_READS for _, counts in samples):
        return None
    matrix = np.zeros((len(ids), len(features)), dtype=np.int64)
    for i, (_, counts) in enumerate(samples):
        for feature, count in counts.items():
            matrix[i, features.index(feature)] = int(count)
    return matrix


@props(400)
@given(samples=st.lists(st.tuples(IDS, st.dictionaries(IDS, COUNTS, max_size=4)), max_size=4))
@example(samples=[("s1", {"AC": math.nan})])  # was read as 0 reads
@example(samples=[("s1", {"AC": 1.5})])  # was read as 1 read
@example(samples=[("s1", {"AC": "5"})])  # was a TypeError
@example(samples=[("s1", {"AC": 2.0}), ("s2", {})])
def test_count_maps_load_exactly_or_raise(samples: list[tuple[str, dict[str, Any]]]) -> None:
    expected = expected_counts(samples)
    result = outcome(lambda: table_from_counts(samples, file="request body"), "request body")
    if expected is None:
        assert isinstance(result, UserError), "refused input was accepted"
        return
    assert not isinstance(result, UserError), str(result)
    assert result.sample_ids == tuple(s for s, _ in samples)
    assert result.feature_ids == tuple(sorted({f for _, c in samples for f in c}))
    assert result.counts.dtype == np.int64 and result.counts.nnz == np.count_nonzero(expected)
    np.testing.assert_array_equal(result.counts.toarray(), expected)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (math.nan, "1 samples have non-integer counts ('s1')"),
        (1.5, "1 samples have non-integer counts ('s1')"),
        (True, "1 samples have non-integer counts ('s1')"),
        ("5", "1 samples have non-integer counts ('s1')"),
        (math.inf, "1 samples have non-integer counts ('s1')"),
    ],
)
def test_counts_that_are_not_whole_numbers_are_refused(counts: object, message: str) -> None:
    with pytest.raises(CountsError) as info:
        table_from_counts([("s0", {"AC": 1}), ("s1", {"AC": counts})], file="request body")
    assert str(info.value) == (
        f"request body: {message}; counts must be whole numbers of reads from 0 to 10^12"
    )


def test_ids_with_a_lone_surrogate_are_refused() -> None:
    with pytest.raises(UnreadableFileError) as info:
        table_from_counts([("s\ud800", {"AC": 1})], file="request body")
    assert str(info.value) == (
        "request body: 1 sample IDs hold a lone surrogate ('s\\ud800'), which is not text; an "
        "ID must be printable text"
    )


# --- BIOM tables: JSON, HDF5 and any bytes ----------------------------------------------

CELLS = st.one_of(
    st.just(0),
    st.integers(0, 30),
    st.sampled_from([MAX_READS, MAX_READS + 1, 2**53, -2, 0.5, math.nan, math.inf]),
)
# HDF5 variable-length strings hold neither NUL nor lone surrogates: biom cannot write them.
HDF5_IDS = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=5),
    st.sampled_from(["", "s1", "s 2", "a\tb", "x\n", "サンプル", "ACGT"]),
)


def _numpy_text(value: str) -> str:
    """An ID as biom writes it: numpy's strings drop trailing NULs."""
    return value.rstrip("\x00")


@st.composite
def biom_tables(
    draw: st.DrawFn,
    ids: st.SearchStrategy[str],
    cells: st.SearchStrategy[float] = CELLS,
    min_side: int = 0,
) -> tuple[list[str], list[str], Any]:
    """Feature IDs, sample IDs and counts (features x samples, BIOM's layout); each side 0..4,
    so that empty tables and all-zero samples come up."""
    n_features, n_samples = draw(st.integers(min_side, 4)), draw(st.integers(min_side, 4))
    # unique as biom sees them: numpy's strings drop trailing NULs
    features = draw(st.lists(ids, min_size=n_features, max_size=n_features, unique_by=_numpy_text))
    samples = draw(st.lists(ids, min_size=n_samples, max_size=n_samples, unique_by=_numpy_text))
    size = n_features * n_samples
    values = draw(st.lists(cells, min_size=size, max_size=size))
    return features, samples, np.asarray(values, dtype=np.float64).reshape(n_features, n_samples)


def check_read_table(path: Path, features: list[str], samples: list[str], counts: Any) -> None:
    """``read_table(path)`` gives exactly ``counts`` (features x samples) and the IDs in order,
    or a UserError when the table breaks the rule of aam_core.io.table."""
    valid = (
        bool(features and samples)
        and all(map(usable_id, features + samples))
        and bool(np.isfinite(counts).all())
        and all(whole(float(c)) and 0 <= c <= MAX_READS for c in counts.ravel())
        and bool((counts.sum(axis=0) <= MAX_READS).all())
    )
    result = outcome(lambda: read_table(path), path.name)
    if not valid:
        assert isinstance(result, UserError), "refused input was accepted"
        return
    assert not isinstance(result, UserError), str(result)
    assert result.sample_ids == tuple(samples) and result.feature_ids == tuple(features)
    assert result.counts.dtype == np.int64 and result.counts.nnz == np.count_nonzero(counts)
    np.testing.assert_array_equal(result.counts.toarray(), counts.T.astype(np.int64))


@props(150)
@given(table=biom_tables(IDS))
def test_json_biom_loads_exactly_or_raises(scratch: Path, table: tuple[Any, ...]) -> None:
    features, samples, counts = table
    path = scratch / "table.json"
    path.write_text(biom.Table(counts, features, samples).to_json("tests"), encoding="utf-8")
    check_read_table(path, [*map(_numpy_text, features)], [*map(_numpy_text, samples)], counts)


@props(100)
@given(table=biom_tables(HDF5_IDS))
def test_hdf5_biom_loads_exactly_or_raises(scratch: Path, table: tuple[Any, ...]) -> None:
    features, samples, counts = table
    path = scratch / "table.biom"
    with h5py.File(path, "w") as h5:
        biom.Table(counts, features, samples).to_hdf5(h5, "tests")
    check_read_table(path, features, samples, counts)


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 4),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
JSON_MUTATIONS = st.one_of(
    st.tuples(
        st.just("set"),
        st.sampled_from(["shape", "rows", "columns", "data", "matrix_type", "id"]),
        JSON_VALUES,
    ),
    st.tuples(st.just("drop"), st.sampled_from(["shape", "rows", "data", "matrix_type"])),
    st.tuples(st.just("entry"), st.lists(JSON_SCALARS, max_size=4)),
    st.tuples(st.just("index"), st.integers(0, 5), st.integers(0, 1), JSON_SCALARS),
    st.tuples(
        st.just("nudge"), st.integers(0, 5), st.integers(0, 1), st.sampled_from([-1, 1, 0.5])
    ),
    st.tuples(st.just("value"), st.integers(0, 5), JSON_SCALARS),
    st.tuples(st.just("repeat"), st.integers(0, 5), st.integers(0, 3)),
    st.tuples(st.just("id"), st.sampled_from(["rows", "columns"]), JSON_SCALARS | IDS),
    st.tuples(st.just("shape"), st.lists(JSON_SCALARS, max_size=3)),
)


def mutate(doc: dict[str, Any], change: tuple[Any, ...]) -> None:
    """Apply one change to a BIOM JSON document (a change that does not fit is skipped)."""
    kind, *args = change
    data, rows = doc.get("data"), doc.get(args[0] if kind == "id" else "rows")
    if kind == "set":
        doc[args[0]] = args[1]
    elif kind == "drop":
        doc.pop(args[0], None)
    elif kind == "entry" and isinstance(data, list):
        data.append(args[0])
    elif kind in ("index", "nudge", "value", "repeat") and isinstance(data, list) and data:
        entry = data[args[0] % len(data)]
        position = 2 if kind == "value" else args[1]
        if kind == "repeat" and isinstance(entry, list):  # the same cell, given again
            data.append([*entry[:2], args[1]])
        elif isinstance(entry, list) and len(entry) > position:
            nudged = isinstance(entry[position], int | float) and kind == "nudge"
            entry[position] = entry[position] + args[-1] if nudged else args[-1]
    elif kind == "id" and isinstance(rows, list) and rows and isinstance(rows[0], dict):
        rows[0]["id"] = args[1]
    elif kind == "shape":
        doc["shape"] = args[0]


def declared_counts(doc: dict[str, Any]) -> Any:
    """The features x samples counts a JSON BIOM document declares, read by the format's
    definition; an assertion fails where the document is not a well-formed table (so a reader
    that loaded it gave an answer the file does not define)."""
    n_rows, n_cols = len(doc["rows"]), len(doc["columns"])
    assert doc["shape"] == [n_rows, n_cols], doc["shape"]
    assert doc["matrix_type"] in ("sparse", "dense"), doc["matrix_type"]
    if doc["matrix_type"] == "dense":
        return np.asarray(doc["data"], dtype=np.float64).reshape(n_rows, n_cols)
    counts = np.zeros((n_rows, n_cols))
    given: set[tuple[int, int]] = set()
    for entry in doc["data"]:
        assert isinstance(entry, list) and len(entry) == 3, entry
        row, col, value = entry
        assert whole(row) and whole(col) and 0 <= row < n_rows and 0 <= col < n_cols, entry
        if float(value) != 0:  # an explicit zero beside a count is harmless; two counts are not
            assert (int(row), int(col)) not in given, f"{entry} gives a cell a second count"
            given.add((int(row), int(col)))
            counts[int(row), int(col)] = float(value)
    return counts


@props(400)
@given(
    table=biom_tables(st.sampled_from(["f1", "f2", "s1", "ACGT"]), st.integers(0, 5), 1),
    dense=st.booleans(),
    changes=st.lists(JSON_MUTATIONS, min_size=1, max_size=3),
)
@example(  # a repeated cell was summed: 3 + 4 reads
    table=(["f1"], ["s1"], np.array([[3.0]])),
    dense=False,
    changes=[("entry", [0, 0, 4])],
)
@example(  # a row index 0.5 was truncated to 0
    table=(["f1"], ["s1"], np.array([[3.0]])),
    dense=False,
    changes=[("index", 0, 0, 0.5)],
)
@example(  # the fourth element of an entry was ignored
    table=(["f1"], ["s1"], np.array([[3.0]])),
    dense=False,
    changes=[("entry", [0, 0, 3, 9])],
)
@example(  # checked as dense rows (one row of 3 values), read by biom as a sparse entry
    table=(["f1"], ["s1", "s2", "ACGT"], np.array([[0.0, 0.0, 1.0]])),
    dense=False,
    changes=[("set", "matrix_type", None)],
)
def test_mutated_json_biom_loads_what_it_declares_or_raises(
    scratch: Path, table: tuple[Any, ...], dense: bool, changes: list[Any]
) -> None:
    features, samples, counts = table
    doc = json.loads(biom.Table(counts, features, samples).to_json("tests"))
    if dense:
        doc["matrix_type"], doc["data"] = "dense", counts.tolist()
    for change in changes:
        mutate(doc, change)
    text = json.dumps(doc)
    path = scratch / "mutated.json"
    path.write_text(text, encoding="utf-8")
    result = outcome(lambda: read_table(path), path.name)
    if isinstance(result, UserError):
        return
    doc = json.loads(text)
    assert result.feature_ids == tuple(str(r["id"]) for r in doc["rows"])
    assert result.sample_ids == tuple(str(c["id"]) for c in doc["columns"])
    np.testing.assert_array_equal(result.counts.toarray(), declared_counts(doc).T, err_msg=text)


H5_DATASETS = [
    "sample/ids",
    "observation/ids",
    "sample/matrix/data",
    "sample/matrix/indices",
    "sample/matrix/indptr",
    "observation/matrix/indptr",
]
H5_ARRAYS = st.one_of(
    st.lists(st.integers(-3, 8), max_size=6).map(lambda v: np.asarray(v, dtype=np.int32)),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5).map(np.asarray),
    st.lists(st.text("abc", max_size=2).map(str.encode), min_size=1, max_size=5).map(np.asarray),
    st.just(np.zeros((2, 2), dtype=np.int32)),
)
H5_MUTATIONS = st.one_of(
    st.tuples(st.just("dataset"), st.sampled_from(H5_DATASETS), H5_ARRAYS),
    st.tuples(
        st.just("nudge"),
        st.sampled_from(["sample/matrix/indices", "sample/matrix/indptr"]),
        st.integers(0, 8),
        st.sampled_from([-2, -1, 1, 2]),
    ),
    st.tuples(st.just("resize"), st.integers(-1, 1), st.integers(-1, 1)),
    st.tuples(st.just("delete"), st.sampled_from([*H5_DATASETS, "sample", "observation"])),
    st.tuples(st.just("shape"), st.lists(st.integers(-1, 6), max_size=3).map(np.asarray)),
    st.tuples(st.just("shape"), st.just(b"2x3")),
)


def mutate_hdf5(h5: h5py.File, change: tuple[Any, ...]) -> None:
    """Apply one change to a BIOM 2.1 file open for writing (one that does not fit is
    skipped): replace or delete a dataset, move one stored index, or declare another shape."""
    kind, name, *value = change
    shape = np.asarray(h5.attrs.get("shape", ()))
    array = h5[name][()] if kind == "nudge" and name in h5 else np.array([])
    if kind == "shape":
        h5.attrs["shape"] = name
    elif kind == "resize" and shape.dtype.kind == "i" and shape.shape == (2,):
        h5.attrs["shape"] = shape + np.array([name, value[0]])
    elif kind == "nudge" and array.dtype.kind == "i" and array.ndim == 1 and len(array):
        array[value[0] % len(array)] += value[1]
        h5[name][...] = array
    elif kind in ("dataset", "delete") and name in h5:
        del h5[name]
        if kind == "dataset":
            h5[name] = value[0]


def decode(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stored_counts(path: Path) -> tuple[tuple[str, ...], tuple[str, ...], Any]:
    """Sample IDs, feature IDs and counts (samples x features) of a BIOM 2.1 file, read entry
    by entry from its sample/matrix group (one compressed column per sample, as biom reads it);
    an assertion fails where that group is not a valid sparse matrix of the IDs' shape."""
    with h5py.File(path, "r") as h5:
        samples = tuple(decode(v) for v in h5["sample/ids"][:])
        features = tuple(decode(v) for v in h5["observation/ids"][:])
        assert list(h5.attrs["shape"]) == [len(features), len(samples)]
        indptr, indices, data = (h5[f"sample/matrix/{k}"][:] for k in ("indptr", "indices", "data"))
    assert len(indptr) == len(samples) + 1 and indptr[0] == 0, indptr
    assert indptr[-1] == len(indices) == len(data), (indptr, indices, data)
    counts = np.zeros((len(samples), len(features)))
    for j in range(len(samples)):
        rows = indices[indptr[j] : indptr[j + 1]].tolist()
        assert indptr[j] <= indptr[j + 1] and len(set(rows)) == len(rows), (indptr, rows)
        for row, value in zip(rows, data[indptr[j] : indptr[j + 1]], strict=True):
            assert isinstance(row, int) and 0 <= row < len(features), rows
            counts[j, row] = value
    return samples, features, counts


@props(250)
@given(
    table=biom_tables(st.sampled_from(["f1", "f2", "s1", "ACGT"]), st.integers(0, 5), 1),
    changes=st.lists(H5_MUTATIONS, min_size=1, max_size=2),
)
@example(  # a declared shape smaller than the data: scipy wrote out of bounds and aborted
    table=(["f1", "f2"], ["s1", "ACGT", "s2"], np.array([[1.0, 0, 2], [0, 3, 0]])),
    changes=[("shape", np.array([1, 3]))],
)
@example(  # a feature index out of range: its count vanished
    table=(["f1", "f2"], ["s1", "ACGT", "s2"], np.array([[1.0, 0, 2], [0, 3, 0]])),
    changes=[("dataset", "sample/matrix/indices", np.array([0, 7, 0], dtype=np.int32))],
)
def test_damaged_hdf5_biom_loads_what_it_stores_or_raises(
    scratch: Path, table: tuple[Any, ...], changes: list[Any]
) -> None:
    features, samples, counts = table
    path = scratch / "damaged.biom"
    with h5py.File(path, "w") as h5:
        biom.Table(counts, features, samples).to_hdf5(h5, "tests")
        for change in changes:
            mutate_hdf5(h5, change)
    result = outcome(lambda: read_table(path), path.name)
    if isinstance(result, UserError):
        return
    stored_samples, stored_features, stored = stored_counts(path)
    assert (result.sample_ids, result.feature_ids) == (stored_samples, stored_features)
    np.testing.assert_array_equal(result.counts.toarray(), stored)


@props(60)
@given(
    table=biom_tables(st.sampled_from(["f1", "f2", "s1", "ACGT"]), st.integers(0, 5), 1),
    hdf5=st.booleans(),
    keep=st.floats(0, 1, exclude_max=True),
)
def test_a_table_cut_short_is_a_user_error(
    scratch: Path, table: tuple[Any, ...], hdf5: bool, keep: float
) -> None:
    """An upload cut off at any byte: never a table with fewer samples, always a UserError."""
    features, samples, counts = table
    whole_table = biom.Table(counts, features, samples)
    path = scratch / "cut.biom"
    if hdf5:
        with h5py.File(path, "w") as h5:
            whole_table.to_hdf5(h5, "tests")
    else:
        path.write_text(whole_table.to_json("tests"))
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])
    result = outcome(lambda: read_table(path), path.name)
    assert isinstance(result, UserError), f"{len(content)} bytes cut to {int(len(content) * keep)}"


@props(150)
@given(
    head=st.sampled_from([b"", b"\x89HDF\r\n\x1a\n", b"{", b"[", b"PK\x03\x04", b"\xef\xbb\xbf"]),
    body=st.binary(max_size=300),
)
def test_arbitrary_bytes_are_not_a_table(scratch: Path, head: bytes, body: bytes) -> None:
    path = scratch / "upload.bin"
    path.write_bytes(head + body)
    result = outcome(lambda: read_table(path), path.name)
    assert isinstance(result, UserError), "random bytes loaded as a table"


# --- representative sequences (FASTA) ---------------------------------------------------

IUPAC = set("ACGTRYSWKMBDHVN")
PLAIN_IDS = st.text(
    st.characters(exclude_categories=("Cc", "Cs", "Z"), exclude_characters="\ufeff"),
    min_size=1,
    max_size=6,
).filter(lambda s: not any(c.isspace() for c in s))
SEQUENCES = st.one_of(
    st.text("ACGTRYSWKMBDHVNacgtn", min_size=1, max_size=12),
    st.text("ACGTN-U.*acgt \t", max_size=8),
    st.text(max_size=6),
)


def write_text(path: Path, text: str) -> None:
    """UTF-8, keeping lone surrogates as the invalid bytes a careless writer would produce."""
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))


def fasta(records: list[tuple[str, str]], newline: str, width: int) -> str:
    lines = []
    for seq_id, seq in records:
        lines += [f">{seq_id}", *(seq[i : i + width] for i in range(0, len(seq), width))]
    return newline.join(lines) + newline


@props(200)
@given(
    records=st.lists(st.tuples(PLAIN_IDS | IDS, SEQUENCES), max_size=4),
    newline=st.sampled_from(["\n", "\r\n"]),
    width=st.integers(1, 6),
)
def test_fasta_records_load_exactly_or_raise(
    scratch: Path, records: list[tuple[str, str]], newline: str, width: int
) -> None:
    path = scratch / "reps.fasta"
    write_text(path, fasta(records, newline, width))
    result = outcome(lambda: read_sequences(path), path.name)
    ids = [seq_id for seq_id, _ in records]
    plain = all(
        seq_id and not any(c.isspace() or unicodedata.category(c) in ("Cc", "Cs") for c in seq_id)
        for seq_id in ids
    )
    dna = all(seq and set(seq.upper()) <= IUPAC for _, seq in records)
    if records and plain and dna and len(set(ids)) == len(ids):
        assert result == {seq_id: seq.upper() for seq_id, seq in records}
    elif not isinstance(result, UserError):  # IDs end at whitespace: check what can be checked
        assert all(seq_id and is_dna(seq) and seq == seq.upper() for seq_id, seq in result.items())


@props(150)
@given(text=st.text(st.sampled_from(">;ACGTN-acgt \t\n\r\x00é") | st.characters(), max_size=60))
def test_any_text_is_fasta_or_a_user_error(scratch: Path, text: str) -> None:
    path = scratch / "any.fasta"
    write_text(path, text)
    result = outcome(lambda: read_sequences(path), path.name)
    if not isinstance(result, UserError):
        assert result and all(k and is_dna(v) for k, v in result.items())


# --- sample metadata (TSV) ---------------------------------------------------------------

CELL_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=5
).map(str.strip)
NUMBERS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["", "NA", "nan", "missing", "+3", ".5", "-1e-3", "٣"]),  # ٣: Arabic 3
    st.sampled_from(["1e999", "-1E400", "2e308"]),  # beyond float64
)


def missing(value: str) -> bool:
    return value.strip().lower() in MISSING


NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # a decimal literal, not "inf"


@st.composite
def metadata_tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """A header (an accepted ID header, then column names) and rows (sample ID, then cells);
    each column draws either numbers or any text, and IDs and names may clash or be empty."""
    n_columns, n_rows = draw(st.integers(0, 3)), draw(st.integers(0, 4))
    id_header = draw(st.sampled_from(ID_HEADERS))
    names = CELL_TEXT | st.sampled_from(["age", "ID", "#x"])
    header = [draw(st.sampled_from([id_header, id_header.upper()]))]
    header += draw(st.lists(names, min_size=n_columns, max_size=n_columns))
    numeric = [draw(st.booleans()) for _ in header[1:]]
    rows = [
        [draw(CELL_TEXT | st.sampled_from(["#c", ""]) | st.integers(0, 9).map("S{}".format))]
        + [draw(NUMBERS if is_number else CELL_TEXT) for is_number in numeric]
        for _ in range(n_rows)
    ]
    return header, rows


def expected_metadata(header: list[str], rows: list[list[str]]) -> dict[str, list[Any]] | None:
    """Column -> typed values of the kept rows (``"sample_id"``: their IDs), or None when the
    reader must refuse the table. Rows whose ID starts with '#' are comments; blank rows are
    skipped."""
    kept = [row for row in rows if any(row) and not row[0].startswith("#")]
    ids = [row[0] for row in kept]
    names = [name.lower() for name in header]
    if not all(header) or len(set(names)) < len(names) or not kept:
        return None
    if not all(ids) or len(set(ids)) < len(ids):
        return None
    table: dict[str, list[Any]] = {"sample_id": ids}
    for j, name in enumerate(header[1:], start=1):
        present = [row[j] for row in kept if not missing(row[j])]
        if all(NUMBER.fullmatch(v) for v in present):
            if any(math.isinf(float(v)) for v in present):
                return None  # beyond float64: no number the file could mean
            table[name] = [math.nan if missing(row[j]) else float(row[j]) for row in kept]
        else:
            table[name] = [None if missing(row[j]) else row[j] for row in kept]
    return table


@props(300)
@given(table=metadata_tables())
def test_metadata_tables_load_exactly_or_raise(
    scratch: Path, table: tuple[list[str], list[list[str]]]
) -> None:
    header, rows = table
    out = io.StringIO()
    # "\r\n": the writer quotes a cell holding a character of the line terminator only
    csv.writer(out, delimiter="\t", lineterminator="\r\n").writerows([header, *rows])
    path = scratch / "metadata.tsv"
    write_text(path, out.getvalue())
    expected = expected_metadata(header, rows)
    result = outcome(lambda: read_metadata(path), path.name)
    if expected is None:
        assert isinstance(result, UserError), "refused input was accepted"
        return
    assert not isinstance(result, UserError), str(result)
    frame = result.frame
    assert list(frame.index) == expected.pop("sample_id")
    assert list(frame.columns) == list(expected)
    for name, values in expected.items():
        if all(isinstance(v, float) for v in values):  # numeric: NaN where missing
            np.testing.assert_array_equal(frame[name].to_numpy(dtype=np.float64), values)
        else:
            assert frame[name].tolist() == values, name


@props(150)
@given(text=st.text(st.sampled_from('#id\tsample-id\t1.5NAx"\n\r ') | st.characters(), max_size=60))
def test_any_text_is_metadata_or_a_user_error(scratch: Path, text: str) -> None:
    path = scratch / "any.tsv"
    write_text(path, text)
    result = outcome(lambda: read_metadata(path), path.name)
    if not isinstance(result, UserError):
        ids = list(result.frame.index)
        assert ids and all(ids) and len(set(ids)) == len(ids)


# --- precomputed distance matrices --------------------------------------------------------


@props(100)
@given(
    # scikit-bio reads a line that starts with '#' as a comment, IDs included (and refuses)
    ids=st.lists(PLAIN_IDS.filter(lambda i: i[0] != "#"), min_size=1, max_size=4, unique=True),
    distances=st.lists(st.floats(0, 10), min_size=6, max_size=6),
    damage=st.none()
    | st.tuples(
        st.integers(0, 3),
        st.integers(0, 3),
        st.sampled_from(["nan", "-1", "x", "", "inf", "1e999", "0.5"]),
    ),
)
def test_distance_matrices_load_exactly_or_raise(
    scratch: Path, ids: list[str], distances: list[float], damage: tuple[int, int, str] | None
) -> None:
    n = len(ids)
    matrix = np.zeros((n, n))
    matrix[np.triu_indices(n, 1)] = distances[: n * (n - 1) // 2]
    matrix += matrix.T
    cells = [[repr(float(v)) for v in row] for row in matrix]
    if damage is not None:
        cells[damage[0] % n][damage[1] % n] = damage[2]
    text = (
        "\t"
        + "\t".join(ids)
        + "\n"
        + "".join(f"{i}\t" + "\t".join(row) + "\n" for i, row in zip(ids, cells, strict=True))
    )
    path = scratch / "dm.tsv"
    write_text(path, text)
    wanted = ids[::-1]  # the table's order, not the file's
    result = outcome(lambda: read_distance_matrix(path, wanted), path.name)
    if damage is None:
        assert not isinstance(result, UserError), str(result)
        np.testing.assert_array_equal(result, matrix[::-1, ::-1])
    elif not isinstance(result, UserError):
        values = np.array([[float(c) for c in row] for row in cells])[::-1, ::-1]
        np.testing.assert_array_equal(result, values)
        assert np.isfinite(result).all() and (result >= 0).all() and (result == result.T).all()


@props(100)
@given(text=st.text(st.sampled_from("\tab01.-\n\r #") | st.characters(), max_size=60))
def test_any_text_is_a_distance_matrix_or_a_user_error(scratch: Path, text: str) -> None:
    path = scratch / "any_dm.tsv"
    write_text(path, text)
    result = outcome(lambda: read_distance_matrix(path, ["a", "b"]), path.name)
    if not isinstance(result, UserError):
        assert result.shape == (2, 2) and (result == result.T).all() and (result >= 0).all()


# --- what the properties found, pinned ------------------------------------------------------


def json_biom(
    path: Path, data: list[Any] | dict[str, Any], *, samples: tuple[str, ...] = ("s1", "s2")
) -> Path:
    """Features AC, GT x ``samples``; ``data`` is the sparse entries, or a dict of fields to
    set."""
    doc: dict[str, Any] = {
        "id": None,
        "format": "Biological Observation Matrix 1.0.0",
        "format_url": "http://biom-format.org",
        "type": "OTU table",
        "generated_by": "tests",
        "date": "2024-01-01T00:00:00",
        "matrix_type": "sparse",
        "matrix_element_type": "int",
        "shape": [2, len(samples)],
        "data": data,
        "rows": [{"id": "AC", "metadata": None}, {"id": "GT", "metadata": None}],
        "columns": [{"id": s, "metadata": None} for s in samples],
    }
    if isinstance(data, dict):
        doc.update(data)
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            [[0, 0, 3], [0.5, 1, 4]],
            "1 sparse entries are not [row, column, count] with whole-number row and column "
            "(e.g. [0.5, 1, 4])",
        ),
        (
            [[True, 0, 3]],
            "1 sparse entries are not [row, column, count] with whole-number row and column "
            "(e.g. [True, 0, 3])",
        ),
        (
            [[0, 0, 3, 9]],
            "1 sparse entries are not [row, column, count] with whole-number row and column "
            "(e.g. [0, 0, 3, 9])",
        ),
        (
            {
                "matrix_type": None,
                "data": [[0, 1, 3], [1, 0, 2]],
            },  # checked as dense, read as sparse
            "matrix_type is None; expected 'sparse' or 'dense'",
        ),
        (
            [[0, 0, 3], [1, 1, 2], [0, 0, 4]],
            "1 cells have more than one non-zero sparse entry (e.g. row 0, column 0); each "
            "count must be given once",
        ),
    ],
)
def test_sparse_json_entries_must_name_one_cell_each(
    tmp_path: Path, data: list[Any] | dict[str, Any], message: str
) -> None:
    with pytest.raises(UnreadableFileError) as info:
        read_table(json_biom(tmp_path / "t.json", data))
    assert str(info.value) == f"t.json: {message}"


def test_sparse_json_entries_with_whole_float_indices_and_explicit_zeros_load(
    tmp_path: Path,
) -> None:
    table = read_table(json_biom(tmp_path / "t.json", [[0.0, 1.0, 5], [0, 1, 0], [1, 0, 2]]))
    np.testing.assert_array_equal(table.counts.toarray(), [[0, 2], [5, 0]])


def test_an_all_zero_sparse_json_table_loads_like_any_all_zero_table(tmp_path: Path) -> None:
    table = read_table(json_biom(tmp_path / "t.json", []))  # biom read [] as a 0 x 0 matrix
    assert table.sample_ids == ("s1", "s2") and table.feature_ids == ("AC", "GT")
    assert table.counts.shape == (2, 2) and table.counts.nnz == 0


def test_json_ids_with_a_lone_surrogate_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError) as info:
        read_table(json_biom(tmp_path / "t.json", [[0, 0, 1]], samples=("s1", "s\ud800")))
    assert str(info.value) == (
        "t.json: 1 sample IDs hold a lone surrogate ('s\\ud800'), which is not text; an ID must "
        "be printable text"
    )


def hdf5_biom(path: Path, change: Callable[[h5py.File], None]) -> Path:
    """features f1, f2 x samples s1, s2, s3 ([[1, 0, 2], [0, 3, 0]]), then ``change``."""
    counts = np.array([[1.0, 0, 2], [0, 3, 0]])
    with h5py.File(path, "w") as h5:
        biom.Table(counts, ["f1", "f2"], ["s1", "s2", "s3"]).to_hdf5(h5, "tests")
        change(h5)
    return path


def replace(name: str, values: list[int], *more: tuple[str, list[int]]) -> Callable[..., None]:
    def change(h5: h5py.File) -> None:
        for dataset, array in ((name, values), *more):
            del h5[dataset]
            h5[dataset] = np.asarray(array, dtype=np.int32)

    return change


def declare_shape(shape: list[int]) -> Callable[[h5py.File], None]:
    def change(h5: h5py.File) -> None:
        h5.attrs["shape"] = shape

    return change


ARRAYS = "the sample/matrix arrays are not a sparse table of 2 features and 3 samples: "


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (  # scipy wrote outside its buffers and the process aborted
            declare_shape([1, 3]),
            "declared shape [1, 3] does not match the IDs: 2 features and 3 samples",
        ),
        (  # the count 3 silently vanished
            replace("sample/matrix/indices", [0, 7, 0]),
            ARRAYS + "1 row indices lie outside 0 to 1 (e.g. 7)",
        ),
        (  # read as the last feature
            replace("sample/matrix/indices", [0, -1, 0]),
            ARRAYS + "1 row indices lie outside 0 to 1 (e.g. -1)",
        ),
        (
            replace("sample/matrix/indptr", [0, 2, 2, 3], ("sample/matrix/indices", [1, 1, 0])),
            ARRAYS + "1 entries repeat a row within a column",
        ),
        (
            replace("sample/matrix/indptr", [0, 3, 1, 3]),
            ARRAYS + "indptr must rise from 0 to the number of values, but it runs from 0 to 3 "
            "for 3 indices and 3 values",
        ),
        (replace("sample/matrix/indptr", [0, 1, 3]), ARRAYS + "indptr has 3 entries, expected 4"),
    ],
)
def test_hdf5_matrix_arrays_must_fit_the_ids(
    tmp_path: Path, change: Callable[[h5py.File], None], message: str
) -> None:
    with pytest.raises(UnreadableFileError) as info:
        read_table(hdf5_biom(tmp_path / "t.biom", change))
    assert str(info.value) == f"t.biom: {message}"


def test_metadata_numbers_beyond_float64_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_text("sample-id\tph\tage\nS1\t7\t1e999\nS2\t6.5\t-2E400\nS3\t7\t3\n")
    with pytest.raises(MetadataError) as info:
        read_metadata(path)
    assert str(info.value) == (
        "m.tsv: column 'age' has 2 numbers too large for a 64-bit float (e.g. '1e999', "
        "'-2E400' in samples 'S1', 'S2'); numbers must lie within ±1.8e308"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (  # the rest of the file became one cell of S1, and S2 silently vanished
            'sample-id\tsite\nS1\t"gut\nS2\tskin\n',
            "a cell starts with a double quote that no later quote closes",
        ),
        (  # read as 'gutx'
            'sample-id\tsite\nS1\t"gut"x\nS2\tskin\n',
            "a quoted cell goes on after its closing double quote",
        ),
    ],
)
def test_metadata_quotes_must_close(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "m.tsv"
    path.write_text(text)
    with pytest.raises(UnreadableFileError) as info:
        read_metadata(path)
    assert str(info.value) == (
        f"m.tsv: not a readable TSV file: {reason} (a quoted cell ends with a quote right "
        "before a tab or a line end)"
    )


def test_metadata_quoted_cells_keep_tabs_and_inner_quotes(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_text('sample-id\tsite\nS1\t"gut\tlower"\nS2\t5" tall\nS3\t"say ""hi"""\n')
    assert read_metadata(path).frame["site"].tolist() == ["gut\tlower", '5" tall', 'say "hi"']
