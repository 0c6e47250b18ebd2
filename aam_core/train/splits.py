"""Seeded train/validation splits: stratified for classification, grouped by a metadata column
(e.g. host subject) so that no group spans train and validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, train_test_split

from aam_core.errors import ConfigError


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
