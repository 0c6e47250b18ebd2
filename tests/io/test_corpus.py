"""Every file of the bad-input corpus (tests/data/bad, written by make_bad.py) fails with its
exact error class and message. The API tests reuse the same files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aam_core.io import (
    ArchiveError,
    CountsError,
    DuplicateIdError,
    InputError,
    MetadataError,
    SequenceError,
    TreeError,
    UnreadableFileError,
    load_inputs,
    read_metadata,
    read_sequences,
    read_table,
    read_tree,
    require_tree_coverage,
)

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
GOOD_TABLE = BAD.parent / "io_good_table.biom"
UUID = "3f1c0a5e-6d7b-4c2a-9e8f-1b2c3d4e5f60"  # make_bad.py's archives


def _tree_covers_good_table(path: Path) -> None:
    require_tree_coverage(read_tree(path), read_table(GOOD_TABLE).feature_ids, file=path.name)


CASES: list[tuple[str, Callable[[Path], object], type[InputError], str]] = [
    (
        "truncated.biom",
        read_table,
        UnreadableFileError,
        "truncated.biom: cannot read as BIOM 2.1 (HDF5): truncated file (was the upload cut "
        "short?)",
    ),
    (
        "wrong_shape.json.biom",
        read_table,
        UnreadableFileError,
        "wrong_shape.json.biom: declared shape [3, 4] does not match the data: 3 rows "
        "(features) and 5 columns (samples)",
    ),
    (
        "negative_counts.json.biom",
        read_table,
        CountsError,
        "negative_counts.json.biom: 2 counts are negative, in 2 samples ('S2', 'S4'); counts "
        "must be whole numbers of reads from 0 to 10^12",
    ),
    (
        "fractional_counts.json.biom",
        read_table,
        CountsError,
        "fractional_counts.json.biom: 2 counts are non-integer, in 2 samples ('S1', 'S3'); "
        "counts must be whole numbers of reads from 0 to 10^12, not relative abundances",
    ),
    (
        "huge_count.json.biom",
        read_table,
        CountsError,
        "huge_count.json.biom: 1 counts are above 10^12, in 1 samples ('S2'); counts must be "
        "whole numbers of reads from 0 to 10^12",
    ),
    (
        "tab_in_sample_id.json.biom",
        read_table,
        UnreadableFileError,
        "tab_in_sample_id.json.biom: 1 sample IDs are empty or hold a control character (tab, "
        "newline, ...): 'S\\t2'; an ID must be printable text",
    ),
    (
        "duplicate_samples.json.biom",
        read_table,
        DuplicateIdError,
        "duplicate_samples.json.biom: 1 sample IDs appear more than once: 'S1'",
    ),
    (
        "non_dna_ids.biom",
        load_inputs,
        SequenceError,
        "non_dna_ids.biom: 5 of 5 feature IDs are not DNA sequences (e.g. "
        "'31e91beccf6059ff57c696827c0c6a4b', '18db298ebe6c752a5f9eff0944e2eaf0', "
        "'e014dd4538a0a9ff6fe82147f5e29e56', '097dbe748cb6212d75184110af7a89c2', "
        "'c61ce686d8364137c09adcc81e0a48ba'); QIIME 2 tables use hashes as IDs: upload the "
        "representative sequences (FASTA or FeatureData[Sequence] .qza)",
    ),
    (
        "no_lengths.nwk",
        read_tree,
        TreeError,
        "no_lengths.nwk: 3 of 6 branches have no length (e.g. 'n1', 'TTGACCATGGCAA', "
        "'CATGNCATGCATGCA'); UniFrac needs a length on every branch",
    ),
    (
        "unrooted.nwk",
        read_tree,
        TreeError,
        "unrooted.nwk: tree is not rooted: its root has 3 children; root it first "
        "(e.g. `qiime phylogeny midpoint-root`)",
    ),
    (
        "missing_asvs.nwk",
        _tree_covers_good_table,
        TreeError,
        "missing_asvs.nwk: 2 of 5 table features are missing from the tree (e.g. "
        "'CATGNCATGCATGCA', 'AAACCCGGGTTTACGT')",
    ),
    (
        "duplicate_ids.tsv",
        read_metadata,
        MetadataError,
        "duplicate_ids.tsv: 2 sample IDs appear more than once: 'S1', 'S2'",
    ),
    (
        "bad_id_header.tsv",
        read_metadata,
        MetadataError,
        "bad_id_header.tsv: the first column is 'subject', not a sample ID header; expected one "
        "of '#SampleID', '#Sample ID', 'sample-id', 'sample id', 'sampleid', 'sample_id', "
        "'sample_name', 'sample name', 'id', 'feature-id', 'feature id', 'featureid', '#OTUID', "
        "'#OTU ID' (any case)",
    ),
    (
        "non_dna.fasta",
        read_sequences,
        SequenceError,
        "non_dna.fasta: 2 of 3 sequences are not DNA (A/C/G/T or IUPAC codes): 'a2', 'a3'",
    ),
    (
        "path_traversal.qza",
        read_table,
        ArchiveError,
        "path_traversal.qza: unsafe member name '../../etc/passwd' (absolute paths and '..' are "
        "not allowed); refusing the archive",
    ),
    (
        "wrong_type.qza",
        read_table,
        ArchiveError,
        "wrong_type.qza: expected a FeatureTable[Frequency] archive, found "
        "FeatureTable[RelativeFrequency]; counts must be reads, not relative frequencies",
    ),
    (
        "zip_bomb.qza",
        read_table,
        ArchiveError,
        "zip_bomb.qza: the archive declares 4.5 GiB (4831838343 bytes) of uncompressed content, "
        "over the 4.0 GiB limit; refusing a likely zip bomb",
    ),
    (
        "zip_bomb_lying.qza",
        read_table,
        ArchiveError,
        f"zip_bomb_lying.qza: member '{UUID}/data/feature-table.biom' decompresses to more than "
        "the 1024 bytes its header declares; refusing a likely zip bomb",
    ),
]


def test_every_corpus_file_has_a_case() -> None:
    # the checkpoints (*.pt) have their cases in tests/test_checkpoint.py
    corpus = {p.name for p in BAD.iterdir() if p.suffix not in (".py", ".pt")}
    assert corpus == {name for name, *_ in CASES}
    assert all(p.stat().st_size < 50_000 for p in BAD.iterdir())


@pytest.mark.parametrize(("name", "reader", "error", "message"), CASES, ids=[c[0] for c in CASES])
def test_corpus_file_fails_with_its_message(
    name: str, reader: Callable[[Path], object], error: type[InputError], message: str
) -> None:
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        reader(BAD / name)
    assert type(info.value) is error
    assert str(info.value) == message
    assert time.perf_counter() - start < 5  # the bombs are refused, never inflated


def test_good_table_reads(data_dir: Path) -> None:
    table = read_table(data_dir / "io_good_table.biom")
    assert (table.n_samples, table.n_features, int(table.counts.sum())) == (4, 5, 57)
