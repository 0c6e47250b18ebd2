from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from aam_core.io import (
    ArchiveError,
    DuplicateIdError,
    EmptyInputError,
    FeatureTable,
    SequenceError,
    UnreadableFileError,
    is_dna,
    read_sequences,
    resolve_sequences,
)
from aam_core.io.archive import SEQUENCE_MEMBER


def _table(feature_ids: list[str]) -> FeatureTable:
    counts = sp.csr_matrix(np.ones((2, len(feature_ids)), dtype=np.int64))
    return FeatureTable(("a", "b"), tuple(feature_ids), counts, source="t.biom")


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        ("ACGT", True),
        ("acgtn", True),
        ("RYSWKMBDHVN", True),
        ("ryswkmbdhvn", True),
        ("", False),
        ("ACGU", False),  # RNA
        ("AC-GT", False),  # aligned
        ("ACG T", False),
        ("4a7d1ed414474e4033ac29ccb8653d9b", False),  # a QIIME 2 MD5 feature ID
        ("ACGTX", False),
    ],
)
def test_is_dna(s: str, expected: bool) -> None:
    assert is_dna(s) is expected


def test_read_fasta_uppercases_and_keeps_order(tmp_path: Path) -> None:
    path = tmp_path / "rep.fasta"
    path.write_text(">h1 some description\nacgt\nNNAC\n>h2\nTTGA\n")
    assert read_sequences(path) == {"h1": "ACGTNNAC", "h2": "TTGA"}
    assert list(read_sequences(path)) == ["h1", "h2"]


def test_read_feature_data_sequence_archive(make_qza) -> None:
    path = make_qza("FeatureData[Sequence]", {SEQUENCE_MEMBER: b">h1\nACGT\n>h2\nggcc\n"})
    assert read_sequences(path) == {"h1": "ACGT", "h2": "GGCC"}
    wrong = make_qza("FeatureData[AlignedSequence]", {"data/aligned-dna-sequences.fasta": b""})
    with pytest.raises(ArchiveError) as info:
        read_sequences(wrong, name="aligned.qza")
    assert str(info.value) == (
        "aligned.qza: expected a FeatureData[Sequence] archive, found FeatureData[AlignedSequence]"
    )


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (
            ">a\nACGT\n>b\nACGU\n>c\nAC-GT\n>d\nNNN\n",
            SequenceError,
            "s.fa: 2 of 4 sequences are not DNA (A/C/G/T or IUPAC codes): 'b', 'c'",
        ),
        (
            ">a\nACGT\n>b\nAC\n>a\nGG\n",
            DuplicateIdError,
            "s.fa: 1 sequence IDs appear more than once: 'a'",
        ),
        ("", EmptyInputError, "s.fa: the file holds no sequences"),
        (">a\nACGT\n>\nAC\n", SequenceError, "s.fa: 1 records have an empty ID (records 2)"),
        (
            "ACGT\n",
            UnreadableFileError,
            "s.fa: cannot parse as FASTA: Found non-header line when attempting to read the 1st "
            "record:",
        ),
        (
            ">a\n\n>b\nAC\n",
            UnreadableFileError,
            "s.fa: cannot parse as FASTA: Found header without sequence data.",
        ),
    ],
)
def test_bad_fasta(tmp_path: Path, content: str, error: type, message: str) -> None:
    path = tmp_path / "stored-under-a-hash"
    path.write_text(content)
    with pytest.raises(error) as info:
        read_sequences(path, name="s.fa")
    assert str(info.value) == message


def test_feature_ids_that_are_dna_resolve_to_themselves() -> None:
    assert resolve_sequences(_table(["acgt", "GGNN"]), None) == ("ACGT", "GGNN")


def test_hash_ids_without_sequences_are_an_error() -> None:
    ids = ["ACGT", "h1", "h2", "GG", "h3", "h4", "h5", "h6", "h7"]
    with pytest.raises(SequenceError) as info:
        resolve_sequences(_table(ids), None)
    assert str(info.value) == (
        "t.biom: 7 of 9 feature IDs are not DNA sequences (e.g. 'h1', 'h2', 'h3', 'h4', 'h5' "
        "and 2 more); QIIME 2 tables use hashes as IDs: upload the representative sequences "
        "(FASTA or FeatureData[Sequence] .qza)"
    )


def test_sequences_map_ids_and_may_repeat() -> None:
    reps = {"h1": "ACGT", "h2": "ACGT", "h3": "ttga", "unused": "C"}
    assert resolve_sequences(_table(["h3", "h1", "h2"]), reps) == ("TTGA", "ACGT", "ACGT")


def test_features_missing_from_the_sequences() -> None:
    reps = {"h1": "ACGT"}
    with pytest.raises(SequenceError) as info:
        resolve_sequences(_table(["h1", "h2", "h3"]), reps, file="rep-seqs.qza")
    assert str(info.value) == (
        "rep-seqs.qza: 2 of 3 table features have no representative sequence (e.g. 'h2', 'h3')"
    )


def test_hand_built_mapping_must_hold_dna() -> None:
    with pytest.raises(SequenceError) as info:
        resolve_sequences(_table(["h1", "h2"]), {"h1": "ACGT", "h2": "AC-T"})
    assert str(info.value) == (
        "1 of 2 table features map to sequences that are not DNA (e.g. 'h2')"
    )
