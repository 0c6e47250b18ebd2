"""Readers and validation for a dataset's files: BIOM/.qza tables, trees, metadata,
representative sequences and distance matrices. No torch here (import-linter enforces it)."""

from aam_core.io.archive import DEFAULT_MAX_BYTES, ArchiveInfo, read_archive_info
from aam_core.io.distance import read_distance_matrix
from aam_core.io.errors import (
    ArchiveError,
    CountsError,
    DistanceMatrixError,
    DuplicateIdError,
    EmptyInputError,
    InputError,
    MetadataError,
    SequenceError,
    TreeError,
    UnreadableFileError,
    preview,
)
from aam_core.io.inputs import Inputs, load_inputs, sha256_file
from aam_core.io.metadata import align_metadata, read_metadata
from aam_core.io.sequences import is_dna, read_sequences, resolve_sequences
from aam_core.io.summary import summarize
from aam_core.io.table import read_table, zero_count_samples
from aam_core.io.tree import missing_tips, read_tree, require_tree_coverage, validate_tree
from aam_core.io.types import ColumnKind, FeatureTable, Metadata, MetadataColumn

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ArchiveError",
    "ArchiveInfo",
    "ColumnKind",
    "CountsError",
    "DistanceMatrixError",
    "DuplicateIdError",
    "EmptyInputError",
    "FeatureTable",
    "InputError",
    "Inputs",
    "Metadata",
    "MetadataColumn",
    "MetadataError",
    "SequenceError",
    "TreeError",
    "UnreadableFileError",
    "align_metadata",
    "is_dna",
    "load_inputs",
    "missing_tips",
    "preview",
    "read_archive_info",
    "read_distance_matrix",
    "read_metadata",
    "read_sequences",
    "read_table",
    "read_tree",
    "require_tree_coverage",
    "resolve_sequences",
    "sha256_file",
    "summarize",
    "validate_tree",
    "zero_count_samples",
]
