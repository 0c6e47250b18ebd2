"""The study, its folds and the models of ``bench/quality.py``.

A :class:`Study` holds the samples every model sees. ``outer_folds`` shuffles the groups into
K folds per seed; ``inner_split`` chooses, inside an outer training fold, AAM's rarefaction
depth and the samples it keeps, and draws the validation split AAM's own training draws, on
which every tuned baseline makes its choices too.

Every depth-free baseline reads a sample as AAM does (:meth:`Study.as_aam_reads`): rarefied to
the fold's depth when it has at least that many reads, as it is when shallower (AAM predicts
such a sample unrarefied), and trains on the samples AAM keeps. ``fit_fold`` runs each model on
one fold: a tuned random forest on relative abundances of those counts, ridge or logistic
regression on their CLR, the training median or majority class, AAM trained and applied through
aam_core as a user's train job would be; and two models that read sequencing depth, kept to
measure it: ``depth`` (log reads alone) and ``linear_raw`` (CLR of raw counts).
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
import scipy.sparse as sp
from quality_report import EpochLog
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aam_core.data.rarefy import choose_depth, rarefy
from aam_core.io import Inputs, align_metadata, load_files
from aam_core.io.types import FeatureTable
from aam_core.plan import TargetSpec, planner
from aam_core.plan.targets import Task
from aam_core.predict import Predictor, SamplePrediction
from aam_core.train.artifacts import read_split_tsv
from aam_core.train.baseline import relative_abundance
from aam_core.train.local_plan import plan_local
from aam_core.train.prepare import target_values
from aam_core.train.splits import split_rows
from aam_core.train.stages import run_pretrain, run_train

MODELS = (
    "rf", "linear", "linear_raw", "constant", "depth", "aam", "ensemble", "aam_pretrained",
    "aam_pack",
)  # fmt: skip
# Trained by aam_core: AAM from scratch and the ensemble in one run; AAM fine-tuned from an
# encoder pretrained on the fold's training samples; and from one pretrained on the other
# studies of the pack first (--pack), then on the fold's training samples.
AAM_MODELS = frozenset({"aam", "ensemble", "aam_pretrained", "aam_pack"})
PRETRAINED = ("aam_pretrained", "aam_pack")  # each compared with "aam", trained from scratch
# The baselines that read a sample as AAM does; the best of them is AAM's reference.
DEPTH_FREE = ("rf", "linear", "constant")
DEPTH_MODEL = "depth"  # log reads alone: how far sequencing depth predicts the target
# Reported, never drawn in quality.png nor counted as a depth-free baseline.
NOT_DRAWN = frozenset({"linear_raw"})
# What each model reads of a sample (the JSON protocol's words).
READS = {
    "rf": "relative abundance of the counts as AAM reads them (rarefied to the fold's depth)",
    "linear": "CLR of the counts as AAM reads them (rarefied to the fold's depth) + 0.5",
    "linear_raw": "CLR of raw counts + 0.5",
    "constant": "nothing: the training median (regression) or class shares",
    "depth": "log(raw reads per sample) alone, standardised on the training rows",
    "aam": "its own rarefaction to the fold's depth (aam_core's train and predict)",
    "aam_pretrained": "as aam, from an encoder pretrained on the fold's training samples",
    "aam_pack": "as aam_pretrained, the encoder first pretrained on the pack's other studies",
}
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
# The depth model's grids: decades as above, centred for one standardised feature.
DEPTH_ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3)
DEPTH_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
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
    # (seed, depth) -> every sample as AAM reads it; filled by as_aam_reads
    _reads: dict[tuple[int, int], FeatureTable] = dataclasses.field(
        default_factory=dict, init=False, repr=False
    )

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


@dataclass(frozen=True)
class Fold:
    seed: int
    index: int  # 1-based
    train: np.ndarray
    test: np.ndarray
    depth: int  # AAM's rarefaction depth in this outer training fold
    inner_train: np.ndarray  # of the samples AAM keeps after its rarefaction
    inner_val: np.ndarray

    @functools.cached_property
    def kept(self) -> np.ndarray:  # the training rows AAM keeps: at or above ``depth`` reads
        return np.sort(np.concatenate([self.inner_train, self.inner_val]))


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


def _proba(model: Any, x: np.ndarray, k: int) -> np.ndarray:
    """Probabilities over all K classes [n, K] (a model knows only its training classes)."""
    out = np.zeros((x.shape[0], k))
    out[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(x)
    return out


def tune_and_refit(
    study: Study, fold: Fold, x: np.ndarray, make: Callable[[Any, bool], Any], grid: Sequence[Any]
) -> tuple[Prediction, Any]:
    """Pick the grid point with the best inner-validation score (MAE; ROC AUC for two classes,
    log loss for more or when the validation rows hold one class), refit it on the training
    rows AAM keeps and predict the whole test fold. ``make(point, refit)`` builds an unfitted
    model; ``x``: float [n_samples, n_features], every sample of the study."""
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
    model = make(best, True).fit(x[fold.kept], y[fold.kept])
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

    reads = study.as_aam_reads(fold.seed, fold.depth)
    x = np.asarray(relative_abundance(reads).toarray())  # [n_samples, n_features]
    prediction, best = tune_and_refit(study, fold, x, make, RF_GRID)
    return prediction, {"max_features": best[0], "min_samples_leaf": best[1]}


def fit_linear(study: Study, fold: Fold, *, raw: bool = False) -> tuple[Prediction, dict[str, Any]]:
    """Ridge or logistic regression on CLR abundances: of the counts as AAM reads them, or
    (``raw``: the ``linear_raw`` row) of the raw counts, which carry sequencing depth."""
    x = study.raw_logratios if raw else clr(study.as_aam_reads(fold.seed, fold.depth).counts)
    if study.classes:
        logistic = lambda c, _: LogisticRegression(C=c, max_iter=5000)  # noqa: E731
        prediction, best = tune_and_refit(study, fold, x, logistic, LOGISTIC_CS)
        return prediction, {"C": best}
    prediction, best = tune_and_refit(study, fold, x, lambda a, _: Ridge(alpha=a), RIDGE_ALPHAS)
    return prediction, {"alpha": best}


def fit_depth(study: Study, fold: Fold) -> tuple[Prediction, dict[str, Any]]:
    """log(raw reads) alone: ridge or logistic regression on the one standardised feature."""
    x = study.log_depths
    if study.classes:
        logistic = lambda c, _: make_pipeline(  # noqa: E731
            StandardScaler(), LogisticRegression(C=c, max_iter=5000)
        )
        prediction, best = tune_and_refit(study, fold, x, logistic, DEPTH_CS)
        return prediction, {"C": best}
    ridge = lambda a, _: make_pipeline(StandardScaler(), Ridge(alpha=a))  # noqa: E731
    prediction, best = tune_and_refit(study, fold, x, ridge, DEPTH_ALPHAS)
    return prediction, {"alpha": best}


def fit_constant(study: Study, fold: Fold) -> tuple[Prediction, dict[str, Any]]:
    n, rows = fold.test.size, fold.kept
    if not study.classes:
        median = float(np.median(study.y[rows]))
        return Prediction(values=np.full(n, median)), {"value": median}
    share = np.bincount(study.codes[rows], minlength=len(study.classes)) / rows.size
    majority = study.classes[int(share.argmax())]
    # the same scores for every sample: the ROC AUC is exactly 0.5
    constant = Prediction(labels=np.full(n, majority), probabilities=np.tile(share, (n, 1)))
    return constant, {"value": majority}


@dataclass(frozen=True)
class AamOptions:
    overrides: Mapping[str, Any]  # RunConfig keys over aam_core's defaults (--aam-config)
    device: str = "cpu"
    keep_checkpoints: bool = False
    pretrain_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    pack_encoder: Path | None = None  # pretrained on the pack's other studies (aam_pack)
    freeze_pretrained: bool = False  # aam_pretrained and aam_pack train on a frozen encoder

    def settings(self, group: str | None, seed: int) -> dict[str, Any]:
        """A train run's settings: the benchmark's split, then the user's overrides."""
        split = {"group_column": group, "validation_fraction": VALIDATION_FRACTION, "seed": seed}
        return {**split, **self.overrides}

    def pretrain_settings(self, group: str | None, seed: int) -> dict[str, Any]:
        """A pretrain run's: the train run's that apply to pretraining, then
        ``pretrain_overrides`` (--pretrain-config)."""
        settings = self.settings(group, seed)
        untargeted = {k: v for k, v in settings.items() if k not in planner.TRAIN_ONLY_KEYS}
        return {**untargeted, **self.pretrain_overrides}


def pretrain_pack(
    directories: Sequence[Path], options: AamOptions, seed: int, out: Path
) -> tuple[Path, list[dict[str, Any]]]:
    """An encoder pretrained on each study of ``directories`` in turn (each continuing from the
    one before; whole studies, a random validation split), and each run's validation figures.
    Each study needs a tree; its metadata is not read."""
    encoder: Path | None = None
    runs = []
    for index, directory in enumerate(directories, start=1):
        paths = {role: directory / name for role, name in FILES.items() if role != "metadata"}
        inputs = load_files(
            {r: p if p.exists() or r == "table" else None for r, p in paths.items()}
        )
        if inputs.tree is None:
            raise UsageError(f"--pack {directory}: the study has no tree.nwk")
        settings = {**options.pretrain_settings(None, seed), "group_column": None}
        plan = plan_local(
            "pretrain", settings, inputs, base_checkpoint=encoder, device=options.device
        )
        label = f"[pack] {directory.name}"
        run = run_pretrain(
            inputs, plan, out / f"{index}-{directory.name}", device=options.device,
            callbacks=EpochLog(label),
        )  # fmt: skip
        encoder = run.best_checkpoint or run.last_checkpoint
        fit = run.fit
        runs.append({"study": directory.name, "validation": run.validation,
                     "epochs_run": fit.epochs_run, "best_epoch": fit.best_epoch})  # fmt: skip
    assert encoder is not None, "the pack holds at least one study"
    return encoder, runs


def run_aam(
    study: Study, fold: Fold, options: AamOptions, wanted: set[str], out: Path
) -> tuple[dict[str, Prediction], dict[str, Any]]:
    """Train AAM (or the ensemble, whose AAM component then comes from the same run) on the
    outer training fold as a user's train job would, and predict the outer test fold.
    ``wanted`` holds "aam_pretrained" or "aam_pack" alone: AAM fine-tuned from an encoder
    pretrained on the fold's training samples (from the pack's encoder for "aam_pack")."""
    variant = next((m for m in PRETRAINED if m in wanted), None)
    run_dir = out / (variant or "aam") / f"seed{fold.seed}-fold{fold.index}"
    label = f"[{variant or 'aam'}] seed {fold.seed} fold {fold.index}"
    inputs = dataclasses.replace(study.inputs, table=study.inputs.table.subset_samples(fold.train))
    settings = options.settings(study.group, fold.seed)
    info: dict[str, Any] = {}
    base = None
    if variant is not None:
        start = options.pack_encoder if variant == "aam_pack" else None
        plan = plan_local(
            "pretrain", options.pretrain_settings(study.group, fold.seed), inputs,
            base_checkpoint=start, device=options.device,
        )  # fmt: skip
        encoder = run_pretrain(
            inputs, plan, run_dir / "pretrain", device=options.device,
            callbacks=EpochLog(f"{label} pretrain"),
        )  # fmt: skip
        info["unifrac_r2"] = encoder.validation.get("unifrac_r2")  # validation pairs only
        info["pretrain_epochs"] = encoder.fit.epochs_run
        base = encoder.best_checkpoint or encoder.last_checkpoint
    kind: dict[str, Any] = {"model_kind": "ensemble"} if "ensemble" in wanted else {}
    plan = plan_local(
        "train",
        settings,
        inputs,
        target=study.target,
        base_checkpoint=base,
        freeze_base=base is not None and options.freeze_pretrained,
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
        linear_base=(run.report.get("linear_base") or {}).get("validation"),
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
    and the ensemble come from one training run and share its seconds. A baseline's choices
    begin with the fold's depth and its training rows (the samples AAM keeps)."""
    plain = {
        "rf": lambda: fit_rf(study, fold, budget),
        "linear": lambda: fit_linear(study, fold),
        "linear_raw": lambda: fit_linear(study, fold, raw=True),
        "constant": lambda: fit_constant(study, fold),
        "depth": lambda: fit_depth(study, fold),
    }
    for model in (m for m in models if m in plain):
        clock = time.perf_counter()
        prediction, info = plain[model]()
        info = {"depth": fold.depth, "n_train": int(fold.kept.size), **info}
        yield model, prediction, info, time.perf_counter() - clock
    together = set(models) & (AAM_MODELS - set(PRETRAINED))  # one run: aam and ensemble
    for wanted in [together, *({m} for m in PRETRAINED if m in models)]:
        if not wanted:
            continue
        clock = time.perf_counter()
        predictions, info = run_aam(study, fold, aam, wanted, out)
        seconds = time.perf_counter() - clock
        for model in sorted(wanted):
            yield model, predictions[model], {**info, "shared_run": len(wanted) > 1}, seconds
