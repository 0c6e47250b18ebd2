"""In-memory forms of the inputs, shared by readers, the data pipeline and the service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

# The files of a dataset, by role (the API's upload form fields, the CLI's options).
ROLES = ("table", "tree", "metadata", "sequences", "distance_matrix")

ColumnKind = Literal["numeric", "categorical"]


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """Integer read counts, samples as rows (the transpose of BIOM's layout).

    ``counts`` is CSR ``int64 [n_samples, n_features]`` with no stored zeros.
    """

    sample_ids: tuple[str, ...]
    feature_ids: tuple[str, ...]
    counts: sp.csr_matrix
    source: str = "table"

    @property
    def n_samples(self) -> int:
        return len(self.sample_ids)

    @property
    def n_features(self) -> int:
        return len(self.feature_ids)

    def depths(self) -> np.ndarray:
        """Reads per sample, ``int64 [n_samples]``."""
        return np.asarray(self.counts.sum(axis=1)).ravel().astype(np.int64)

    def row_counts(self, row: int) -> dict[str, int]:
        """One sample's non-zero counts by feature ID (e.g. for a JSON prediction request)."""
        lo, hi = self.counts.indptr[row], self.counts.indptr[row + 1]
        features, counts = self.counts.indices[lo:hi], self.counts.data[lo:hi]
        return {self.feature_ids[j]: int(c) for j, c in zip(features, counts, strict=True)}

    def subset_samples(self, rows: np.ndarray) -> FeatureTable:
        """Keep the samples at ``rows`` (in that order); features are unchanged."""
        rows = np.asarray(rows, dtype=np.int64)
        return FeatureTable(
            sample_ids=tuple(self.sample_ids[i] for i in rows),
            feature_ids=self.feature_ids,
            counts=self.counts[rows].tocsr(),
            source=self.source,
        )

    def subset_features(self, columns: np.ndarray) -> FeatureTable:
        """Keep the features at ``columns`` (in that order); samples are unchanged."""
        columns = np.asarray(columns, dtype=np.int64)
        return FeatureTable(
            sample_ids=self.sample_ids,
            feature_ids=tuple(self.feature_ids[j] for j in columns),
            counts=self.counts[:, columns].tocsr(),
            source=self.source,
        )


@dataclass(frozen=True)
class MetadataColumn:
    name: str
    kind: ColumnKind
    n_missing: int
    n_classes: int | None = None  # categorical columns only
    n_distinct: int | None = None  # numeric columns only: distinct present values
    integer: bool | None = None  # numeric columns only: every present value is a whole number


@dataclass(frozen=True, eq=False)
class Metadata:
    """Sample metadata: ``frame`` is indexed by sample ID (str); numeric columns are float64
    (NaN = missing) and categorical columns are object dtype holding str or None."""

    frame: pd.DataFrame
    columns: tuple[MetadataColumn, ...]
    source: str = "metadata"
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def column(self, name: str) -> MetadataColumn:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)
