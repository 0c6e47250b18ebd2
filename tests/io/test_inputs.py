from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from aam_core.io import MetadataError, SequenceError, load_inputs, sha256_file, summarize

GOOD_FEATURES = (
    "ACGTACGTACGT",
    "TTGACCATGGCAA",
    "GGGCCCAAATTTG",
    "CATGNCATGCATGCA",
    "AAACCCGGGTTTACGT",
)
GOOD_COUNTS = [[10, 0, 5, 0, 1], [0, 3, 0, 7, 0], [2, 2, 2, 2, 2], [1, 0, 0, 0, 20]]


def test_load_good_fixtures_and_summarize(data_dir: Path, tmp_path: Path) -> None:
    dm = tmp_path / "dm.tsv"
    dm.write_text(
        "\tS4\tS3\tS2\tS1\tS0\n"
        "S4\t0\t0.1\t0.2\t0.3\t0.9\n"
        "S3\t0.1\t0\t0.4\t0.5\t0.9\n"
        "S2\t0.2\t0.4\t0\t0.6\t0.9\n"
        "S1\t0.3\t0.5\t0.6\t0\t0.9\n"
        "S0\t0.9\t0.9\t0.9\t0.9\t0\n"
    )
    inputs = load_inputs(
        data_dir / "io_good_table.biom",
        tree=data_dir / "io_good_tree.nwk",
        metadata=data_dir / "io_good_metadata.tsv",
        distance_matrix=dm,
    )
    assert inputs.table.sample_ids == ("S1", "S2", "S3", "S4")
    assert inputs.sequences == GOOD_FEATURES
    np.testing.assert_array_equal(inputs.table.counts.toarray(), GOOD_COUNTS)
    assert inputs.tree is not None and inputs.metadata is not None
    assert inputs.distances is not None
    np.testing.assert_array_equal(inputs.distances[0], [0, 0.6, 0.5, 0.3])  # S1 row
    summary = summarize(
        inputs.table, inputs.sequences, tree=inputs.tree, metadata=inputs.metadata, sha256={}
    )
    assert summary["sequence_length"] == {"min": 12, "max": 16}
    assert summary["sample_depth"] == {"min": 10, "median": 13.0, "max": 21}  # 16, 10, 10, 21
    assert summary["features_missing_from_tree"] == 0
    assert summary["metadata_columns"] == [
        # S3 is NA; 34.5, 41 and 29 are not all whole numbers
        {"name": "age", "kind": "numeric", "n_missing": 1, "n_distinct": 3, "integer": False},
        {"name": "site", "kind": "categorical", "n_missing": 1, "n_classes": 2},  # S4
        {"name": "batch", "kind": "categorical", "n_missing": 0, "n_classes": 2},  # q2:types
    ]
    assert summary["warnings"] == ["1 metadata rows match no table sample and are ignored"]


def test_hash_ids_resolve_through_representative_sequences(data_dir: Path) -> None:
    inputs = load_inputs(
        data_dir / "bad" / "non_dna_ids.biom", sequences=data_dir / "io_hash_sequences.fasta"
    )
    assert inputs.table.feature_ids[0] == hashlib.md5(GOOD_FEATURES[0].encode()).hexdigest()
    assert inputs.sequences == GOOD_FEATURES
    assert (inputs.tree, inputs.metadata, inputs.distances) == (None, None, None)


def test_names_are_used_in_messages(data_dir: Path, tmp_path: Path) -> None:
    stored = tmp_path / "9f86d081884c7d65"  # uploads are stored under hashes
    lines = (data_dir / "io_hash_sequences.fasta").read_text().splitlines()
    stored.write_text("\n".join(lines[:2]) + "\n")  # only the first feature's record
    with pytest.raises(SequenceError) as info:
        load_inputs(
            data_dir / "bad" / "non_dna_ids.biom",
            sequences=stored,
            names={"table": "study.biom", "sequences": "rep-seqs.fasta"},
        )
    assert str(info.value) == (
        "rep-seqs.fasta: 4 of 5 table features have no representative sequence (e.g. "
        "'18db298ebe6c752a5f9eff0944e2eaf0', 'e014dd4538a0a9ff6fe82147f5e29e56', "
        "'097dbe748cb6212d75184110af7a89c2', 'c61ce686d8364137c09adcc81e0a48ba')"
    )
    with pytest.raises(ValueError, match=r"names has unknown roles \['tabel'\]"):
        load_inputs(data_dir / "io_good_table.biom", names={"tabel": "x"})


def test_metadata_of_another_study_fails_at_load(data_dir: Path, tmp_path: Path) -> None:
    meta = tmp_path / "m.tsv"
    meta.write_text("id\tage\nX1\t1\nX2\t2\n")
    with pytest.raises(MetadataError, match=r"^wrong\.tsv: no sample ID in the metadata"):
        load_inputs(data_dir / "io_good_table.biom", metadata=meta, names={"metadata": "wrong.tsv"})


def test_sha256_file(tmp_path: Path) -> None:
    small = tmp_path / "abc"
    small.write_bytes(b"abc")
    assert sha256_file(small) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 vector
    )
    big = tmp_path / "big"
    data = np.random.default_rng(0).bytes(3 * 1024**2 + 17)
    big.write_bytes(data)
    assert sha256_file(big, chunk_size=1000) == hashlib.sha256(data).hexdigest()
