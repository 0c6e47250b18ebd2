"""The models a cross-validation compares, each fitted on one outer fold and applied to its
test samples.

Every depth-free baseline reads a sample as AAM does (:meth:`Study.as_aam_reads`): rarefied to
the fold's depth when it has at least that many reads, as it is when shallower (AAM predicts
such a sample unrarefied), and trains on the samples AAM keeps. ``forest`` is a tuned random
forest on relative abundances of those counts, ``linear`` ridge or logistic regression on
their CLR, ``constant`` the training median or class shares, ``aam`` AAM trained and applied
through aam_core as a train job would be (optionally on an encoder pretrained on the fold's
training samples). Two models read sequencing depth and are kept to measure it: ``depth``
(log reads alone) and ``linear_raw`` (CLR of raw counts). The benchmark adds ``ensemble`` and
two pretrained variants of AAM (``aam_pretrained``, ``aam_pack``).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aam_core.crossval.folds import VALIDATION_FRACTION, Fold
from aam_core.crossval.study import Study, clr
from aam_core.io import Inputs
from aam_core.plan.crossval import pretrain_settings
from aam_core.predict import Predictor, SamplePrediction
from aam_core.train.baselines import relative_abundance
from aam_core.train.callbacks import Callback, CallbackList
from aam_core.train.local_plan import plan_local
from aam_core.train.prepare import read_split_tsv
from aam_core.train.run import RunResult, run_pretrain, run_train

MODELS = (
    "forest",
    "linear",
    "linear_raw",
    "constant",
    "depth",
    "aam",
    "ensemble",
    "aam_pretrained",
    "aam_pack",
)
# Trained by aam_core: AAM from scratch and the ensemble in one run; AAM fine-tuned from an
# encoder pretrained on the fold's training samples; and from one pretrained on the other
# studies of the pack first (the benchmark's --pack), then on the fold's training samples.
AAM_MODELS = frozenset({"aam", "ensemble", "aam_pretrained", "aam_pack"})
PRETRAINED = ("aam_pretrained", "aam_pack")  # each compared with "aam", trained from scratch
# The baselines that read a sample as AAM does; the best of them is AAM's reference.
DEPTH_FREE = ("forest", "linear", "constant")
DEPTH_MODEL = "depth"  # log reads alone: how far sequencing depth predicts the target
# Reported, never drawn in the figures nor counted as a depth-free baseline.
NOT_DRAWN = frozenset({"linear_raw"})
# What each model reads of a sample (the report's words).
READS = {
    "forest": "relative abundance of the counts as AAM reads them (rarefied to the fold's depth)",
    "linear": "CLR of the counts as AAM reads them (rarefied to the fold's depth) + 0.5",
    "linear_raw": "CLR of raw counts + 0.5",
    "constant": "nothing: the training median (regression) or class shares",
    "depth": "log(raw reads per sample) alone, standardised on the training rows",
    "aam": "its own rarefaction to the fold's depth (aam_core's train and predict)",
    "ensemble": "as aam, blended with a forest chosen on the inner validation split",
    "aam_pretrained": "as aam, from an encoder pretrained on the fold's training samples",
    "aam_pack": "as aam_pretrained, the encoder first pretrained on the pack's other studies",
}
FOREST_GRID = [(f, leaf) for f in ("sqrt", 0.3, 1.0) for leaf in (1, 3, 5)]
# (trees of the 9-point grid search, trees of the refit forest). On 2 cores a 500-tree search
# costs ~2 minutes per fold on udca (4,333 features), over the CPU budget for 15 folds. Checked
# on ecam_partial and ibd2538 (seed 0, 10 folds): a 500-tree search picked another grid point
# in 6 folds, but the points it chose between were within the search's own noise, and an untuned
# 500-tree forest scored as the tuned one (MAE 2.82 vs 2.81, AUC 0.88 vs 0.88).
TREES = {"cpu": (100, 500), "gpu": (500, 500)}
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5)  # CLR features number in the thousands
LOGISTIC_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
# The depth model's grids: decades as above, centred for one standardised feature.
DEPTH_ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3)
DEPTH_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


class Stopped(Exception):
    """A stop was requested (a cancelled job) while a fold ran: the fold is not finished."""


@dataclass(frozen=True, kw_only=True)
class Prediction:
    values: np.ndarray | None = None  # regression [n_test]
    labels: np.ndarray | None = None  # classification, class names [n_test]
    probabilities: np.ndarray | None = None  # [n_test, K], columns in Study.classes order


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


def fit_forest(
    study: Study, fold: Fold, budget: str, n_jobs: int = -1
) -> tuple[Prediction, dict[str, Any]]:
    forest = RandomForestClassifier if study.classes else RandomForestRegressor

    def make(point: tuple[Any, int], refit: bool) -> Any:
        trees = TREES[budget][1 if refit else 0]
        features, leaf = point
        return forest(
            n_estimators=trees,
            max_features=features,
            min_samples_leaf=leaf,
            n_jobs=n_jobs,
            random_state=fold.seed,
        )

    reads = study.as_aam_reads(fold.seed, fold.depth)
    x = np.asarray(relative_abundance(reads).toarray())  # [n_samples, n_features]
    prediction, best = tune_and_refit(study, fold, x, make, FOREST_GRID)
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
    overrides: Mapping[str, Any]  # RunConfig keys over aam_core's defaults
    device: str = "cpu"
    keep_checkpoints: bool = False
    pretrain_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    pack_encoder: Path | None = None  # pretrained on the pack's other studies (aam_pack)
    freeze_pretrained: bool = False  # pretrained variants train on a frozen encoder
    pretrain: bool = False  # "aam" itself starts from an encoder pretrained on its fold

    def settings(self, group: str | None, seed: int) -> dict[str, Any]:
        """A train run's settings: the cross-validation's split, then the user's overrides.
        A fold's run fits no forest of its own beside AAM (``baseline``): the cross-validation
        compares its own, on the same folds (an ensemble still fits the one it blends)."""
        split = {
            "group_column": group,
            "validation_fraction": VALIDATION_FRACTION,
            "seed": seed,
            "baseline": False,
        }
        return {**split, **self.overrides}

    def pretrain_settings(self, group: str | None, seed: int) -> dict[str, Any]:
        """A pretrain run's: the train run's that apply to pretraining, then
        ``pretrain_overrides``."""
        return {**pretrain_settings(self.settings(group, seed)), **self.pretrain_overrides}


def _finished(run: RunResult) -> RunResult:
    if run.fit.stopped == "requested":
        raise Stopped("a stop was requested")
    return run


def run_aam(
    study: Study,
    fold: Fold,
    options: AamOptions,
    wanted: set[str],
    out: Path,
    callback: Callback | None = None,
) -> tuple[dict[str, Prediction], dict[str, Any]]:
    """Train AAM (or the ensemble, whose AAM component then comes from the same run) on the
    outer training fold as a user's train job would, and predict the outer test fold.
    ``wanted`` holds "aam_pretrained" or "aam_pack" alone: AAM fine-tuned from an encoder
    pretrained on the fold's training samples (from the pack's encoder for "aam_pack"); with
    ``options.pretrain`` plain "aam" pretrains first too. Raises :class:`Stopped` when
    ``callback`` asks for a stop."""
    variant = next((m for m in PRETRAINED if m in wanted), None)
    run_dir = out / (variant or "aam") / fold.name
    inputs = dataclasses.replace(study.inputs, table=study.inputs.table.subset_samples(fold.train))
    log = CallbackList([callback] if callback else [])
    info: dict[str, Any] = {}
    base = None
    if variant is not None or options.pretrain:
        start = options.pack_encoder if variant == "aam_pack" else None
        encoder = _pretrain(inputs, study, fold, options, start, run_dir / "pretrain", log)
        info["unifrac_r2"] = encoder.validation.get("unifrac_r2")  # validation pairs only
        info["pretrain_epochs"] = encoder.fit.epochs_run
        base = encoder.best_checkpoint or encoder.last_checkpoint
    ensemble = "ensemble" in wanted
    run = _train(inputs, study, fold, options, base, ensemble, run_dir / "train", log)
    info.update(_train_info(run, run_dir / "train" / "split.tsv", study, fold))
    checkpoint = run.best_checkpoint or run.last_checkpoint
    predictions = _predict_test(study, fold, checkpoint, wanted, options.device)
    if not options.keep_checkpoints:
        for path in run_dir.glob("*/checkpoints"):
            shutil.rmtree(path)
    return predictions, info


def _pretrain(
    inputs: Inputs,
    study: Study,
    fold: Fold,
    options: AamOptions,
    start: Path | None,
    out: Path,
    log: CallbackList,
) -> RunResult:
    """Pretrain an encoder on the fold's training samples, from ``start`` when given."""
    settings = options.pretrain_settings(study.group, fold.seed)
    plan = plan_local("pretrain", settings, inputs, base_checkpoint=start, device=options.device)
    return _finished(run_pretrain(inputs, plan, out, device=options.device, callbacks=log))


def _train(
    inputs: Inputs,
    study: Study,
    fold: Fold,
    options: AamOptions,
    base: Path | None,
    ensemble: bool,
    out: Path,
    log: CallbackList,
) -> RunResult:
    """Train AAM (or the ensemble) on the fold's training samples, from the encoder ``base``
    when pretrained."""
    kind: dict[str, Any] = {"model_kind": "ensemble"} if ensemble else {}
    plan = plan_local(
        "train",
        options.settings(study.group, fold.seed),
        inputs,
        target=study.target,
        base_checkpoint=base,
        freeze_base=base is not None and options.freeze_pretrained,
        device=options.device,
        **kind,
    )
    return _finished(run_train(inputs, plan, out, device=options.device, callbacks=log))


def _train_info(run: RunResult, split: Path, study: Study, fold: Fold) -> dict[str, Any]:
    """What a fold's train run reports of itself, and whether the inner validation split it
    wrote (``split``) is the fold's own."""
    drawn = read_split_tsv(split)["validation"]
    inner_val = sorted(study.inputs.table.sample_ids[i] for i in fold.inner_val)
    return {
        "epochs_run": run.fit.epochs_run,
        "best_epoch": run.fit.best_epoch,
        "stopped": run.fit.stopped,
        "depth": run.report.get("rarefaction", {}).get("depth"),
        "inner_validation": run.validation,
        "linear_base": (run.report.get("linear_base") or {}).get("validation"),
        "ensemble": run.report.get("ensemble"),  # aam_core's blend: weight, choice, reason
        # the forest and the linear model chose on the same validation samples as AAM
        "inner_split_matches": sorted(drawn) == inner_val,
    }


def _predict_test(
    study: Study, fold: Fold, checkpoint: Path, wanted: set[str], device: str
) -> dict[str, Prediction]:
    """Each of ``wanted``'s predictions of the outer test fold by the trained ``checkpoint``."""
    predictor = Predictor.from_path(checkpoint, device=device)
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
    return predictions


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
    study: Study,
    fold: Fold,
    models: Sequence[str],
    aam: AamOptions,
    out: Path,
    *,
    budget: str = "cpu",
    forest_jobs: int = -1,
    callback: Callback | None = None,
) -> Iterator[tuple[str, Prediction, dict[str, Any], float]]:
    """Per model: its test-fold prediction, its choices and its seconds (fit + predict). AAM
    and the ensemble come from one training run and share its seconds. A baseline's choices
    begin with the fold's depth and its training rows (the samples AAM keeps)."""
    plain = {
        "forest": lambda: fit_forest(study, fold, budget, forest_jobs),
        "linear": lambda: fit_linear(study, fold),
        "linear_raw": lambda: fit_linear(study, fold, raw=True),
        "constant": lambda: fit_constant(study, fold),
        "depth": lambda: fit_depth(study, fold),
    }
    for model in (m for m in models if m in plain):
        if callback is not None and callback.should_stop():
            raise Stopped("a stop was requested")
        clock = time.perf_counter()
        prediction, info = plain[model]()
        info = {"depth": fold.depth, "n_train": int(fold.kept.size), **info}
        yield model, prediction, info, time.perf_counter() - clock
    together = set(models) & (AAM_MODELS - set(PRETRAINED))  # one run: aam and ensemble
    for wanted in [together, *({m} for m in PRETRAINED if m in models)]:
        if not wanted:
            continue
        clock = time.perf_counter()
        predictions, info = run_aam(study, fold, aam, wanted, out, callback)
        seconds = time.perf_counter() - clock
        for model in sorted(wanted):
            yield model, predictions[model], {**info, "shared_run": len(wanted) > 1}, seconds
