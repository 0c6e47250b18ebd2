from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from aam_core.io import (
    CountsError,
    DuplicateIdError,
    EmptyInputError,
    UnreadableFileError,
    read_table,
    zero_count_samples,
)
from aam_core.io.table import table_from_counts

FEATURES = ["ACGT", "CCGGA", "TTTAN"]
SAMPLES = ["s1", "s2", "s3", "s4"]
COUNTS = [[5, 0, 1], [0, 0, 0], [12, 3, 0], [0, 7, 7]]  # samples x features


def _json_doc(path: Path) -> dict:
    return json.loads(path.read_text())


def test_hdf5_round_trip(hdf5_table) -> None:
    table = read_table(hdf5_table(COUNTS, FEATURES, SAMPLES))
    assert table.sample_ids == tuple(SAMPLES)
    assert table.feature_ids == tuple(FEATURES)
    assert table.counts.dtype == np.int64
    assert table.counts.format == "csr"
    np.testing.assert_array_equal(table.counts.toarray(), COUNTS)
    assert table.counts.nnz == 6  # no stored zeros
    np.testing.assert_array_equal(table.depths(), [6, 0, 15, 14])
    assert table.source == "table.biom"


def test_json_round_trip(json_table) -> None:
    table = read_table(json_table(COUNTS, FEATURES, SAMPLES), name="upload.json")
    assert table.sample_ids == tuple(SAMPLES)
    assert table.feature_ids == tuple(FEATURES)
    np.testing.assert_array_equal(table.counts.toarray(), COUNTS)
    assert table.source == "upload.json"


def test_format_is_judged_by_content_not_extension(hdf5_table, json_table) -> None:
    hdf5 = read_table(hdf5_table(COUNTS, FEATURES, SAMPLES, name="looks_like.json"))
    text = read_table(json_table(COUNTS, FEATURES, SAMPLES, name="looks_like.biom"))
    assert (hdf5.counts != text.counts).nnz == 0


def test_dense_json_and_explicit_zeros(json_table) -> None:
    path = json_table(COUNTS, FEATURES, SAMPLES)
    doc = _json_doc(path)
    doc["matrix_type"] = "dense"
    doc["data"] = np.asarray(COUNTS).T.tolist()  # features x samples, zeros included
    for row in doc["rows"]:
        del row["metadata"]  # many writers omit it; biom itself requires the key
    path.write_text(json.dumps(doc))
    table = read_table(path)
    np.testing.assert_array_equal(table.counts.toarray(), COUNTS)
    assert table.counts.nnz == 6


def test_explicit_zeros_are_not_stored(json_table) -> None:
    path = json_table(COUNTS, FEATURES, SAMPLES)
    doc = _json_doc(path)
    doc["data"] += [[1, 1, 0.0], [2, 3, 0.0]]  # stored zeros, as some writers emit
    path.write_text(json.dumps(doc))
    table = read_table(path)
    assert table.counts.nnz == 6
    np.testing.assert_array_equal(table.counts.toarray(), COUNTS)


def test_zero_read_samples_are_kept_and_reported(hdf5_table) -> None:
    table = read_table(hdf5_table(COUNTS, FEATURES, SAMPLES))
    assert table.n_samples == 4
    assert zero_count_samples(table) == ["s2"]


def test_truncated_hdf5_names_the_upload_without_a_traceback(hdf5_table) -> None:
    path = hdf5_table(COUNTS, FEATURES, SAMPLES)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(UnreadableFileError) as info:
        read_table(path, name="my_table.biom")
    assert str(info.value) == (
        "my_table.biom: cannot read as BIOM 2.1 (HDF5): truncated file (was the upload cut short?)"
    )
    assert info.value.file == "my_table.biom"


def test_hdf5_that_is_not_biom(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5["x"] = np.arange(3)
    with pytest.raises(
        UnreadableFileError,
        match=re.escape(
            "other.h5: an HDF5 file but not a BIOM 2.1 table "
            "(sample/ids or observation/ids missing or unreadable)"
        ),
    ):
        read_table(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "t.biom: the file is empty (0 bytes)"),
        (
            b"#OTU ID\ts1\ts2\nASV1\t1\t2\n",
            "t.biom: not a feature table: expected BIOM 2.1 (HDF5), BIOM 1.0 (JSON) or a QIIME 2 "
            ".qza, but the file starts with '#OTU ID\\ts1\\ts2' (a TSV table can be converted "
            "with `biom convert --to-hdf5`)",
        ),
        (b'{"rows": [', "t.biom: not valid JSON BIOM: Expecting value at line 1, column 11"),
        (b"[1, 2]", "t.biom: not a JSON BIOM table: the JSON is not an object"),
        (
            b'{"rows": []}',
            "t.biom: not a JSON BIOM table: missing 'shape', 'columns', 'data', 'matrix_type'",
        ),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "t.biom"
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as info:
        read_table(path)
    assert str(info.value) == message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match=r"^gone\.biom: cannot open the file \(No such"):
        read_table(tmp_path / "gone.biom")


def test_json_declared_shape_must_match_ids(json_table) -> None:
    path = json_table(COUNTS, FEATURES, SAMPLES)
    doc = _json_doc(path)
    doc["shape"] = [3, 5]
    path.write_text(json.dumps(doc))
    with pytest.raises(UnreadableFileError) as info:
        read_table(path)
    assert str(info.value) == (
        "table.json: declared shape [3, 5] does not match the data: 3 rows (features) and "
        "4 columns (samples)"
    )


def test_json_entries_outside_the_shape(json_table) -> None:
    path = json_table(COUNTS, FEATURES, SAMPLES)
    doc = _json_doc(path)
    doc["data"].append([7, 1, 4.0])
    path.write_text(json.dumps(doc))
    with pytest.raises(UnreadableFileError) as info:
        read_table(path)
    assert str(info.value) == (
        "table.json: 1 sparse entries lie outside the declared shape [3, 4] (e.g. row 7, column 1)"
    )


def test_dense_json_row_lengths_must_match(json_table) -> None:
    path = json_table(COUNTS, FEATURES, SAMPLES)
    doc = _json_doc(path)
    doc["matrix_type"] = "dense"
    doc["data"] = [[1, 2, 3, 4], [1, 2, 3], [0, 0, 0, 0]]
    path.write_text(json.dumps(doc))
    with pytest.raises(UnreadableFileError) as info:
        read_table(path)
    assert str(info.value) == (
        "table.json: declared shape [3, 4] does not match the dense data: 3 rows of lengths [3, 4]"
    )


def test_negative_counts_name_samples_and_count(hdf5_table) -> None:
    counts = [[5, -1, 1], [0, 2, 0], [-3, -3, 0], [0, 7, 7]]
    with pytest.raises(CountsError) as info:
        read_table(hdf5_table(counts, FEATURES, SAMPLES))
    assert str(info.value) == (
        "table.biom: 3 counts are negative, in 2 samples ('s1', 's3'); counts must be "
        "whole numbers of reads from 0 to 10^12"
    )


def test_fractional_counts_are_not_reads(hdf5_table) -> None:
    counts = np.array(COUNTS, dtype=float)
    counts[[0, 2, 3, 3], [0, 1, 1, 2]] = [0.5, 0.25, 0.1, 0.2]
    with pytest.raises(CountsError) as info:
        read_table(hdf5_table(counts, FEATURES, SAMPLES))
    assert str(info.value) == (
        "table.biom: 4 counts are non-integer, in 3 samples ('s1', 's3', 's4'); counts must be "
        "whole numbers of reads from 0 to 10^12, not relative abundances"
    )


def test_nan_counts(json_table) -> None:
    path = json_table(COUNTS, FEATURES, SAMPLES)
    doc = _json_doc(path)
    doc["data"][0][2] = float("nan")  # json.dumps writes NaN, as some writers do
    path.write_text(json.dumps(doc))
    with pytest.raises(CountsError) as info:
        read_table(path)
    assert str(info.value) == (
        "table.json: 1 counts are non-finite (NaN or infinite), in 1 samples ('s1'); counts "
        "must be whole numbers of reads from 0 to 10^12"
    )


def _rename_ids(path: Path, axis: str, ids: list[str]) -> None:
    with h5py.File(path, "r+") as h5:
        del h5[f"{axis}/ids"]
        h5.create_dataset(
            f"{axis}/ids",
            data=np.array([i.encode() for i in ids], dtype=object),
            dtype=h5py.string_dtype(),
        )


def test_duplicate_sample_ids_in_hdf5(hdf5_table) -> None:
    # biom refuses to write duplicates, so they are written into the HDF5 file directly.
    path = hdf5_table(COUNTS, FEATURES, SAMPLES)
    _rename_ids(path, "sample", ["s1", "s2", "s1", "s2"])
    with pytest.raises(DuplicateIdError) as info:
        read_table(path)
    assert str(info.value) == "table.biom: 2 sample IDs appear more than once: 's1', 's2'"


def test_duplicate_feature_ids_in_json(json_table) -> None:
    path = json_table(COUNTS, FEATURES, SAMPLES)
    doc = _json_doc(path)
    doc["rows"][2]["id"] = "ACGT"
    path.write_text(json.dumps(doc))
    with pytest.raises(DuplicateIdError) as info:
        read_table(path)
    assert str(info.value) == "table.json: 1 feature IDs appear more than once: 'ACGT'"


def test_empty_tables(hdf5_table, json_table) -> None:
    with pytest.raises(EmptyInputError) as info:
        read_table(hdf5_table(np.zeros((0, 3)), FEATURES, []))
    assert str(info.value) == "table.biom: the table is empty: it has 0 samples and 3 features"
    with pytest.raises(EmptyInputError) as info:
        read_table(json_table(np.zeros((4, 0)), [], SAMPLES))
    assert str(info.value) == "table.json: the table is empty: it has 4 samples and 0 features"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"shape": [' + b"9" * 5000 + b", 1]}",
            "t.json: not valid JSON BIOM: Exceeds the limit (4300 digits) for integer string "
            "conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase "
            "the limit",
        ),
        (
            b"[" * 100_000,
            "t.json: not valid JSON BIOM: maximum recursion depth exceeded while "
            "decoding a JSON array from a unicode string",
        ),
        (
            b'{"shape": [1, 1], "rows": [{"id": "A"}], "columns": [{"id": "S"}], '
            b'"data": [{"a": 1}], "matrix_type": "sparse"}',
            "t.json: malformed 'data' in the JSON BIOM table",
        ),
        (
            b'{"shape": [1, 1], "rows": ["A"], "columns": [{"id": "S"}], "data": [], '
            b'"matrix_type": "sparse"}',
            "t.json: not a JSON BIOM table: every row and column needs an 'id'",
        ),
    ],
)
def test_hostile_json_is_an_input_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError) as info:
        read_table(path)
    assert str(info.value) == message


def test_hdf5_ids_that_are_not_utf8(hdf5_table) -> None:
    path = hdf5_table(COUNTS, FEATURES, SAMPLES)
    with h5py.File(path, "r+") as h5:
        del h5["sample/ids"]
        h5["sample/ids"] = np.array([b"s1", b"\xff", b"s3", b"s4"], dtype="S2")
    with pytest.raises(UnreadableFileError) as info:
        read_table(path)
    assert str(info.value) == (
        "table.biom: an HDF5 file but not a BIOM 2.1 table "
        "(sample/ids or observation/ids missing or unreadable)"
    )


def test_row_counts_round_trip() -> None:
    import scipy.sparse as sp

    from aam_core.io import FeatureTable

    dense = np.array([[0, 5, 2], [7, 0, 0]], dtype=np.int64)
    table = FeatureTable(("a", "b"), ("AC", "GT", "TT"), sp.csr_matrix(dense))
    assert table.row_counts(0) == {"GT": 5, "TT": 2}
    assert table.row_counts(1) == {"AC": 7}


# -- the one rule for counts and IDs (issue 15): every entry reads tables through it --------


def test_a_count_above_10_to_the_12_is_refused_not_wrapped(hdf5_table, json_table) -> None:
    big = [[5, 0, 1], [0, 1e20, 0], [12, 3, 0], [0, 7, 7]]  # int64 would wrap to negative
    for path in (hdf5_table(big, FEATURES, SAMPLES), json_table(big, FEATURES, SAMPLES)):
        with pytest.raises(CountsError) as info:
            read_table(path)
        assert str(info.value) == (
            f"{path.name}: 1 counts are above 10^12, in 1 samples ('s2'); counts must be whole "
            "numbers of reads from 0 to 10^12"
        )


def test_a_sample_whose_reads_add_up_past_10_to_the_12_is_refused(hdf5_table) -> None:
    near = [[5, 0, 1], [0, 0, 0], [6e11, 6e11, 0], [0, 7, 7]]  # each count allowed, not the sum
    with pytest.raises(CountsError) as info:
        read_table(hdf5_table(near, FEATURES, SAMPLES))
    assert str(info.value) == (
        "table.biom: 1 samples have more than 10^12 reads in all ('s3'); counts must be whole "
        "numbers of reads from 0 to 10^12"
    )
    at_limit = [[5, 0, 1], [0, 0, 0], [10**12 - 3, 3, 0], [0, 7, 7]]
    assert read_table(hdf5_table(at_limit, FEATURES, SAMPLES)).depths()[2] == 10**12


@pytest.mark.parametrize("bad", ["s\t2", "s2\n", "s\r2", "\x1b[0m", ""], ids=repr)  # HDF5: no NUL
def test_sample_ids_with_control_characters_are_refused(hdf5_table, json_table, bad) -> None:
    ids = ["s1", bad, "s3", "s4"]
    hdf5 = hdf5_table(COUNTS, FEATURES, SAMPLES)
    _rename_ids(hdf5, "sample", ids)
    text = json_table(COUNTS, FEATURES, SAMPLES)
    doc = _json_doc(text)
    doc["columns"][1]["id"] = bad
    text.write_text(json.dumps(doc))
    for path in (hdf5, text):
        with pytest.raises(UnreadableFileError) as info:
            read_table(path)
        assert str(info.value) == (
            f"{path.name}: 1 sample IDs are empty or hold a control character (tab, newline, "
            f"...): {bad!r}; an ID must be printable text"
        )


def test_feature_ids_follow_the_same_rule(hdf5_table) -> None:
    path = hdf5_table(COUNTS, FEATURES, SAMPLES)
    _rename_ids(path, "observation", ["ACGT", "CC\tGGA", "TTTAN"])
    with pytest.raises(UnreadableFileError, match=r"1 feature IDs are empty or hold a control"):
        read_table(path)


def test_ids_may_hold_any_printable_text(hdf5_table) -> None:
    ids = ["s 1", "ß-2", "サンプル3", "s.4;#"]  # spaces, non-ASCII and punctuation are fine
    path = hdf5_table(COUNTS, FEATURES, SAMPLES)
    _rename_ids(path, "sample", ids)
    assert read_table(path).sample_ids == tuple(ids)


def test_json_samples_follow_the_rule_of_tables() -> None:
    table = table_from_counts(
        [("b", {"TT": 2, "AC": 0}), ("a", {"AC": 5}), ("c", {})], file="request body"
    )
    assert table.sample_ids == ("b", "a", "c") and table.feature_ids == ("AC", "TT")
    np.testing.assert_array_equal(table.counts.toarray(), [[0, 2], [5, 0], [0, 0]])
    assert table.counts.nnz == 2 and table.counts.dtype == np.int64
    cases = [
        ([("s1", {"AC": 10**30})], CountsError, "1 samples have above 10^12 counts ('s1')"),
        ([("s1", {"AC": -1})], CountsError, "1 samples have negative counts ('s1')"),
        (
            [("s1", {"AC": 6 * 10**11, "TT": 6 * 10**11})],
            CountsError,
            "1 samples have more than 10^12 reads in all ('s1')",
        ),
        ([("a\nb", {"AC": 1})], UnreadableFileError, "1 sample IDs are empty or hold a control"),
        ([("a\x00", {"AC": 1})], UnreadableFileError, "1 sample IDs are empty or hold a control"),
        ([("s1", {"A\tC": 1})], UnreadableFileError, "1 feature IDs are empty or hold a control"),
        ([("s1", {}), ("s1", {})], DuplicateIdError, "sample IDs must be unique; 1 appear"),
    ]
    for samples, error, message in cases:
        with pytest.raises(error) as info:
            table_from_counts(samples, file="request body")
        assert str(info.value).startswith(f"request body: {message}"), str(info.value)
