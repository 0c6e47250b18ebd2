"""Read and cross-check one dataset's files in one call (what ``POST /datasets`` validates)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skbio import TreeNode

from aam_core.io.archive import DEFAULT_MAX_BYTES
from aam_core.io.distance import read_distance_matrix
from aam_core.io.metadata import align_metadata, read_metadata
from aam_core.io.sequences import read_sequences, resolve_sequences
from aam_core.io.table import read_table
from aam_core.io.tree import read_tree
from aam_core.io.types import ROLES, FeatureTable, Metadata


@dataclass(frozen=True, eq=False)
class Inputs:
    table: FeatureTable
    sequences: tuple[str, ...]  # one uppercase DNA string per table feature
    tree: TreeNode | None = None
    metadata: Metadata | None = None
    distances: np.ndarray | None = None  # float64 [n_samples, n_samples], table order


def load_inputs(
    table: str | Path,
    *,
    tree: str | Path | None = None,
    metadata: str | Path | None = None,
    sequences: str | Path | None = None,
    distance_matrix: str | Path | None = None,
    names: Mapping[str, str] | None = None,
    max_archive_bytes: int = DEFAULT_MAX_BYTES,
) -> Inputs:
    """Read every given file and check them against the table.

    ``names`` maps a role (``table``, ``tree``, ``metadata``, ``sequences``,
    ``distance_matrix``) to the file name shown in messages. Raises an ``InputError`` for the
    first problem found: features without DNA, or metadata that shares no sample with the
    table. Tree tips missing for some features are left to the caller (``summarize`` counts
    them; training that needs UniFrac calls ``require_tree_coverage``).
    """
    named = dict(names or {})
    unknown = sorted(set(named) - set(ROLES))
    if unknown:
        raise ValueError(f"names has unknown roles {unknown}; expected some of {list(ROLES)}")
    counts = read_table(table, name=named.get("table"), max_archive_bytes=max_archive_bytes)
    reps = None
    if sequences is not None:
        reps = read_sequences(
            sequences, name=named.get("sequences"), max_archive_bytes=max_archive_bytes
        )
    resolved = resolve_sequences(
        counts, reps, file=named.get("sequences") or (Path(sequences).name if sequences else None)
    )
    phylogeny = None
    if tree is not None:
        phylogeny = read_tree(tree, name=named.get("tree"), max_archive_bytes=max_archive_bytes)
    samples = None
    if metadata is not None:
        samples = read_metadata(metadata, name=named.get("metadata"))
        align_metadata(samples, counts.sample_ids)  # the wrong study's metadata fails here
    distances = None
    if distance_matrix is not None:
        distances = read_distance_matrix(
            distance_matrix, counts.sample_ids, name=named.get("distance_matrix")
        )
    return Inputs(
        table=counts, sequences=resolved, tree=phylogeny, metadata=samples, distances=distances
    )


def load_files(files: Mapping[str, str | Path | None], **options: Any) -> Inputs:
    """:func:`load_inputs` over ``role -> path`` (roles of ``ROLES``; None: not given); messages
    name each file as given, unless ``names`` (an option of load_inputs) says otherwise."""
    given = {role: path for role, path in files.items() if path is not None}
    unknown = sorted(set(given) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown file roles {unknown}; expected some of {list(ROLES)}")
    if "table" not in given:
        raise ValueError("a dataset's files include its table")
    options.setdefault("names", {role: str(path) for role, path in given.items()})
    return load_inputs(
        given["table"],
        tree=given.get("tree"),
        metadata=given.get("metadata"),
        sequences=given.get("sequences"),
        distance_matrix=given.get("distance_matrix"),
        **options,
    )


def file_hashes(files: Mapping[str, str | Path | None]) -> dict[str, str]:
    """``role -> SHA-256`` of the given files."""
    return {role: sha256_file(path) for role, path in files.items() if path is not None}


def sha256_file(path: str | Path, *, chunk_size: int = 1024**2) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
