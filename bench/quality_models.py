"""The study, its folds and the models of ``bench/quality.py``.

A :class:`Study` holds the samples every model sees. ``outer_folds`` shuffles the groups into
K folds per seed; ``inner_split`` draws, inside an outer training fold, the validation split
AAM's own training draws, on which the forest and the linear model make their choices too.
``fit_fold`` runs each model on one fold: a tuned random forest on relative abundances, ridge or
logistic regression on CLR abundances, the training median or majority class, and AAM trained
and applied through aam_core as a user's train job would be.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from quality_report import EpochLog
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from aam_core.data.rarefy import choose_depth
from aam_core.io import Inputs, align_metadata, load_files
from aam_core.plan import TargetSpec, planner
from aam_core.plan.targets import Task
from aam_core.predict import Predictor, SamplePrediction
from aam_core.train.artifacts import read_split_tsv
from aam_core.train.baseline import relative_abundance
from aam_core.train.local_plan import plan_local
from aam_core.train.prepare import target_values
from aam_core.train.splits import split_rows
from aam_core.train.stages import run_pretrain, run_train

MODELS = ("rf", "linear", "constant", "aam", "ensemble")
AAM_MODELS = frozenset({"aam", "ensemble"})  # trained by aam_core, one run for both
RF_GRID = [(f, leaf) for f in ("sqrt", 0.3, 1.0) for leaf in (1, 3, 5)]
# (trees of the 9-point grid search, trees of the refit forest). On 2 cores a 500-tree search
# costs ~2 minutes per fold on udca (4,333 features), over the CPU budget for 15 folds. Checked
# on ecam_partial and ibd2538 (seed 0, 10 folds): a 500-tree search picked another grid point
# in 6 folds, but the points it chose between were within the search's own noise, and an untuned
# 500-tree forest scored as the tuned one (MAE 2.82 vs 2.81, AUC 0.88 vs 0.88).
TREES = {"cpu": (100, 500), "gpu": (500, 500)}
FOREST_JOBS = -1  # every core; a fold of quality.py --jobs N: its share
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)  # CLR features number in the thousands
LOGISTIC_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
VALIDATION_FRACTION = 0.2
FILES = {"table": "table.biom", "tree": "tree.nwk", "metadata": "metadata.tsv",
         "sequences": "rep-seqs.fasta"}  # fmt: skip


class UsageError(ValueError):
    """A command line the benchmark cannot run."""


def clr(counts: Any, pseudocount: float = 0.5) -> np.ndarray:
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

    @functools.cached_property
    def codes(self) -> np.ndarray:  # int64 [n] class indices (classification)
        return np.searchsorted(np.array(self.classes), self.y)

    @functools.cached_property
    def abundance(self) -> np.ndarray:  # float64 [n, n_features]: the forest's features
        return np.asarray(relative_abundance(self.inputs.table).toarray())

    @functools.cached_property
    def logratios(self) -> np.ndarray:  # float64 [n, n_features]: the linear model's features
        return clr(self.inputs.table.counts)


@dataclass(frozen=True)
class Fold:
    seed: int
    index: int  # 1-based
    train: np.ndarray
    test: np.ndarray
    inner_train: np.ndarray  # of the samples AAM keeps after its rarefaction
    inner_val: np.ndarray


@dataclass(frozen=True, kw_only=True)
class Prediction:
    values: np.ndarray | None = None  # regression [n_test]
    labels: np.ndarray | None = None  # classification, class names [n_test]
    probabilities: np.ndarray | None = None  # [n_test, K], columns in Study.classes order


def load_study(
    directory: Path, target: str, task: Task, group: str | None, where: Sequence[str], reads: int
) -> Study:
    paths = {role: directory / name for role, name in FILES.items()}
    inputs = load_files({r: p if p.exists() or r == "table" else None for r, p in paths.items()})
    if inputs.metadata is None:
        raise UsageError(f"{directory} has no metadata.tsv")
    frame, _, _ = align_metadata(inputs.metadata, inputs.table.sample_ids)
    values, _, present = target_values(inputs, TargetSpec(target, task))  # AAM's reading
    keep, notes = present.copy(), {"without a target value": int((~present).sum())}
    for rule in where:
        column, sep, wanted = rule.partition("=")
        if not sep or column not in frame.columns:
            raise UsageError(f"--where {rule!r}: expected COLUMN=VALUE with a metadata column")
        if inputs.metadata.column(column).kind == "numeric":
            match = frame[column].to_numpy(np.float64) == float(wanted)
        else:
            match = (frame[column] == wanted).to_numpy(bool)
        notes[f"not {rule}"] = int((keep & ~match).sum())
        keep &= match
    shallow = inputs.table.depths() < reads
    notes[f"below {reads} reads"] = int((keep & shallow).sum())
    rows = np.flatnonzero(keep & ~shallow)
    if group is not None and group not in frame.columns:
        raise UsageError(f"--group {group!r} is not a metadata column")
    ids = [inputs.table.sample_ids[i] for i in rows]
    groups = ids  # as aam_core.train.prepare: a sample without a group is a group of its own
    if group is not None:
        column = frame[group].iloc[rows]
        groups = [
            str(v) if pd.notna(v) else f"\0ungrouped:{sid}"
            for v, sid in zip(column, ids, strict=True)
        ]
    y = values[rows] if task == "classification" else values[rows].astype(np.float64)
    return Study(
        name=directory.resolve().name,
        inputs=dataclasses.replace(inputs, table=inputs.table.subset_samples(rows)),
        target=TargetSpec(target, task),
        group=group,
        y=y,
        groups=np.array(groups),
        classes=tuple(sorted(set(y.tolist()))) if task == "classification" else (),
        notes=notes,
    )


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
) -> tuple[np.ndarray, np.ndarray]:
    """The inner train/validation rows AAM's training draws from ``train``: the split of
    aam_core's prepare_data, over the samples its rarefaction keeps (``depth``: the run's)."""
    depths = study.inputs.table.depths()[train]
    kept = train[depths >= choose_depth(depths, depth).depth]
    split = split_rows(
        kept.size,
        validation_fraction=VALIDATION_FRACTION,
        seed=seed,
        labels=study.codes[kept] if study.classes else None,
        groups=study.groups[kept] if study.group else None,
    )
    return kept[split.train], kept[split.validation]


def _proba(model: Any, x: np.ndarray, k: int) -> np.ndarray:
    """Probabilities over all K classes [n, K] (a model knows only its training classes)."""
    out = np.zeros((x.shape[0], k))
    out[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(x)
    return out


def tune_and_refit(
    study: Study, fold: Fold, x: np.ndarray, make: Callable[[Any, bool], Any], grid: Sequence[Any]
) -> tuple[Prediction, Any]:
    """Pick the grid point with the best inner-validation score (MAE; ROC AUC for two classes,
    log loss for more or when the validation rows hold one class), refit it on the outer
    training fold and predict the test fold. ``make(point, refit)`` builds an unfitted model."""
    y, k = (study.codes, len(study.classes)) if study.classes else (study.y, 0)
    val = fold.inner_val
    losses = []
    for point in grid:
        model = make(point, False).fit(x[fold.inner_train], y[fold.inner_train])
        if not k:
            losses.append(float(np.mean(np.abs(model.predict(x[val]) - y[val]))))
        elif k == 2 and np.unique(y[val]).size == 2:
            losses.append(-float(roc_auc_score(y[val], _proba(model, x[val], k)[:, 1])))
        else:
            losses.append(float(log_loss(y[val], _proba(model, x[val], k), labels=range(k))))
    best = grid[int(np.argmin(losses))]
    model = make(best, True).fit(x[fold.train], y[fold.train])
    if not k:
        return Prediction(values=model.predict(x[fold.test])), best
    prob = _proba(model, x[fold.test], k)
    return Prediction(labels=np.array(study.classes)[prob.argmax(1)], probabilities=prob), best


def fit_rf(study: Study, fold: Fold, budget: str) -> tuple[Prediction, dict[str, Any]]:
    forest = RandomForestClassifier if study.classes else RandomForestRegressor

    def make(point: tuple[Any, int], refit: bool) -> Any:
        trees = TREES[budget][1 if refit else 0]
        features, leaf = point
        return forest(
            n_estimators=trees, max_features=features, min_samples_leaf=leaf, n_jobs=FOREST_JOBS,
            random_state=fold.seed,
        )  # fmt: skip

    prediction, best = tune_and_refit(study, fold, study.abundance, make, RF_GRID)
    return prediction, {"max_features": best[0], "min_samples_leaf": best[1]}


def fit_linear(study: Study, fold: Fold) -> tuple[Prediction, dict[str, Any]]:
    x = study.logratios
    if study.classes:
        logistic = lambda c, _: LogisticRegression(C=c, max_iter=5000)  # noqa: E731
        prediction, best = tune_and_refit(study, fold, x, logistic, LOGISTIC_CS)
        return prediction, {"C": best}
    prediction, best = tune_and_refit(study, fold, x, lambda a, _: Ridge(alpha=a), RIDGE_ALPHAS)
    return prediction, {"alpha": best}


def fit_constant(study: Study, fold: Fold) -> tuple[Prediction, dict[str, Any]]:
    n = fold.test.size
    if not study.classes:
        median = float(np.median(study.y[fold.train]))
        return Prediction(values=np.full(n, median)), {"value": median}
    share = np.bincount(study.codes[fold.train], minlength=len(study.classes)) / fold.train.size
    majority = study.classes[int(share.argmax())]
    # the same scores for every sample: the ROC AUC is exactly 0.5
    constant = Prediction(labels=np.full(n, majority), probabilities=np.tile(share, (n, 1)))
    return constant, {"value": majority}


@dataclass(frozen=True)
class AamOptions:
    overrides: Mapping[str, Any]  # RunConfig keys over aam_core's defaults (--aam-config)
    device: str = "cpu"
    pretrain: bool = False  # pretrain an encoder on each outer training fold first
    keep_checkpoints: bool = False

    def settings(self, group: str | None, seed: int) -> dict[str, Any]:
        """A train run's settings: the benchmark's split, then the user's overrides."""
        split = {"group_column": group, "validation_fraction": VALIDATION_FRACTION, "seed": seed}
        return {**split, **self.overrides}


def run_aam(
    study: Study, fold: Fold, options: AamOptions, wanted: set[str], out: Path
) -> tuple[dict[str, Prediction], dict[str, Any]]:
    """Train AAM (or the ensemble, whose AAM component then comes from the same run) on the
    outer training fold as a user's train job would, and predict the outer test fold."""
    run_dir = out / "aam" / f"seed{fold.seed}-fold{fold.index}"
    label = f"[aam] seed {fold.seed} fold {fold.index}"
    inputs = dataclasses.replace(study.inputs, table=study.inputs.table.subset_samples(fold.train))
    settings = options.settings(study.group, fold.seed)
    info: dict[str, Any] = {}
    base = None
    if options.pretrain:
        untargeted = {k: v for k, v in settings.items() if k not in planner.TRAIN_ONLY_KEYS}
        plan = plan_local("pretrain", untargeted, inputs, device=options.device)
        log_pretrain = EpochLog(f"{label} pretrain")
        encoder = run_pretrain(
            inputs, plan, run_dir / "pretrain", device=options.device, callbacks=log_pretrain
        )
        info["unifrac_r2"] = encoder.validation.get("unifrac_r2")  # validation pairs only
        base = encoder.best_checkpoint or encoder.last_checkpoint
    kind: dict[str, Any] = {"model_kind": "ensemble"} if "ensemble" in wanted else {}
    plan = plan_local(
        "train",
        settings,
        inputs,
        target=study.target,
        base_checkpoint=base,
        device=options.device,
        **kind,
    )
    log_train = EpochLog(label)
    run = run_train(inputs, plan, run_dir / "train", device=options.device, callbacks=log_train)
    drawn = read_split_tsv(run_dir / "train" / "split.tsv")["validation"]
    info.update(
        epochs_run=run.fit.epochs_run,
        best_epoch=run.fit.best_epoch,
        stopped=run.fit.stopped,
        depth=run.report.get("rarefaction", {}).get("depth"),
        inner_validation=run.validation,
        ensemble=run.report.get("ensemble"),  # aam_core's blend: weight, choice, reason
        # the forest and the linear model chose on the same validation samples as AAM
        inner_split_matches=sorted(drawn)
        == sorted(study.inputs.table.sample_ids[i] for i in fold.inner_val),
    )
    checkpoint = run.best_checkpoint or run.last_checkpoint
    predictor = Predictor.from_path(checkpoint, device=options.device)
    test = study.inputs.table.subset_samples(fold.test)
    samples = predictor.predict(test, study.inputs.sequences).samples
    predictions = {}
    for model in wanted:
        # an ensemble run serves both: the ensemble's prediction and its AAM component
        component = "aam" if model == "aam" and "ensemble" in wanted else None
        outputs = [_sample_output(s, study.classes, component) for s in samples]
        if study.classes:
            probabilities = np.array([row for row, _ in outputs])  # [n_test, K]
            labels = np.array([label for _, label in outputs])
            predictions[model] = Prediction(labels=labels, probabilities=probabilities)
        else:
            predictions[model] = Prediction(values=np.array([value for value, _ in outputs]))
    if not options.keep_checkpoints:
        for path in run_dir.glob("*/checkpoints"):
            shutil.rmtree(path)
    return predictions, info


def _sample_output(
    sample: SamplePrediction, classes: tuple[str, ...], component: str | None
) -> tuple[Any, str | None]:
    """A sample's value (regression), or its probability row in ``classes`` order and its
    label; ``component``: that member's value of an ensemble's prediction instead. Classes
    the model never saw in training get probability 0."""
    value: Any = sample
    if component is not None:
        members = sample.components or {}
        if component not in members:
            raise ValueError(f"{sample.sample_id}: the prediction has no {component!r} member")
        value = members[component]
    label = None
    if isinstance(value, SamplePrediction):
        label = value.label
        value = value.probabilities if classes else value.prediction
    elif classes:  # a component given as its probabilities
        label = max(value, key=value.get)
    if not classes:
        return float(value[0] if isinstance(value, list | tuple) else value), None
    return np.array([float(value.get(c, 0.0)) for c in classes]), label


def fit_fold(
    study: Study, fold: Fold, models: Sequence[str], budget: str, aam: AamOptions, out: Path
) -> Iterator[tuple[str, Prediction, dict[str, Any], float]]:
    """Per model: its test-fold prediction, its choices and its seconds (fit + predict). AAM
    and the ensemble come from one training run and share its seconds."""
    plain = {
        "rf": lambda: fit_rf(study, fold, budget),
        "linear": lambda: fit_linear(study, fold),
        "constant": lambda: fit_constant(study, fold),
    }
    for model in (m for m in models if m in plain):
        clock = time.perf_counter()
        prediction, info = plain[model]()
        yield model, prediction, info, time.perf_counter() - clock
    wanted = set(models) & AAM_MODELS
    if wanted:
        clock = time.perf_counter()
        predictions, info = run_aam(study, fold, aam, wanted, out)
        seconds = time.perf_counter() - clock
        for model in sorted(wanted):
            yield model, predictions[model], {**info, "shared_run": len(wanted) > 1}, seconds
