"""Readers and validation for a dataset's files: BIOM/.qza tables, trees, metadata,
representative sequences and distance matrices; the prediction tables runs write
(``aam_core.io.predictions``). No torch here (import-linter enforces it).

The names below load from their modules on first use: ``aam_core.io.errors`` alone does not
import scikit-bio (and through it PyTorch)."""

from typing import TYPE_CHECKING

from aam_core import lazy_attributes

if TYPE_CHECKING:
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
    from aam_core.io.inputs import Inputs, file_hashes, load_files, load_inputs, sha256_file
    from aam_core.io.metadata import align_metadata, read_metadata
    from aam_core.io.sequences import is_dna, read_sequences, resolve_sequences
    from aam_core.io.summary import summarize
    from aam_core.io.table import read_table, zero_count_samples
    from aam_core.io.tree import missing_tips, read_tree, require_tree_coverage, validate_tree
    from aam_core.io.types import ROLES, ColumnKind, FeatureTable, Metadata, MetadataColumn

_HOME = {
    "DEFAULT_MAX_BYTES": "archive",
    "ArchiveInfo": "archive",
    "read_archive_info": "archive",
    "read_distance_matrix": "distance",
    "ArchiveError": "errors",
    "CountsError": "errors",
    "DistanceMatrixError": "errors",
    "DuplicateIdError": "errors",
    "EmptyInputError": "errors",
    "InputError": "errors",
    "MetadataError": "errors",
    "SequenceError": "errors",
    "TreeError": "errors",
    "UnreadableFileError": "errors",
    "preview": "errors",
    "ROLES": "types",
    "Inputs": "inputs",
    "file_hashes": "inputs",
    "load_files": "inputs",
    "load_inputs": "inputs",
    "sha256_file": "inputs",
    "align_metadata": "metadata",
    "read_metadata": "metadata",
    "is_dna": "sequences",
    "read_sequences": "sequences",
    "resolve_sequences": "sequences",
    "summarize": "summary",
    "read_table": "table",
    "zero_count_samples": "table",
    "missing_tips": "tree",
    "read_tree": "tree",
    "require_tree_coverage": "tree",
    "validate_tree": "tree",
    "ColumnKind": "types",
    "FeatureTable": "types",
    "Metadata": "types",
    "MetadataColumn": "types",
}

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ROLES",
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
    "file_hashes",
    "is_dna",
    "load_files",
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

__getattr__ = lazy_attributes(__name__, _HOME)
