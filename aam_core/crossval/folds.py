"""The folds of a cross-validation: repeated grouped K-fold outside, one grouped split inside.

``outer_folds`` shuffles the groups (subjects) into K folds per repeat, each repeat with its
own seed (stratified by class for classification): no subject is ever in its own test fold's
training rows. Inside an outer training fold, ``inner_split`` chooses AAM's rarefaction depth
over the training samples' reads and draws the validation split AAM's own training draws
(:func:`aam_core.train.prepare.split_rows`, 20% of the groups): every choice of every model
(a baseline's hyperparameters, AAM's early stopping) is made there. The outer test fold is
only scored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from aam_core.crossval.study import Study
from aam_core.data.rarefy import choose_depth
from aam_core.train.prepare import split_rows

VALIDATION_FRACTION = 0.2


@dataclass(frozen=True)
class Fold:
    seed: int  # the repeat's seed: its shuffle, AAM's seed, the baselines' random state
    index: int  # 1-based, within the repeat
    train: np.ndarray
    test: np.ndarray
    depth: int  # AAM's rarefaction depth in this outer training fold
    inner_train: np.ndarray  # of the samples AAM keeps after its rarefaction
    inner_val: np.ndarray

    @property
    def name(self) -> str:
        return f"seed{self.seed}-fold{self.index}"

    @functools.cached_property
    def kept(self) -> np.ndarray:  # the training rows AAM keeps: at or above ``depth`` reads
        return np.sort(np.concatenate([self.inner_train, self.inner_val]))


def outer_folds(
    groups: np.ndarray, labels: np.ndarray | None, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped K-fold, groups shuffled by ``seed``; stratified when ``labels`` are given."""
    splitter: StratifiedGroupKFold | GroupKFold
    if labels is not None:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    else:  # GroupKFold's shuffle is scikit-learn >= 1.6 (older ones raise a TypeError here)
        splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    rows = np.zeros(len(groups))
    return [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(rows, labels, groups)]


def inner_split(
    study: Study, train: np.ndarray, seed: int, depth: int | None
) -> tuple[int, np.ndarray, np.ndarray]:
    """AAM's rarefaction depth over ``train`` (``depth``: the run's setting, None for the
    default rule) and the inner train/validation rows its training draws: the split of
    aam_core's prepare_data, over the samples its rarefaction keeps."""
    depths = study.inputs.table.depths()[train]
    chosen = choose_depth(depths, depth).depth
    kept = train[depths >= chosen]
    split = split_rows(
        kept.size,
        validation_fraction=VALIDATION_FRACTION,
        seed=seed,
        labels=study.codes[kept] if study.classes else None,
        groups=study.groups[kept] if study.group else None,
    )
    return chosen, kept[split.train], kept[split.validation]


def make_folds(study: Study, seeds: range, n_folds: int, depth: int | None) -> list[Fold]:
    """Every outer fold of every seed, with its depth and inner split (``depth``: AAM's
    setting, None for aam_core's rule over each training fold)."""
    labels = study.codes if study.classes else None
    return [
        Fold(seed, index, train, test, *inner_split(study, train, seed, depth))
        for seed in seeds
        for index, (train, test) in enumerate(
            outer_folds(study.groups, labels, n_folds, seed), start=1
        )
    ]
