"""The samples a cross-validation compares its models on (:class:`Study`), read from a study
folder or from inputs already loaded (a job's files).

Every model sees the same samples in one order: those with a target value and at least
``min_reads`` reads (and, for the benchmark, matching ``--where`` rules). A sample's group is
its subject (``group``'s value); a sample without one is a group of its own, as in
:mod:`aam_core.train.prepare`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from aam_core.data.rarefy import rarefy
from aam_core.errors import ConfigError
from aam_core.io import Inputs, align_metadata, load_files
from aam_core.io.types import FeatureTable
from aam_core.plan import TargetSpec
from aam_core.plan.targets import Task
from aam_core.train.prepare import target_values

# A study folder's files, by role (the layout of the public data pack).
FILES = {
    "table": "table.biom",
    "tree": "tree.nwk",
    "metadata": "metadata.tsv",
    "sequences": "rep-seqs.fasta",
}
MIN_READS = 1000  # samples with fewer reads are left out of every model


def clr(counts: sp.spmatrix, pseudocount: float = 0.5) -> np.ndarray:
    """Centred log-ratio of counts + ``pseudocount``: dense float64 [n_samples, n_features]."""
    logs = np.log(np.asarray(counts.todense(), dtype=np.float64) + pseudocount)
    return logs - logs.mean(axis=1, keepdims=True)


@dataclass(frozen=True, eq=False)
class Study:
    """The samples every model sees, in one order: row i of every array is sample i."""

    name: str
    inputs: Inputs  # table subset to the kept samples; sequences, tree, metadata unchanged
    target: TargetSpec
    group: str | None  # None: every sample is its own group (AAM gets no group_column)
    y: np.ndarray  # float64 [n] (regression) or str [n] (class names)
    groups: np.ndarray  # str [n], spelt as aam_core.train.prepare spells them
    classes: tuple[str, ...]  # sorted class names; () for regression
    notes: dict[str, int]  # samples dropped, by reason
    # (seed, depth) -> every sample as AAM reads it; filled by as_aam_reads
    _reads: dict[tuple[int, int], FeatureTable] = dataclasses.field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def sample_ids(self) -> np.ndarray:  # str [n]
        return np.array(self.inputs.table.sample_ids)

    @functools.cached_property
    def codes(self) -> np.ndarray:  # int64 [n] class indices (classification)
        return np.searchsorted(np.array(self.classes), self.y)

    @functools.cached_property
    def raw_logratios(self) -> np.ndarray:  # float64 [n, n_features]: linear_raw's features
        return clr(self.inputs.table.counts)

    @functools.cached_property
    def log_depths(self) -> np.ndarray:  # float64 [n, 1]: the depth model's one feature
        return np.log(self.inputs.table.depths().astype(np.float64))[:, None]

    def as_aam_reads(self, seed: int, depth: int) -> FeatureTable:
        """Every sample as an AAM run of ``seed`` at ``depth`` reads it, in study order: rarefied
        to ``depth`` (``aam_core.data.rarefy.rarefy`` seeded by ``seed``) when it has at least
        ``depth`` reads; as it is when shallower, as AAM predicts such a sample (it never trains
        on one). The same rule and seed as AAM's, not its very draws, which follow a sample's
        row in the fold's table (training) or its content (prediction). Drawn once per (seed,
        depth) and kept: the folds of one seed usually share their depth."""
        if (seed, depth) not in self._reads:
            table = self.inputs.table
            drawn = rarefy(table, depth, seed=seed)
            shallow = np.setdiff1d(np.arange(table.n_samples), drawn.kept_rows)  # [n - kept]
            stacked = sp.vstack([drawn.table.counts, table.counts[shallow]]).tocsr()
            order = np.argsort(np.concatenate([drawn.kept_rows, shallow]))  # back to study rows
            counts = sp.csr_matrix(stacked[order], dtype=np.int64)  # [n, n_features]
            self._reads[seed, depth] = dataclasses.replace(table, counts=counts)
        return self._reads[seed, depth]


def read_folder(directory: Path) -> Inputs:
    """A study folder's files (:data:`FILES`; all but the table optional)."""
    paths = {role: directory / name for role, name in FILES.items()}
    return load_files({r: p if p.exists() or r == "table" else None for r, p in paths.items()})


def load_study(
    directory: Path,
    target: str,
    task: Task,
    group: str | None,
    where: Sequence[str] = (),
    min_reads: int = MIN_READS,
) -> Study:
    """:func:`make_study` of a study folder's files, named after the folder."""
    inputs = read_folder(directory)
    return make_study(
        inputs, TargetSpec(target, task), group, where, min_reads, name=directory.resolve().name
    )


def make_study(
    inputs: Inputs,
    target: TargetSpec,
    group: str | None,
    where: Sequence[str] = (),
    min_reads: int = MIN_READS,
    *,
    name: str = "the dataset",
) -> Study:
    """The samples with a target value (read as AAM reads it), at least ``min_reads`` reads
    and matching every ``where`` rule (``COLUMN=VALUE``)."""
    if inputs.metadata is None:
        raise ConfigError(f"{name} has no metadata: the target is read from it", field="metadata")
    frame, _, _ = align_metadata(inputs.metadata, inputs.table.sample_ids)
    values, _, present = target_values(inputs, target)  # AAM's reading
    keep, notes = present.copy(), {"without a target value": int((~present).sum())}
    for rule in where:
        column, sep, wanted = rule.partition("=")
        if not sep or column not in frame.columns:
            raise ConfigError(
                f"where {rule!r}: expected COLUMN=VALUE with a metadata column", field="where"
            )
        if inputs.metadata.column(column).kind == "numeric":
            match = frame[column].to_numpy(np.float64) == float(wanted)
        else:
            match = (frame[column] == wanted).to_numpy(bool)
        notes[f"not {rule}"] = int((keep & ~match).sum())
        keep &= match
    shallow = inputs.table.depths() < min_reads
    notes[f"below {min_reads} reads"] = int((keep & shallow).sum())
    rows = np.flatnonzero(keep & ~shallow)
    if group is not None and group not in frame.columns:
        raise ConfigError(f"group column {group!r} is not a metadata column", field="group_column")
    ids = [inputs.table.sample_ids[i] for i in rows]
    groups = ids  # as aam_core.train.prepare: a sample without a group is a group of its own
    if group is not None:
        column = frame[group].iloc[rows]
        groups = [
            str(v) if pd.notna(v) else f"\0ungrouped:{sid}"
            for v, sid in zip(column, ids, strict=True)
        ]
    y = values[rows] if target.task == "classification" else values[rows].astype(np.float64)
    return Study(
        name=name,
        inputs=dataclasses.replace(inputs, table=inputs.table.subset_samples(rows)),
        target=target,
        group=group,
        y=y,
        groups=np.array(groups),
        classes=tuple(sorted(set(y.tolist()))) if target.task == "classification" else (),
        notes=notes,
    )
