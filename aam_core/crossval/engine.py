"""A cross-validation from start to end: check the options, draw the folds, estimate the
duration, run every model on every fold, keep each finished fold on disk, and summarise.

Each finished fold's fold records and out-of-fold predictions are written to
``OUT/folds/<seed>-<fold>.json`` with a fingerprint of what made them (the samples, the fold,
the models and their settings). A run given the same ``OUT`` again (a job resumed after its
worker died, a benchmark restarted) keeps the folds whose fingerprint matches and runs only
the rest; the summary is always computed from the files, so a resumed run reports exactly
what an uninterrupted one would.

A stop request (``callback.should_stop()``: a cancelled job) ends the run at the next step of
the fold it is on; that fold is dropped, the finished ones stay, and :attr:`Result.stopped`
says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aam_core.crossval.folds import Fold, make_folds
from aam_core.crossval.models import (
    AAM_MODELS,
    DEPTH_FREE,
    DEPTH_MODEL,
    MODELS,
    PRETRAINED,
    TREES,
    AamOptions,
    Stopped,
    fit_fold,
)
from aam_core.crossval.scoring import PRIMARY, fold_predictions, score, summarise
from aam_core.crossval.study import Study
from aam_core.errors import ConfigError
from aam_core.io.files import atomic_write
from aam_core.io.predictions import PREDICTION, SAMPLE_ID, TRUE
from aam_core.plan import RunConfig
from aam_core.plan.crossval import check_counts
from aam_core.train.callbacks import Callback, EpochEvent, StepEvent

# The models a cross-validation runs unless told otherwise (the REST contract's five).
DEFAULT_MODELS = ("aam", "forest", "linear", "constant", "depth")
# Of a fold's time, the share taken before AAM starts (the baselines) in progress fractions.
BASELINE_SHARE = 0.1


@dataclass(frozen=True)
class Options:
    folds: int = 5
    repeats: int = 1
    first_seed: int = 0  # repeat r (1-based) shuffles with seed first_seed + r - 1
    models: tuple[str, ...] = DEFAULT_MODELS
    budget: str = "cpu"  # the forest's trees: see models.TREES
    forest_jobs: int = -1
    aam: AamOptions = field(default_factory=lambda: AamOptions({}))

    @property
    def seeds(self) -> range:
        return range(self.first_seed, self.first_seed + self.repeats)


@dataclass(frozen=True)
class Progress:
    """Where a run stands: ``done`` folds of ``total`` finished, ``fraction`` of the whole run
    (folds, and steps of AAM's training within the current one), ``eta_seconds`` left."""

    fold: int  # the fold being run, 1-based over all repeats
    total: int
    done: int
    fraction: float
    eta_seconds: float | None
    label: str  # "seed 0 fold 3"; "refit" once the folds are done and the final model trains
    epoch: int | None = None
    epochs: int | None = None


@dataclass(frozen=True)
class Result:
    study: Study
    options: Options
    folds: list[Fold]
    records: dict[str, list[dict[str, Any]]]  # model -> fold records, in fold order
    predictions: pd.DataFrame  # every model's out-of-fold rows
    summary: dict[str, Any] | None  # None when stopped before every fold finished
    stopped: bool
    reused: int  # folds read back from an earlier run in the same directory
    seconds: float


def check(study: Study, options: Options) -> None:
    """Refuse what cannot run, before any work: each refusal names the option."""
    check_counts(options.folds, options.repeats)
    unknown = [m for m in options.models if m not in MODELS]
    if unknown or not options.models:
        raise ConfigError(
            f"models must name some of {', '.join(MODELS)}; got {list(options.models)}",
            field="cv.models",
        )
    if options.budget not in TREES:
        raise ConfigError(f"budget must be one of {', '.join(TREES)}", field="cv.budget")
    n_groups = int(np.unique(study.groups).size)
    what = f"subjects ({study.group})" if study.group else "samples"
    if n_groups < options.folds:
        raise ConfigError(
            f"{options.folds} folds need at least {options.folds} {what}; the usable samples "
            f"(with a target value and enough reads) have {n_groups}",
            field="cv.folds",
        )
    if study.classes:
        for name in study.classes:
            holding = np.unique(study.groups[study.y == name]).size
            if holding < 2:
                raise ConfigError(
                    f"class {name!r} is in {holding} of the {what}: a grouped cross-validation "
                    "needs every class in at least 2, so that a training fold holds it",
                    field="target",
                )
    pretrains = options.aam.pretrain and "aam" in options.models
    if (pretrains or set(PRETRAINED) & set(options.models)) and study.inputs.tree is None:
        raise ConfigError(
            "pretraining per fold needs a phylogenetic tree: the dataset has none",
            field="cv.pretrain",
        )


def fingerprint(study: Study, options: Options, fold: Fold) -> str:
    """What a fold's results depend on: its samples, their counts and targets, its rows and
    the models with their settings. A file of another fingerprint is not reused."""
    digest = hashlib.sha256()
    counts = study.inputs.table.counts  # csr [n_samples, n_features]
    features = np.array(study.inputs.table.feature_ids)
    for part in (
        study.sample_ids,
        study.y.astype(str),
        study.groups,
        fold.train,
        fold.test,
        features,
        counts.indptr,
        counts.indices,
        counts.data,
    ):
        digest.update(np.ascontiguousarray(part).astype(str).tobytes())
        digest.update(b"\0")
    aam = dataclasses.asdict(options.aam)
    aam.pop("keep_checkpoints")
    aam["pack_encoder"] = None if options.aam.pack_encoder is None else str(aam["pack_encoder"])
    settings = {
        "models": list(options.models),
        "budget": options.budget,
        "aam": aam,
        "seed": fold.seed,
        "depth": fold.depth,
        "task": study.target.task,
        "rows": [SAMPLE_ID, TRUE, PREDICTION],  # the prediction table's columns
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """numpy values as JSON's (NaN stays NaN: Python's json reads it back)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _fold_file(out: Path, fold: Fold) -> Path:
    return out / "folds" / f"{fold.name}.json"


def read_stamped(path: Path, key: str) -> dict[str, Any] | None:
    """The JSON object in ``path`` when its ``fingerprint`` is ``key``; None when the file is
    missing, unreadable, or written for other settings (a finished fold, the run's estimate)."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) and stored.get("fingerprint") == key else None


def run_fold(
    study: Study,
    fold: Fold,
    options: Options,
    out: Path,
    callback: Callback | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every model on one outer fold: ``{"records": {model: record}, "rows": [...]}`` (the
    prediction rows of its test samples)."""
    task = study.target.task
    metric = PRIMARY[task]
    test = fold.test
    truth, groups = study.y[test], study.groups[test]
    records: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for model, prediction, info, seconds in fit_fold(
        study,
        fold,
        options.models,
        options.aam,
        out,
        budget=options.budget,
        forest_jobs=options.forest_jobs,
        callback=callback,
    ):
        given = {"classes": study.classes, **dataclasses.asdict(prediction)}
        metrics = score(task, truth, groups, **given)
        records[model] = {
            "seed": fold.seed,
            "fold": fold.index,
            "n_test": int(test.size),
            "n_test_groups": int(np.unique(groups).size),
            **metrics,
            "seconds": seconds,
            "details": info,
        }
        frame = fold_predictions(
            model, fold.seed, fold.index, study.sample_ids[test], groups, truth, **given
        )
        rows.extend(frame.to_dict("records"))
        if log is not None:
            choices = [f"{k} {v}" for k, v in info.items() if not isinstance(v, dict | None)]
            log(
                f"[{model}] seed {fold.seed} fold {fold.index}: {metric} "
                f"{metrics['per_sample'][metric]:.4g} (subject-weighted "
                f"{metrics['subject_weighted'][metric]:.4g}), {seconds:.1f} s, "
                + ", ".join(choices)
            )
    return {"records": records, "rows": rows}


class _FoldProgress(Callback):
    """A fold's AAM training events as the whole run's progress; logs and stop requests pass
    through to the caller's callback."""

    def __init__(self, inner: Callback | None, report: Callable[[float, StepEvent], None]):
        self.inner = inner
        self.report = report

    def on_step(self, event: StepEvent) -> None:
        self.report(event.fraction, event)

    def on_epoch(self, event: EpochEvent) -> None:
        if self.inner is not None:
            self.inner.on_epoch(event)

    def on_log(self, message: str) -> None:
        if self.inner is not None:
            self.inner.on_log(message)

    def should_stop(self) -> bool:
        return self.inner is not None and self.inner.should_stop()


# Runs folds elsewhere (the benchmark's processes): each fold's run_fold output, in order.
Mapper = Callable[[Sequence[Fold]], Iterable[dict[str, Any]]]


def cross_validate(
    study: Study,
    options: Options,
    out: Path,
    *,
    callback: Callback | None = None,
    progress: Callable[[Progress], None] | None = None,
    log: Callable[[str], None] | None = None,
    mapper: Mapper | None = None,
    estimate: float | None = None,
) -> Result:
    """Run (or finish) the cross-validation in ``out``. ``mapper``: runs folds elsewhere (the
    benchmark's processes) and yields each fold's :func:`run_fold` output in order; without
    one the folds run here, one at a time, with progress and stop requests. ``estimate``: the
    expected seconds of the whole run, the ETA until the first fold finishes."""
    check(study, options)
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    depth = RunConfig.from_mapping(options.aam.settings(study.group, 0)).rarefaction_depth
    folds = make_folds(study, options.seeds, options.folds, depth)
    keys = [fingerprint(study, options, f) for f in folds]
    todo = _unfinished(out, folds, keys)
    reused = len(folds) - len(todo)
    if reused and log is not None:
        log(f"{reused} of {len(folds)} folds were finished by an earlier run: kept, not rerun")
    total = len(folds)
    tick = _Ticker(total, reused, estimate, progress)
    stopped = False
    if mapper is not None:
        outputs: Iterator[dict[str, Any]] = iter(mapper([fold for _, fold in todo]))
    for k, fold in todo:
        tick.start(k + 1, fold)
        if mapper is not None:
            output = next(outputs)
        else:
            watch = _FoldProgress(callback, tick.within)
            try:
                output = run_fold(study, fold, options, out, watch, log)
            except Stopped:
                stopped = True
                break
        _store(out, fold, keys[k], output)
        tick.finish()
    records, predictions = _collect(out, folds, keys, options.models)
    summary = None if stopped else _summary(study, records, predictions)
    seconds = time.perf_counter() - started
    return Result(study, options, folds, records, predictions, summary, stopped, reused, seconds)


def _unfinished(out: Path, folds: Sequence[Fold], keys: Sequence[str]) -> list[tuple[int, Fold]]:
    """The folds (with their index) that no earlier run in ``out`` finished with these inputs."""
    return [
        (k, fold)
        for k, fold in enumerate(folds)
        if read_stamped(_fold_file(out, fold), keys[k]) is None
    ]


def _store(out: Path, fold: Fold, key: str, output: dict[str, Any]) -> None:
    """A finished fold's output, stamped with its fingerprint, for a later run to reuse."""
    path = _fold_file(out, fold)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(json.dumps({"fingerprint": key, **output}, default=_plain))


def _summary(
    study: Study, records: dict[str, list[dict[str, Any]]], predictions: pd.DataFrame
) -> dict[str, Any]:
    """Every model's scores over all folds, with AAM's comparisons and the depth check."""
    return summarise(
        study.target.task,
        study.classes,
        records,
        predictions,
        baselines=DEPTH_FREE,
        contenders=sorted(AAM_MODELS),
        depth_model=DEPTH_MODEL,
        pretrained=PRETRAINED,
        target=study.target.column,
    )


def _collect(
    out: Path, folds: Sequence[Fold], keys: Sequence[str], models: Sequence[str]
) -> tuple[dict[str, list[dict[str, Any]]], pd.DataFrame]:
    """Every finished fold's records and rows, read from its file, in fold order."""
    records: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    rows: list[dict[str, Any]] = []
    for fold, key in zip(folds, keys, strict=True):
        stored = read_stamped(_fold_file(out, fold), key)
        if stored is None:
            continue
        for model in models:
            records[model].append(stored["records"][model])
        rows.extend(stored["rows"])
    return records, pd.DataFrame(rows)


class _Ticker:
    """Progress and ETA: folds count 1 each; within a fold the baselines take
    :data:`BASELINE_SHARE` and AAM's steps the rest. The ETA extrapolates this attempt's pace
    once it has made progress; before, it is ``estimate`` scaled to what is left."""

    def __init__(
        self,
        total: int,
        done: int,
        estimate: float | None,
        report: Callable[[Progress], None] | None,
    ) -> None:
        self.total, self.done, self.estimate, self.report = total, done, estimate, report
        self.first = done / total
        self.clock = time.perf_counter()
        self.fold, self.label = done + 1, ""

    def _send(self, within: float, event: StepEvent | None = None) -> None:
        if self.report is None:
            return
        fraction = min((self.done + within) / self.total, 1.0)
        made = fraction - self.first
        elapsed = time.perf_counter() - self.clock
        if made > 0.01 and elapsed > 0:
            eta: float | None = elapsed / made * (1.0 - fraction)
        elif self.estimate is not None:
            eta = self.estimate * (1.0 - fraction)
        else:
            eta = None
        self.report(
            Progress(
                fold=self.fold,
                total=self.total,
                done=self.done,
                fraction=fraction,
                eta_seconds=eta,
                label=self.label,
                epoch=None if event is None else event.epoch,
                epochs=None if event is None else event.epochs,
            )
        )

    def start(self, fold: int, which: Fold) -> None:
        self.fold, self.label = fold, f"seed {which.seed} fold {which.index}"
        self._send(0.0)

    def within(self, fraction: float, event: StepEvent) -> None:
        self._send(BASELINE_SHARE + (1 - BASELINE_SHARE) * fraction, event)

    def finish(self) -> None:
        self.done += 1
        self._send(0.0)
