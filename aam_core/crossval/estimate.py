"""How long a cross-validation will take, measured before it starts.

The costly parts are AAM's training and the forest's grid search, and both are timed on the
first fold rather than guessed: AAM trains for two epochs (data preparation, model set-up and
epochs, as the fold's run will; the second epoch's time is the pace, the first carries
warm-up work), and the forest fits one search-sized forest on the fold's inner training rows.
Scaled to every planned epoch (an upper bound, since early stopping usually ends sooner) and
to the search's size, summed over the folds. The other baselines take seconds and are left
out.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from aam_core.crossval.folds import Fold, make_folds
from aam_core.crossval.models import FOREST_GRID, PRETRAINED, TREES
from aam_core.crossval.study import Study
from aam_core.plan import RunConfig
from aam_core.train.baselines import relative_abundance
from aam_core.train.callbacks import Callback, EpochEvent, StepEvent
from aam_core.train.local_plan import plan_local
from aam_core.train.run import run_train

PROBE_EPOCHS = 2  # the second epoch's time is the pace: the first carries warm-up work
PROBE_LIMIT_S = 90.0  # a larger study: stop sooner and take the pace of its later steps
VALIDATION_SHARE = 0.15  # an epoch's validation pass beside its training steps (step pace)


class _Clock(Callback):
    def __init__(self) -> None:
        self.steps: list[tuple[float, StepEvent]] = []
        self.epochs: list[EpochEvent] = []

    def on_step(self, event: StepEvent) -> None:
        self.steps.append((time.perf_counter(), event))

    def on_epoch(self, event: EpochEvent) -> None:
        self.epochs.append(event)

    def should_stop(self) -> bool:
        if len(self.epochs) >= PROBE_EPOCHS:
            return True
        return len(self.steps) > 4 and self.steps[-1][0] - self.steps[0][0] > PROBE_LIMIT_S


def _aam_seconds(study: Study, fold: Fold, options: Any, scratch: Path) -> dict[str, float]:
    """Set-up seconds (data preparation, the model, up to its first step) and the seconds of
    every epoch the fold's run may take, from a probe run of its first epochs."""
    aam = options.aam
    inputs = dataclasses.replace(study.inputs, table=study.inputs.table.subset_samples(fold.train))
    plan = plan_local(
        "train",
        aam.settings(study.group, fold.seed),
        inputs,
        target=study.target,
        device=aam.device,
    )
    clock = _Clock()
    begun = time.perf_counter()
    try:
        run_train(inputs, plan, scratch, device=aam.device, callbacks=clock)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if len(clock.steps) < 2:  # a run shorter than the probe: it ran whole
        return {"setup": time.perf_counter() - begun, "training": 0.0}
    first = clock.steps[0][1]
    setup = clock.steps[0][0] - begun
    if len(clock.epochs) >= PROBE_EPOCHS:  # whole epochs, validation included
        training = clock.epochs[-1].seconds * first.epochs
    else:  # the pace of the steps after the first
        (t0, e0), (t1, e1) = clock.steps[1], clock.steps[-1]
        pace = (t1 - t0) / max(e1.step - e0.step, 1)
        training = pace * first.steps * (1 + VALIDATION_SHARE)
    if aam.pretrain:  # pretraining's epochs, at the training epochs' pace (an approximation)
        n = fold.inner_train.size
        pretrain = RunConfig.from_mapping(aam.pretrain_settings(study.group, fold.seed))
        pretrain = pretrain.resolved("pretrain", n)
        training *= 1 + (pretrain.epochs or 1) / max(first.epochs, 1)
    return {"setup": setup, "training": training}


def _forest_seconds(study: Study, fold: Fold, budget: str, n_jobs: int) -> float:
    forest = RandomForestClassifier if study.classes else RandomForestRegressor
    search, refit = TREES[budget]
    reads = study.as_aam_reads(fold.seed, fold.depth)
    x = np.asarray(relative_abundance(reads).toarray())
    y = study.codes if study.classes else study.y
    begun = time.perf_counter()
    forest(n_estimators=search, n_jobs=n_jobs, random_state=fold.seed).fit(
        x[fold.inner_train], y[fold.inner_train]
    )
    one = time.perf_counter() - begun
    grow = fold.kept.size / max(fold.inner_train.size, 1)
    return one * (len(FOREST_GRID) + refit / search * grow)


def estimate_seconds(study: Study, options: Any, scratch: Path) -> dict[str, Any]:
    """``{"seconds", "per_fold", "parts"}``: the expected wall time of the whole run, measured
    on its first fold (``options``: an engine :class:`~aam_core.crossval.engine.Options`).
    ``scratch`` holds the probe's files and is removed."""
    depth = RunConfig.from_mapping(options.aam.settings(study.group, 0)).rarefaction_depth
    fold = make_folds(
        study, range(options.first_seed, options.first_seed + 1), options.folds, depth
    )[0]
    parts: dict[str, float] = {}
    if "forest" in options.models:
        parts["forest"] = _forest_seconds(study, fold, options.budget, options.forest_jobs)
    runs = int("aam" in options.models or "ensemble" in options.models) + sum(
        m in options.models for m in PRETRAINED
    )
    if runs:
        timing = _aam_seconds(study, fold, options, scratch)
        parts["aam"] = runs * (timing["setup"] + timing["training"])
    per_fold = sum(parts.values())
    n_folds = options.folds * options.repeats
    return {
        "seconds": per_fold * n_folds,
        "per_fold": per_fold,
        "parts": parts,
        "folds": n_folds,
        "note": "measured on the first fold: two AAM epochs and one search-sized forest, "
        "scaled to every epoch and the whole grid; an upper bound, since early stopping "
        "usually ends AAM sooner",
    }
