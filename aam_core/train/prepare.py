"""From a dataset's inputs to what a run trains on: samples with a target, rarefied, tokenised,
split, with UniFrac targets from the tree (or a precomputed matrix), and a report of every
sample left out and why."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from aam_core.data.batching import Collator, SampleDataset
from aam_core.data.rarefy import rarefy
from aam_core.data.tokens import tokenize
from aam_core.data.unifrac import UniFracEngine, index_branches
from aam_core.errors import ConfigError
from aam_core.io import Inputs, align_metadata, preview, require_tree_coverage
from aam_core.io.errors import InputError, TargetError, TreeError
from aam_core.io.metadata import describe
from aam_core.io.types import FeatureTable
from aam_core.plan.config import RunConfig
from aam_core.plan.targets import TargetSpec, check_target, missing_column
from aam_core.train.splits import Split, split_rows

WHERE = "the dataset"  # how messages name the inputs of a run
# A split of up to this many samples gets its UniFrac matrix computed once (float64: 128 MiB
# at the limit) when its rarefaction is drawn once; larger ones compute each batch's.
PRECOMPUTED_UNIFRAC_MAX = 4096


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

    def asv_vocabulary(self) -> tuple[tuple[str, ...], np.ndarray]:
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
    table = inputs.table
    report: dict[str, Any] = {"n_samples_input": table.n_samples, "warnings": []}
    warnings: list[str] = report["warnings"]
    keep = np.ones(table.n_samples, dtype=bool)
    values: np.ndarray | None = None
    classes: tuple[str, ...] | None = None
    if target is not None:
        values, classes, present = target_values(inputs, target)
        missing = [table.sample_ids[i] for i in np.flatnonzero(~present)]
        report["samples_missing_target"] = missing
        if missing:
            warnings.append(
                f"{len(missing)} samples have no value for {target.column!r} and are excluded "
                f"({preview(missing)})"
            )
        keep &= present

    groups = _groups(inputs, config, table.sample_ids)
    rows = np.flatnonzero(keep)
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
    kept = table.subset_samples(rows)
    used_features = np.flatnonzero(np.asarray(kept.counts.sum(axis=0)).ravel() > 0)
    kept = kept.subset_features(used_features)
    sequences = tuple(inputs.sequences[j] for j in used_features)
    tokens = tokenize(sequences, max_bp=config.max_bp, truncate=config.truncate)

    labels: np.ndarray | None = None
    targets: np.ndarray | None = None
    if values is not None:
        kept_values = values[rows]
        if classes is not None:
            labels = np.array([classes.index(v) for v in kept_values], dtype=np.int64)
            targets = labels
        else:
            targets = kept_values.astype(np.float32)
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

    engine = distances = None
    if need_unifrac or need_faith_pd:
        if inputs.tree is not None:
            require_tree_coverage(inputs.tree, kept.feature_ids)
            engine = UniFracEngine(index_branches(inputs.tree, kept.feature_ids))
        elif inputs.distances is not None and not need_faith_pd:
            distances = inputs.distances[np.ix_(rows, rows)]
        else:
            what = "Faith PD" if need_faith_pd else "UniFrac"
            raise TreeError(
                f"the {what} task needs a phylogenetic tree"
                + ("" if need_faith_pd else " (or a precomputed UniFrac distance matrix)")
                + " with the dataset"
            )
    report.update(
        n_samples=kept.n_samples,
        n_features=kept.n_features,
        n_train=int(split.train.size),
        n_validation=int(split.validation.size),
        classes=None if classes is None else list(classes),
    )
    return PreparedData(
        table=kept,
        rarefied=rarefy(kept, rarefied.depth, seed=config.seed).table,
        sequences=sequences,
        depth=rarefied.depth,
        tokens=tokens,
        split=split,
        targets=targets,
        classes=classes,
        engine=engine,
        distances=distances,
        report=report,
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
