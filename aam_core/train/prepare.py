"""From a dataset's inputs to what a run trains on: samples with a target, rarefied, tokenised,
split, with UniFrac targets from the tree (or a precomputed matrix), and a report of every
sample left out and why.

The split is seeded: stratified for classification, grouped by a metadata column (e.g. host
subject) so that no group spans train and validation. A run lists it in ``split.tsv``
(:func:`write_split_tsv`), which :func:`read_split_tsv` reads back and whose digest
(:func:`split_sha256`) its checkpoints record.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, train_test_split

from aam_core.data.batching import Collator, SampleDataset
from aam_core.data.rarefy import rarefy
from aam_core.data.tokens import tokenize
from aam_core.data.unifrac import UniFracEngine, index_branches
from aam_core.errors import ConfigError
from aam_core.io import Inputs, align_metadata, preview, require_tree_coverage
from aam_core.io.errors import InputError, TargetError, TreeError
from aam_core.io.files import atomic_write
from aam_core.io.metadata import describe
from aam_core.io.types import FeatureTable
from aam_core.plan.config import RunConfig
from aam_core.plan.targets import TargetSpec, check_target, missing_column

WHERE = "the dataset"  # how messages name the inputs of a run
# A split of up to this many samples gets its UniFrac matrix computed once (float64: 128 MiB
# at the limit) when its rarefaction is drawn once; larger ones compute each batch's.
PRECOMPUTED_UNIFRAC_MAX = 4096
Vocabulary = tuple[tuple[str, ...], np.ndarray]  # the ASVs, and each feature's 1-based row


@dataclass(frozen=True, eq=False)
class PreparedData:
    table: FeatureTable  # kept samples, raw counts, features present in them
    rarefied: FeatureTable  # the same samples rarefied once (seeded): model and baseline input
    sequences: tuple[str, ...]  # per feature of ``table``
    depth: int
    tokens: np.ndarray  # uint8 [n_features, max_bp]
    split: Split
    targets: np.ndarray | None = None  # float32 [n] (regression) or int64 [n] (class index)
    classes: tuple[str, ...] | None = None
    engine: UniFracEngine | None = None
    distances: np.ndarray | None = None  # precomputed UniFrac over ``table``'s samples
    report: dict[str, Any] = field(default_factory=dict)

    def dataset(self, rows: np.ndarray, config: RunConfig) -> SampleDataset:
        """Samples at ``rows``: the shared rarefied draw, or a new draw every epoch."""
        targets = None if self.targets is None else self.targets[rows]
        if config.rerarefy:
            return SampleDataset(
                self.table.subset_samples(rows),
                depth=self.depth,
                seed=config.seed,
                rerarefy=True,
                targets=targets,
                sequences=self.sequences,
            )
        return SampleDataset(
            self.rarefied.subset_samples(rows), targets=targets, sequences=self.sequences
        )

    def asv_vocabulary(self) -> Vocabulary:
        """The ASVs with reads in the train split, sorted by sequence (identity embeddings
        learn from them alone), and each feature's row among them, 1-based (0: not one)."""
        train = self.rarefied.subset_samples(self.split.train).counts
        seen = np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() > 0)  # [V] feature indices
        order = seen[np.argsort(np.array([self.sequences[f] for f in seen]), kind="stable")]
        rows = np.zeros(len(self.sequences), dtype=np.int64)  # [n_features]
        rows[order] = np.arange(1, order.size + 1)
        return tuple(self.sequences[f] for f in order), rows

    def train_distances(self, rows: np.ndarray) -> np.ndarray:
        """UniFrac distances ``float64 [n_pairs]`` between the samples at ``rows`` (each pair
        i < j once), from the tree or the precomputed matrix."""
        if self.distances is not None:
            matrix = self.distances[np.ix_(rows, rows)]
        else:
            assert self.engine is not None, "distances need a tree or a distance matrix"
            matrix = self.engine.unweighted(self.rarefied.counts[rows]).numpy()
        i, j = np.triu_indices(rows.size, k=1)
        return np.asarray(matrix[i, j], dtype=np.float64)

    def collator(
        self, config: RunConfig, rows: np.ndarray, vocabulary: np.ndarray | None = None
    ) -> Collator:
        engine, distances, faith = self.engine, None, None
        if self.distances is not None:  # batches index dataset rows: subset the matrix once
            distances = self.distances[np.ix_(rows, rows)]
        elif engine is not None and not config.rerarefy and rows.size <= PRECOMPUTED_UNIFRAC_MAX:
            # The counts never change (one rarefaction for the run): every batch's targets
            # come from one matrix, computed once instead of batch by batch every epoch.
            matrix, diversity = engine.unweighted_and_faith_pd(self.rarefied.counts[rows])
            engine, distances, faith = None, matrix.numpy(), diversity.numpy()
        return Collator(
            self.tokens,
            token_limit=config.token_limit,
            engine=engine,
            distances=distances,
            faith_pd=faith,
            target_dtype=_target_dtype(self.classes),
            vocabulary=vocabulary,
        )


def _target_dtype(classes: tuple[str, ...] | None) -> Any:
    import torch

    return torch.int64 if classes is not None else torch.float32


def target_values(
    inputs: Inputs, spec: TargetSpec
) -> tuple[np.ndarray, tuple[str, ...] | None, np.ndarray]:
    """Per table sample: the target (float, or label str), class names, and a mask of samples
    that have one. A column that cannot be learnt as ``spec.task`` is refused by the target
    rule (:func:`aam_core.plan.check_target`), over the table's samples."""
    if inputs.metadata is None:
        raise TargetError(
            f"training on {spec.column!r} needs sample metadata; none was given",
            field="target.column",
        )
    frame, _, _ = align_metadata(inputs.metadata, inputs.table.sample_ids)
    columns = [
        dataclasses.asdict(describe(c.name, c.kind, frame[c.name])) for c in inputs.metadata.columns
    ]
    check_target(spec, columns, inputs.table.n_samples, WHERE)
    values = frame[spec.column]
    if spec.task == "regression":
        numeric = values.to_numpy(dtype=np.float64)
        return numeric, None, np.isfinite(numeric)
    if inputs.metadata.column(spec.column).kind == "numeric":
        numeric = values.to_numpy(dtype=np.float64)
        present = np.isfinite(numeric)
        labels = np.array(
            [str(int(v)) if ok else "" for v, ok in zip(numeric, present, strict=True)]
        )
    else:
        present = values.notna().to_numpy()
        labels = np.array([str(v) if ok else "" for v, ok in zip(values, present, strict=True)])
    classes = tuple(sorted(set(labels[present].tolist())))
    return labels, classes, present


def prepare_data(
    inputs: Inputs,
    config: RunConfig,
    *,
    target: TargetSpec | None = None,
    need_unifrac: bool = False,
    need_faith_pd: bool = False,
) -> PreparedData:
    """The samples of ``inputs`` a run trains on: those with a ``target`` value (when it has a
    target) and enough reads, rarefied once, their features tokenised, split, and the UniFrac
    engine (or matrix) their tasks need; ``report`` lists every sample left out and why."""
    table = inputs.table
    report: dict[str, Any] = {"n_samples_input": table.n_samples, "warnings": []}
    keep = np.ones(table.n_samples, dtype=bool)
    values: np.ndarray | None = None
    classes: tuple[str, ...] | None = None
    if target is not None:
        values, classes, keep = _samples_with_target(inputs, target, report)
    groups = _groups(inputs, config, table.sample_ids)
    rows, depth = _deep_enough(table, np.flatnonzero(keep), config, report)
    kept = table.subset_samples(rows)
    used_features = np.flatnonzero(np.asarray(kept.counts.sum(axis=0)).ravel() > 0)
    kept = kept.subset_features(used_features)
    sequences = tuple(inputs.sequences[j] for j in used_features)
    tokens = tokenize(sequences, max_bp=config.max_bp, truncate=config.truncate)
    labels, targets = _encoded_targets(values, classes, rows)
    kept_groups = None if groups is None else groups[rows]
    split = split_rows(
        kept.n_samples,
        validation_fraction=config.validation_fraction,
        seed=config.seed,
        labels=labels,
        groups=kept_groups,
    )
    if classes is not None and labels is not None:
        split, classes, targets = _drop_unseen_classes(split, classes, labels, kept, report)
    report["split"] = _split_facts(split, config, kept_groups)
    engine, distances = _unifrac_source(inputs, kept, rows, need_unifrac, need_faith_pd)
    report.update(
        n_samples=kept.n_samples,
        n_features=kept.n_features,
        n_train=int(split.train.size),
        n_validation=int(split.validation.size),
        classes=None if classes is None else list(classes),
    )
    return PreparedData(
        table=kept,
        rarefied=rarefy(kept, depth, seed=config.seed).table,
        sequences=sequences,
        depth=depth,
        tokens=tokens,
        split=split,
        targets=targets,
        classes=classes,
        engine=engine,
        distances=distances,
        report=report,
    )


def _samples_with_target(
    inputs: Inputs, target: TargetSpec, report: dict[str, Any]
) -> tuple[np.ndarray, tuple[str, ...] | None, np.ndarray]:
    """:func:`target_values`, with the samples that have none reported and warned about."""
    table = inputs.table
    values, classes, present = target_values(inputs, target)
    missing = [table.sample_ids[i] for i in np.flatnonzero(~present)]
    report["samples_missing_target"] = missing
    if missing:
        report["warnings"].append(
            f"{len(missing)} samples have no value for {target.column!r} and are excluded "
            f"({preview(missing)})"
        )
    return values, classes, present


def _deep_enough(
    table: FeatureTable, rows: np.ndarray, config: RunConfig, report: dict[str, Any]
) -> tuple[np.ndarray, int]:
    """The ``rows`` of ``table`` that keep the rarefaction depth (at least 4 must), and that
    depth; the samples below it are reported and warned about."""
    warnings: list[str] = report["warnings"]
    rarefied = rarefy(table.subset_samples(rows), config.rarefaction_depth, seed=config.seed)
    report["rarefaction"] = {
        "depth": rarefied.depth,
        "note": rarefied.note,
        "dropped": list(rarefied.dropped),
    }
    if rarefied.note:
        warnings.append(rarefied.note)
    if rarefied.dropped:
        warnings.append(
            f"{len(rarefied.dropped)} samples have fewer than {rarefied.depth} reads and are "
            f"excluded ({preview(rarefied.dropped)})"
        )
    rows = rows[rarefied.kept_rows]
    if rows.size < 4:
        raise InputError(
            f"only {rows.size} samples are usable after removing samples without a target or "
            f"below the rarefaction depth ({rarefied.depth}); at least 4 are needed"
        )
    return rows, rarefied.depth


def _encoded_targets(
    values: np.ndarray | None, classes: tuple[str, ...] | None, rows: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(labels, targets)`` of the kept ``rows``: class indices (both) for classification,
    float32 values (targets only) for regression; None without a target."""
    if values is None:
        return None, None
    kept_values = values[rows]
    if classes is None:
        return None, kept_values.astype(np.float32)
    labels = np.array([classes.index(v) for v in kept_values], dtype=np.int64)
    return labels, labels


def _unifrac_source(
    inputs: Inputs,
    kept: FeatureTable,
    rows: np.ndarray,
    need_unifrac: bool,
    need_faith_pd: bool,
) -> tuple[UniFracEngine | None, np.ndarray | None]:
    """``(engine, distances)``: the UniFrac engine on the tree over ``kept``'s features, or
    the precomputed matrix at ``rows`` (UniFrac alone: Faith PD needs the tree); neither when
    no task needs them."""
    if not (need_unifrac or need_faith_pd):
        return None, None
    if inputs.tree is not None:
        require_tree_coverage(inputs.tree, kept.feature_ids)
        return UniFracEngine(index_branches(inputs.tree, kept.feature_ids)), None
    if inputs.distances is not None and not need_faith_pd:
        return None, inputs.distances[np.ix_(rows, rows)]
    what = "Faith PD" if need_faith_pd else "UniFrac"
    raise TreeError(
        f"the {what} task needs a phylogenetic tree"
        + ("" if need_faith_pd else " (or a precomputed UniFrac distance matrix)")
        + " with the dataset"
    )


def _groups(inputs: Inputs, config: RunConfig, sample_ids: tuple[str, ...]) -> np.ndarray | None:
    if config.group_column is None:
        return None
    names = [] if inputs.metadata is None else [c.name for c in inputs.metadata.columns]
    if inputs.metadata is None or config.group_column not in names:
        raise ConfigError(
            missing_column(config.group_column, names, WHERE, "group_column"),
            field="config.group_column",
        )
    frame, _, _ = align_metadata(inputs.metadata, sample_ids)
    values = frame[config.group_column]
    # A sample without a group value is a group of its own: it can never share a subject.
    return np.array(
        [
            str(v) if pd.notna(v) else f"\0ungrouped:{sid}"
            for v, sid in zip(values, sample_ids, strict=True)
        ]
    )


def _split_facts(split: Split, config: RunConfig, groups: np.ndarray | None) -> dict[str, Any]:
    """How the split was drawn, and how many groups (e.g. subjects) each side holds."""
    facts: dict[str, Any] = {
        "method": split.method,
        "seed": config.seed,
        "validation_fraction": config.validation_fraction,
        "group_column": config.group_column,
        "n_train_groups": None,
        "n_validation_groups": None,
    }
    if groups is not None:  # a sample without a group value counts as a group of its own
        facts["n_train_groups"] = int(np.unique(groups[split.train]).size)
        facts["n_validation_groups"] = int(np.unique(groups[split.validation]).size)
    return facts


def _drop_unseen_classes(
    split: Split,
    classes: tuple[str, ...],
    labels: np.ndarray,
    table: FeatureTable,
    report: dict[str, Any],
) -> tuple[Split, tuple[str, ...], np.ndarray]:
    """Classes are those of the train split (docs/design.md section 8): validation samples of a
    class the model never sees in training are excluded and reported."""
    seen = np.unique(labels[split.train])
    unseen = np.flatnonzero(~np.isin(labels[split.validation], seen))
    if unseen.size:
        dropped = [table.sample_ids[split.validation[i]] for i in unseen]
        report["warnings"].append(
            f"{len(dropped)} validation samples belong to classes absent from the train split "
            f"and are excluded ({preview(dropped)})"
        )
        split = Split(split.train, np.delete(split.validation, unseen), split.method)
    if seen.size < len(classes):
        # re-encode to the train split's classes
        kept_classes = tuple(classes[i] for i in seen)
        mapping = {old: new for new, old in enumerate(seen)}
        labels = np.array([mapping.get(int(v), -1) for v in labels], dtype=np.int64)
        report["warnings"].append(
            f"classes absent from the train split are not modelled: "
            f"{preview([c for c in classes if c not in kept_classes])}"
        )
        classes = kept_classes
    return split, classes, labels


# -- the split and its file ----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Split:
    train: np.ndarray  # int64 row indices, sorted
    validation: np.ndarray  # int64 row indices, sorted
    method: str = "random"  # random | stratified | grouped | stratified+grouped


def split_rows(
    n: int,
    *,
    validation_fraction: float = 0.2,
    seed: int = 0,
    labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> Split:
    """Split rows ``0..n-1``. ``labels`` (class indices) stratify; ``groups`` keep every group on
    one side. With both, stratified group folds approximate the fraction."""
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 samples to split, got {n}")
    rows = np.arange(n)
    method = "random"
    if groups is not None:
        n_groups = np.unique(groups).size
        if n_groups < 2:
            raise ConfigError(
                f"the group column has {n_groups} group(s) among the usable samples; a split "
                "needs at least 2",
                field="config.group_column",
            )
        if labels is not None:
            folds = max(2, round(1 / validation_fraction))
            folds = min(folds, n_groups)
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            try:
                train, val = next(splitter.split(rows, labels, groups))
                method = "stratified+grouped"
            except ValueError:
                train, val = _group_shuffle(rows, groups, validation_fraction, seed)
                method = "grouped"
        else:
            train, val = _group_shuffle(rows, groups, validation_fraction, seed)
            method = "grouped"
    elif labels is not None and _can_stratify(labels, validation_fraction):
        train, val = train_test_split(
            rows, test_size=validation_fraction, random_state=seed, stratify=labels
        )
        method = "stratified"
    else:
        train, val = train_test_split(rows, test_size=validation_fraction, random_state=seed)
    return Split(np.sort(train).astype(np.int64), np.sort(val).astype(np.int64), method)


def _group_shuffle(
    rows: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    train, val = next(splitter.split(rows, groups=groups))
    return train, val


def _can_stratify(labels: np.ndarray, fraction: float) -> bool:
    _, counts = np.unique(labels, return_counts=True)
    n_val = int(np.ceil(fraction * labels.size))
    return bool(counts.min() >= 2 and n_val >= counts.size and labels.size - n_val >= counts.size)


SPLITS = ("train", "validation")


def write_split_tsv(
    path: str | Path, train_ids: Sequence[str], validation_ids: Sequence[str]
) -> None:
    """``sample_id, split`` with split ``train`` or ``validation``, in that order."""
    both = sorted(set(map(str, train_ids)) & set(map(str, validation_ids)))
    if both:
        raise ValueError(f"{len(both)} sample IDs are in both splits, e.g. {both[:5]}")
    frame = pd.DataFrame(
        {
            "sample_id": [str(s) for s in (*train_ids, *validation_ids)],
            "split": ["train"] * len(train_ids) + ["validation"] * len(validation_ids),
        }
    )
    with atomic_write(path) as fh:
        frame.to_csv(fh, sep="\t", index=False)


def read_split_tsv(path: str | Path) -> dict[str, list[str]]:
    # Sample IDs stay strings: "NA" or "001" must not turn into NaN or 1.
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    unknown = sorted(set(frame["split"]) - set(SPLITS))
    if unknown:
        raise ValueError(f"{path}: split must be one of {SPLITS}, got {unknown}")
    return {s: frame.loc[frame["split"] == s, "sample_id"].tolist() for s in SPLITS}


def split_sha256(train_ids: Sequence[str], validation_ids: Sequence[str]) -> str:
    """SHA-256 of the split as ``split.tsv`` lists it: the UTF-8 text ``sample_id\\tsplit\\n``,
    then ``<id>\\ttrain\\n`` per train sample and ``<id>\\tvalidation\\n`` per validation
    sample, in the file's order. It equals the digest of the ``split.tsv`` a run writes
    whenever no sample ID needs quoting (one holding a tab, quote or line break)."""
    digest = hashlib.sha256(b"sample_id\tsplit\n")
    for name, ids in (("train", train_ids), ("validation", validation_ids)):
        for sample_id in ids:
            digest.update(f"{sample_id}\t{name}\n".encode())
    return digest.hexdigest()
