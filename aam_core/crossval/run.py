"""A cross-validation request from start to end, with its files: what a ``cross_validate``
job's child process and ``aam cross-validate`` both run.

``OUT`` receives ``estimate.json`` (the duration measured before the folds start),
``folds/`` (each finished fold, reused by a resumed run), ``predictions.tsv`` (every model's
out-of-fold predictions: ``sample_id``, ``repeat``, ``fold``, ``model``, then ``prediction``
or ``label`` and ``prob_<class>`` as a predict job writes them, then ``true`` and ``group``),
``plots/`` (``fold_scores.png`` and ``oof_predicted_vs_true.png`` or ``roc.png``),
``report.json`` (:func:`aam_core.crossval.report.cv_report`) and, with ``refit``, ``refit/``:
the final model trained on every sample, its checkpoint citing the cross-validated figures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from aam_core.crossval.engine import (
    Options,
    Progress,
    Result,
    check,
    cross_validate,
    fingerprint,
    read_stamped,
)
from aam_core.crossval.estimate import estimate_seconds
from aam_core.crossval.folds import make_folds
from aam_core.crossval.models import AamOptions
from aam_core.crossval.plots import fold_scores, oof_predicted_vs_true, roc
from aam_core.crossval.report import card_summary, cv_report
from aam_core.crossval.study import Study, make_study
from aam_core.io import Inputs
from aam_core.io.files import atomic_write, write_json
from aam_core.plan import RunConfig, TargetSpec
from aam_core.plan.crossval import CrossValidation
from aam_core.train.callbacks import Callback, CallbackList, StepEvent
from aam_core.train.local_plan import plan_local
from aam_core.train.run import RunResult, run_train

PLOTTED = ("aam", "forest")  # the models the out-of-fold figures show, where they ran


@dataclass(frozen=True)
class Request:
    target: TargetSpec
    cv: CrossValidation
    config: Mapping[str, Any]  # the AAM recipe: RunConfig keys (``seed``: the first repeat's)
    model_kind: Literal["aam", "ensemble"] | None = None  # ensemble: compared and refitted too
    refit: bool = False
    device: str = "cpu"


@dataclass(frozen=True)
class Outcome:
    stopped: bool
    report: dict[str, Any] | None
    files: dict[str, Path]  # name -> file: predictions, report, estimate, plot_<name>
    refit: RunResult | None = None


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def options_for(request: Request) -> Options:
    first_seed = RunConfig.from_mapping(request.config).seed
    overrides = {k: v for k, v in request.config.items() if k != "seed"}
    models = tuple(request.cv.models)
    if request.model_kind == "ensemble" and "aam" in models:
        models += ("ensemble",)
    return Options(
        folds=request.cv.folds,
        repeats=request.cv.repeats,
        first_seed=first_seed,
        models=models,
        budget="gpu" if request.device.startswith("cuda") else "cpu",
        aam=AamOptions(overrides, device=request.device, pretrain=request.cv.pretrain),
    )


def oof_table(predictions: pd.DataFrame, first_seed: int) -> pd.DataFrame:
    """The engine's prediction rows as the job's table: ``sample_id``, the repeat (from 1),
    fold and model, then the prediction table's columns and the sample's group."""
    frame = predictions.assign(repeat=predictions["seed"] - first_seed + 1)
    head = ["sample_id", "repeat", "fold", "model"]
    return frame[head + [c for c in frame.columns if c not in (*head, "seed")]]


class _Scaled(Callback):
    """The refit's steps as the last share of the whole job's progress."""

    def __init__(
        self, inner: Callback | None, progress: Callable[[Progress], None] | None, total: int
    ) -> None:
        self.inner, self.progress, self.total = inner, progress, total

    def on_step(self, event: StepEvent) -> None:
        if self.progress is not None:
            fraction = (self.total + event.fraction) / (self.total + 1)
            self.progress(
                Progress(
                    fold=self.total,
                    total=self.total,
                    done=self.total,
                    fraction=fraction,
                    eta_seconds=None,
                    label="refit",
                    epoch=event.epoch,
                    epochs=event.epochs,
                )
            )


def run_request(
    inputs: Inputs,
    request: Request,
    out: Path,
    *,
    callback: Callback | None = None,
    progress: Callable[[Progress], None] | None = None,
    log: Callable[[str], None] | None = None,
    dataset_sha256: dict[str, str] | None = None,
    name: str = "the dataset",
) -> Outcome:
    """Run (or resume) ``request`` on ``inputs`` in ``out``."""
    say = log or (lambda _: None)
    cv = request.cv
    study = make_study(inputs, request.target, cv.group_column, (), cv.min_reads, name=name)
    options = options_for(request)
    check(study, options)  # before any work: the samples themselves
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {"estimate": out / "estimate.json"}
    estimate = _estimate(study, options, files["estimate"], out / "estimate-probe", say)
    say(
        f"{len(study.y)} samples in {cv.folds} folds x {cv.repeats} repeats of models "
        f"{', '.join(options.models)}: at most {_duration(estimate['seconds'])} (measured on "
        "the first fold)"
    )
    total = options.folds * options.repeats
    share = total / (total + 1) if request.refit else 1.0  # the refit takes the last share
    result = cross_validate(
        study,
        options,
        out,
        callback=callback,
        progress=_scaled(progress, share),
        log=log,
        estimate=estimate["seconds"],
    )
    if result.stopped:
        return Outcome(True, None, files)
    files["predictions"] = out / "predictions.tsv"
    with atomic_write(files["predictions"]) as handle:
        oof_table(result.predictions, options.first_seed).to_csv(handle, sep="\t", index=False)
    title = f"{study.target.column}: {cv.folds} grouped folds x {cv.repeats} repeats"
    files.update(_plots(out / "plots", title, study, result))
    report = cv_report(result, estimate=estimate)
    refit = None
    if request.refit:
        steps = _Scaled(callback, progress, total)
        refit = _refit(
            study.inputs, request, options, report, out / "refit", steps, callback, dataset_sha256
        )
        if refit is None:
            return Outcome(True, report, files)
    files["report"] = out / "report.json"
    write_json(files["report"], report)
    return Outcome(False, report, files, refit)


def _scaled(
    progress: Callable[[Progress], None] | None, share: float
) -> Callable[[Progress], None]:
    """``progress`` told the folds' fraction of the whole job, ``share``, and the ETA that
    fraction implies."""

    def report(p: Progress) -> None:
        if progress is not None:
            eta = None if p.eta_seconds is None else p.eta_seconds / share
            progress(dataclasses.replace(p, fraction=p.fraction * share, eta_seconds=eta))

    return report


def _estimate(
    study: Study, options: Options, path: Path, scratch: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """The run's expected duration: read back from ``path`` when an earlier run measured it
    with the same inputs, else measured on the first fold (in ``scratch``) and stored there."""
    key = fingerprint(study, options, make_folds(study, options.seeds, options.folds, None)[0])
    estimate = read_stamped(path, key)
    if estimate is None:
        say("measuring the duration on the first fold (two AAM epochs, one forest)")
        estimate = {**estimate_seconds(study, options, scratch), "fingerprint": key}
        write_json(path, estimate)
    return {k: v for k, v in estimate.items() if k != "fingerprint"}


def _plots(folder: Path, title: str, study: Study, result: Result) -> dict[str, Path]:
    """The fold scores, and the ROC curves of a classification or the out-of-fold predicted
    versus true values of a regression, as ``plot_<name>`` -> file."""
    folder.mkdir(exist_ok=True)
    shown = [m for m in PLOTTED if m in result.records]
    files = {
        "plot_fold_scores": fold_scores(
            folder / "fold_scores.png", title, study.target.task, result.records
        )
    }
    if study.classes:
        files["plot_roc"] = roc(
            folder / "roc.png", title, result.predictions, study.classes, list(result.records)
        )
    else:
        files["plot_oof_predicted_vs_true"] = oof_predicted_vs_true(
            folder / "oof_predicted_vs_true.png", title, result.predictions, shown
        )
    return files


def _refit(
    inputs: Inputs,
    request: Request,
    options: Options,
    report: dict[str, Any],
    out: Path,
    steps: Callback,
    callback: Callback | None,
    dataset_sha256: dict[str, str] | None,
) -> RunResult | None:
    """The final model, trained as each fold's AAM was, on every sample the folds used;
    None when a stop was requested."""
    settings = {**request.config, "group_column": request.cv.group_column}
    plan = plan_local(
        "train",
        settings,
        inputs,
        target=request.target,
        model_kind=request.model_kind,
        device=request.device,
    )
    log = CallbackList([steps, *([callback] if callback else [])])
    run = run_train(
        inputs,
        plan,
        out,
        callbacks=log,
        device=request.device,
        resume=(out / "checkpoints" / "last.pt").is_file(),
        dataset_sha256=dataset_sha256,
        cross_validation=card_summary(report),
    )
    return None if run.fit.stopped == "requested" else run
