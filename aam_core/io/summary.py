"""The dataset summary that ``POST /datasets`` answers with (less id, name and created_at)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from skbio import TreeNode

from aam_core.io.errors import preview
from aam_core.io.metadata import align_metadata, describe
from aam_core.io.table import zero_count_samples
from aam_core.io.tree import missing_tips
from aam_core.io.types import FeatureTable, Metadata


def summarize(
    table: FeatureTable,
    sequences: Sequence[str],
    *,
    tree: TreeNode | None = None,
    metadata: Metadata | None = None,
    sha256: dict[str, str],
    warnings: Iterable[str] = (),
    default_depth: tuple[int, str | None] | None = None,
) -> dict[str, Any]:
    """Counts, depths, coverage and metadata columns of validated inputs, as plain JSON types.

    ``default_depth`` is the rarefaction depth a run without ``rarefaction_depth`` would use,
    with the rule's note (``aam_core.data.rarefy.choose_depth``, which this layer may not
    import): recorded with the number of samples it keeps.

    Metadata columns are described over the table's samples only: a sample without metadata
    counts as missing in every column, and metadata rows for other samples are ignored.
    """
    notes = list(warnings)
    depths = table.depths()
    empty = zero_count_samples(table)
    if empty:
        notes.append(
            f"{len(empty)} samples have zero reads and will be dropped by rarefaction: "
            f"{preview(empty)}"
        )
    missing = [] if tree is None else missing_tips(tree, table.feature_ids)
    if missing:
        notes.append(
            f"{len(missing)} of {table.n_features} table features are missing from the "
            f"tree (e.g. {preview(missing)}); UniFrac cannot use them"
        )
    columns: list[dict[str, Any]] = []
    n_without = 0
    if metadata is not None:
        columns, n_without, metadata_notes = _describe_metadata(metadata, table)
        notes.extend(metadata_notes)
    lengths = [len(s) for s in sequences]
    return {
        "n_samples": table.n_samples,
        "n_features": table.n_features,
        "sequence_length": {"min": min(lengths), "max": max(lengths)},
        "sample_depth": {
            "min": int(depths.min()),
            "median": float(np.median(depths)),
            "max": int(depths.max()),
        },
        "depth_histogram": depth_histogram(depths),
        "default_rarefaction": _default_rarefaction(depths, default_depth),
        "has_tree": tree is not None,
        "features_missing_from_tree": len(missing),
        "metadata_columns": columns,
        "samples_missing_metadata": n_without,
        "sha256": dict(sha256),
        "warnings": notes,
    }


def _describe_metadata(
    metadata: Metadata, table: FeatureTable
) -> tuple[list[dict[str, Any]], int, list[str]]:
    """Each metadata column described over the table's samples, the number of table samples
    without metadata, and the notes on rows that do not match."""
    frame, n_without, n_extra = align_metadata(metadata, table.sample_ids)
    columns: list[dict[str, Any]] = []
    for col in metadata.columns:
        seen = describe(col.name, col.kind, frame[col.name])
        entry: dict[str, Any] = {"name": col.name, "kind": col.kind, "n_missing": seen.n_missing}
        for key in ("n_classes", "n_distinct", "integer"):
            if getattr(seen, key) is not None:
                entry[key] = getattr(seen, key)
        columns.append(entry)
    notes: list[str] = []
    if n_without:
        notes.append(f"{n_without} of {table.n_samples} table samples have no metadata")
    if n_extra:
        notes.append(f"{n_extra} metadata rows match no table sample and are ignored")
    notes.extend(metadata.warnings)
    return columns, n_without, notes


def _default_rarefaction(
    depths: np.ndarray, default_depth: tuple[int, str | None] | None
) -> dict[str, Any] | None:
    """The default rarefaction depth with its note and the number of samples it keeps."""
    if default_depth is None:
        return None
    depth, note = default_depth
    return {"depth": int(depth), "samples_kept": int((depths >= depth).sum()), "note": note}


HISTOGRAM_BINS = 20


def depth_histogram(depths: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Samples' read depths in ``bins`` log-spaced bins from the shallowest nonzero depth to the
    deepest: ``edges`` (``bins + 1`` of them; each bin holds ``edges[i] <= d < edges[i + 1]``,
    the last one also its right edge), ``counts``, and ``zero`` (samples without reads, which a
    log scale cannot place). One bin when every nonzero depth is the same."""
    depths = np.asarray(depths, dtype=np.int64)
    positive = depths[depths > 0]
    zero = int(depths.size - positive.size)
    if positive.size == 0:
        return {"edges": [], "counts": [], "zero": zero}
    low, high = int(positive.min()), int(positive.max())
    if low == high:
        return {"edges": [float(low), float(high)], "counts": [int(positive.size)], "zero": zero}
    edges = np.geomspace(low, high, bins + 1)
    edges[0], edges[-1] = low, high  # exact ends: geomspace may round them
    counts, _ = np.histogram(positive, bins=edges)
    return {
        "edges": [round(float(e), 3) for e in edges],
        "counts": [int(c) for c in counts],
        "zero": zero,
    }
