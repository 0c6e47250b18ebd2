from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from skbio import TreeNode

from aam_core.io import FeatureTable, read_metadata, summarize
from aam_core.io.summary import depth_histogram

SEQS = ("ACGT", "GGCCTA", "TTTAAACCN")  # lengths 4, 6, 9
SAMPLES = ("S1", "S2", "S3", "S4", "S5")
COUNTS = [  # depths 15, 0, 9, 101, 20 -> sorted 0, 9, 15, 20, 101
    [10, 0, 5],
    [0, 0, 0],
    [3, 3, 3],
    [100, 1, 0],
    [0, 20, 0],
]


def _table() -> FeatureTable:
    counts = sp.csr_matrix(np.array(COUNTS, dtype=np.int64))
    counts.eliminate_zeros()
    return FeatureTable(SAMPLES, SEQS, counts, source="t.biom")


def test_summary_numbers_by_hand(tmp_path: Path) -> None:
    tree = TreeNode.read(["((ACGT:1,TTTAAACCN:1):1,EXTRA:2);"])  # GGCCTA is not a tip
    meta_path = tmp_path / "m.tsv"
    meta_path.write_text(
        "id\tage\tsite\n"
        "S1\t30\tgut\n"
        "S2\tNA\tskin\n"
        "S3\t50\tgut\n"
        "S7\t1\toral\n"  # S7 and S8 are not in the table: ignored, not counted as classes
        "S8\t2\tnose\n"
    )
    summary = summarize(
        _table(),
        SEQS,
        tree=tree,
        metadata=read_metadata(meta_path),
        sha256={"table": "aa", "tree": "bb", "metadata": "cc"},
        warnings=["given first"],
        default_depth=(15, None),
    )
    histogram = summary.pop("depth_histogram")  # its numbers: test_depth_histogram_by_hand
    assert histogram["zero"] == 1 and sum(histogram["counts"]) == 4
    assert (histogram["edges"][0], histogram["edges"][-1]) == (9, 101)
    assert summary == {
        "n_samples": 5,
        "n_features": 3,
        "sequence_length": {"min": 4, "max": 9},
        "sample_depth": {"min": 0, "median": 15.0, "max": 101},
        "default_rarefaction": {"depth": 15, "samples_kept": 3, "note": None},  # 15, 101, 20
        "has_tree": True,
        "features_missing_from_tree": 1,
        "metadata_columns": [
            # over S1..S5: age is missing for S2 (NA), S4 and S5 (no row)
            # 30 and 50 among the table's samples (the file's 1 and 2 are S7's and S8's)
            {"name": "age", "kind": "numeric", "n_missing": 3, "n_distinct": 2, "integer": True},
            # gut, skin, gut, -, -: two classes among the table's samples (the file has four)
            {"name": "site", "kind": "categorical", "n_missing": 2, "n_classes": 2},
        ],
        "samples_missing_metadata": 2,
        "sha256": {"table": "aa", "tree": "bb", "metadata": "cc"},
        "warnings": [
            "given first",
            "1 samples have zero reads and will be dropped by rarefaction: 'S2'",
            "1 of 3 table features are missing from the tree (e.g. 'GGCCTA'); UniFrac cannot "
            "use them",
            "2 of 5 table samples have no metadata",
            "2 metadata rows match no table sample and are ignored",
        ],
    }
    assert json.loads(json.dumps(summary)) == summary  # plain JSON types only


def test_summary_without_tree_or_metadata() -> None:
    table = _table().subset_samples(np.array([0, 2, 3]))  # depths 15, 9, 101
    summary = summarize(table, SEQS, sha256={"table": "aa"})
    assert summary["sample_depth"] == {"min": 9, "median": 15.0, "max": 101}
    assert summary["has_tree"] is False
    assert summary["features_missing_from_tree"] == 0
    assert summary["metadata_columns"] == []
    assert summary["samples_missing_metadata"] == 0
    assert summary["warnings"] == []
    assert type(summary["sample_depth"]["min"]) is int


def test_even_sample_count_median_is_the_mean_of_the_middle_pair() -> None:
    table = _table().subset_samples(np.array([0, 2, 3, 4]))  # depths 15, 9, 101, 20
    assert summarize(table, SEQS, sha256={})["sample_depth"] == {
        "min": 9,
        "median": 17.5,
        "max": 101,
    }


def test_depth_histogram_by_hand() -> None:
    # nonzero depths 9, 15, 20, 101; two log bins split at sqrt(9 * 101) = 30.150
    assert depth_histogram(np.array([15, 0, 9, 101, 20]), bins=2) == {
        "edges": [9.0, 30.150, 101.0],
        "counts": [3, 1],
        "zero": 1,
    }
    # the deepest sample falls in the last bin (closed on the right), not beyond it
    assert depth_histogram(np.array([10, 1000, 100]), bins=2) == {
        "edges": [10.0, 100.0, 1000.0],
        "counts": [1, 2],
        "zero": 0,
    }


def test_depth_histogram_of_equal_or_no_depths() -> None:
    assert depth_histogram(np.array([7, 7, 0])) == {"edges": [7.0, 7.0], "counts": [2], "zero": 1}
    assert depth_histogram(np.array([0, 0])) == {"edges": [], "counts": [], "zero": 2}
    assert len(depth_histogram(np.array([1, 5000]))["counts"]) == 20


def test_summary_without_a_depth_rule_records_no_default_depth() -> None:
    assert summarize(_table(), SEQS, sha256={})["default_rarefaction"] is None
