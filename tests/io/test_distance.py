from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aam_core.io import (
    DistanceMatrixError,
    DuplicateIdError,
    EmptyInputError,
    UnreadableFileError,
    read_distance_matrix,
)

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
