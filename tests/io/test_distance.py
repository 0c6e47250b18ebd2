from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from aam_core.io import (
    ArchiveError,
    DistanceMatrixError,
    DuplicateIdError,
    EmptyInputError,
    UnreadableFileError,
    read_distance_matrix,
)
from tests.io.conftest import QzaFactory

MATRIX = (
    "\tA\tB\tC\tD\n"
    "A\t0\t0.1\t0.2\t0.3\n"
    "B\t0.1\t0\t0.4\t0.5\n"
    "C\t0.2\t0.4\t0\t0.6\n"
    "D\t0.3\t0.5\t0.6\t0\n"
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dm.tsv"
    path.write_text(text)
    return path


def test_reordered_to_the_table_and_extra_ids_ignored(tmp_path: Path) -> None:
    d = read_distance_matrix(_write(tmp_path, MATRIX), ["C", "A", "D"])
    assert d.dtype == np.float64
    np.testing.assert_array_equal(d, [[0, 0.2, 0.6], [0.2, 0, 0.3], [0.6, 0.3, 0]])


def test_table_samples_missing_from_the_matrix(tmp_path: Path) -> None:
    with pytest.raises(DistanceMatrixError) as info:
        read_distance_matrix(_write(tmp_path, MATRIX), ["A", "X", "B", "Y"], name="unifrac.tsv")
    assert str(info.value) == (
        "unifrac.tsv: 2 of 4 table samples are missing from the distance matrix (e.g. 'X', 'Y')"
    )


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (
            "\tA\tB\nA\t0\t1\nB\t2\t0\n",
            DistanceMatrixError,
            "dm.tsv: not a valid distance matrix: Data must be symmetric and cannot contain NaNs.",
        ),
        (
            "\tA\tB\nA\t1\t1\nB\t1\t0\n",
            DistanceMatrixError,
            "dm.tsv: not a valid distance matrix: Data must be hollow (i.e., the diagonal can "
            "only contain zeros).",
        ),
        (
            "\tA\tB\nA\t0\t-1\nB\t-1\t0\n",
            DistanceMatrixError,
            "dm.tsv: 1 distances are negative (e.g. between 'A' and 'B')",
        ),
        (
            "\tA\tA\nA\t0\t1\nA\t1\t0\n",
            DuplicateIdError,
            "dm.tsv: 1 IDs appear more than once in the distance matrix: 'A'",
        ),
        (
            "\tA\tB\nA\t0\t1\n",
            UnreadableFileError,
            "dm.tsv: cannot parse as a distance matrix (tab-separated, IDs in the first row "
            "(after an empty cell) and in the first column): Expected 2 row(s) of data, but "
            "found 1.",
        ),
        ("\n \n", EmptyInputError, "dm.tsv: the distance matrix file is empty"),
    ],
)
def test_invalid_matrices(tmp_path: Path, text: str, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        read_distance_matrix(_write(tmp_path, text), ["A", "B"])
    assert str(info.value) == message


# -- ssu/unifrac HDF5 and QIIME 2 DistanceMatrix archives -------------------------------------

HAND = np.array(
    [[0, 0.1, 0.2, 0.3], [0.1, 0, 0.4, 0.5], [0.2, 0.4, 0, 0.6], [0.3, 0.5, 0.6, 0]]
)  # MATRIX's values, IDs A, B, C, D


def _hdf5(tmp_path: Path, order: object, matrix: object, *, name: str = "dm.h5") -> Path:
    """What ``ssu --format hdf5`` writes: ``order`` (IDs as bytes) and ``matrix``."""
    path = tmp_path / name
    with h5py.File(path, "w") as h5:
        if order is not None:
            h5.create_dataset("order", data=order)
        if matrix is not None:
            h5.create_dataset("matrix", data=matrix)
    return path


def test_ssu_hdf5_matrix_reordered_to_the_table(tmp_path: Path) -> None:
    path = _hdf5(tmp_path, np.array([b"A", b"B", b"C", b"D"]), HAND.astype(np.float32))
    got = read_distance_matrix(path, ["C", "A"])
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.array([[0, 0.2], [0.2, 0]], dtype=np.float32))


def test_qza_distance_matrix_reads_like_its_tsv(tmp_path: Path, make_qza: QzaFactory) -> None:
    qza = make_qza("DistanceMatrix", {"data/distance-matrix.tsv": MATRIX.encode()})
    expected = read_distance_matrix(_write(tmp_path, MATRIX), ["D", "B", "A"])
    np.testing.assert_array_equal(read_distance_matrix(qza, ["D", "B", "A"]), expected)
    np.testing.assert_array_equal(expected, HAND[np.ix_([3, 1, 0], [3, 1, 0])])


@pytest.mark.parametrize(
    ("order", "matrix", "error", "message"),
    [
        (
            [b"A", b"B"],
            [[0.0, 1.0], [2.0, 0.0]],
            DistanceMatrixError,
            "dm.h5: not a valid distance matrix: Data must be symmetric and cannot contain NaNs.",
        ),
        (
            [b"A", b"B"],
            [[0.0, np.nan], [np.nan, 0.0]],
            DistanceMatrixError,
            "dm.h5: not a valid distance matrix: Data must be symmetric and cannot contain NaNs.",
        ),
        (
            [b"A", b"B"],
            [[1.0, 1.0], [1.0, 0.0]],
            DistanceMatrixError,
            "dm.h5: not a valid distance matrix: Data must be hollow (i.e., the diagonal can "
            "only contain zeros).",
        ),
        (
            [b"A", b"B"],
            [[0.0, -1.0], [-1.0, 0.0]],
            DistanceMatrixError,
            "dm.h5: 1 distances are negative (e.g. between 'A' and 'B')",
        ),
        (
            [b"A", b"B"],
            [[0.0, 1.0, 2.0], [1.0, 0.0, 3.0]],
            DistanceMatrixError,
            "dm.h5: dataset 'matrix' is 2 x 3; a distance matrix must be square (n x n)",
        ),
        (
            [b"A", b"B", b"C"],
            [[0.0, 1.0], [1.0, 0.0]],
            DistanceMatrixError,
            "dm.h5: number of IDs in 'order' (3) must match the number of rows of 'matrix' (2)",
        ),
        (
            [b"A", b"A"],
            [[0.0, 1.0], [1.0, 0.0]],
            DuplicateIdError,
            "dm.h5: 1 IDs appear more than once in the distance matrix: 'A'",
        ),
        (
            [b"A", b"B"],
            None,
            UnreadableFileError,
            "dm.h5: an HDF5 file but not a distance matrix of ssu/unifrac (--format hdf5): "
            "expected datasets 'order' and 'matrix', found 'order'",
        ),
        (
            [b"A", b"B"],
            np.array([[b"0", b"1"], [b"1", b"0"]]),
            UnreadableFileError,
            "dm.h5: dataset 'matrix' holds |S1 values; expected numbers",
        ),
        (
            np.array([], dtype="S1"),
            np.zeros((0, 0)),
            EmptyInputError,
            "dm.h5: the distance matrix holds no samples",
        ),
    ],
)
def test_invalid_hdf5_matrices(
    tmp_path: Path, order: object, matrix: object, error: type, message: str
) -> None:
    with pytest.raises(error) as info:
        read_distance_matrix(_hdf5(tmp_path, order, matrix), ["A", "B"])
    assert str(info.value) == message


def test_truncated_hdf5_is_unreadable(tmp_path: Path) -> None:
    path = _hdf5(tmp_path, np.array([b"A", b"B"]), np.zeros((2, 2)))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UnreadableFileError) as info:
        read_distance_matrix(path, ["A", "B"])
    assert str(info.value).startswith("dm.h5: not a readable HDF5 file (")


def test_invalid_qza_matrices(make_qza: QzaFactory) -> None:
    asymmetric = make_qza(
        "DistanceMatrix", {"data/distance-matrix.tsv": b"\tA\tB\nA\t0\t1\nB\t2\t0\n"}
    )
    with pytest.raises(DistanceMatrixError) as info:
        read_distance_matrix(asymmetric, ["A", "B"])
    assert str(info.value) == (
        "x.qza: not a valid distance matrix: Data must be symmetric and cannot contain NaNs."
    )
    table = make_qza("FeatureTable[Frequency]", {"data/feature-table.biom": b""}, name="t.qza")
    with pytest.raises(ArchiveError) as wrong:
        read_distance_matrix(table, ["A", "B"])
    assert str(wrong.value) == (
        "t.qza: expected a DistanceMatrix archive, found FeatureTable[Frequency]"
    )
    empty = make_qza("DistanceMatrix", {}, name="e.qza")
    with pytest.raises(ArchiveError) as member:
        read_distance_matrix(empty, ["A", "B"])
    assert str(member.value) == (
        "e.qza: the DistanceMatrix archive has no data/distance-matrix.tsv member"
    )
