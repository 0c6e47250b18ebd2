"""Model-quality benchmark: AAM against a tuned random forest, a CLR linear model and a constant
that read a sample as AAM does, on identical repeated grouped K-fold splits of a real study;
prints one JSON object.

    python bench/quality.py DATASET_DIR --target COL --task regression|classification \
        [--group COL] [--where COL=VALUE ...] [--seeds 3] [--folds 5] [--models forest,aam,...]

For each seed the groups (subjects) are shuffled into K outer folds (stratified for
classification). In each outer training fold AAM's rarefaction depth is chosen over the
training samples' reads (``aam_core.data.rarefy.choose_depth``), and every model trains on the
samples at or above it; the forest and the linear model read counts rarefied to it (a shallower
test sample as it is), as AAM does, since AAM cannot read sequencing depth. One grouped inner
validation split of those samples (20% of groups, ``aam_core.train.prepare.split_rows``: the
split AAM's own training draws) makes every choice: the baselines' hyperparameters and AAM's
early stopping. The outer test fold is only scored. Two models that read depth measure how far
it alone predicts the target: ``depth`` (log reads) and ``linear_raw`` (CLR of raw counts,
reported but not drawn, and never AAM's reference). AAM is compared with the forest and with
the best depth-free baseline. Writes ``quality.json``, ``quality.png`` and ``predictions.tsv``
to ``--out`` (default ``quality-results/<dataset>-<target>/``, relative to the working
directory).

The engine is aam_core.crossval (the cross_validate job's and ``aam cross-validate``'s);
this script adds the benchmark's extra models (ensemble, the pretrained variants), folds run
in parallel processes, and the machine's description.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np

from aam_core.crossval.engine import Options, cross_validate, run_fold
from aam_core.crossval.folds import Fold
from aam_core.crossval.models import (
    DEPTH_ALPHAS,
    DEPTH_CS,
    DEPTH_FREE,
    LOGISTIC_CS,
    MODELS,
    NOT_DRAWN,
    PRETRAINED,
    READS,
    RIDGE_ALPHAS,
    TREES,
    AamOptions,
)
from aam_core.crossval.plots import quality_figure
from aam_core.crossval.scoring import PRIMARY
from aam_core.crossval.study import FILES, Study, load_study
from aam_core.data.rarefy import DEFAULT_DEPTH
from aam_core.errors import UserError
from aam_core.io.files import to_jsonable
from aam_core.plan import RunConfig
from aam_core.plan.targets import Task
from aam_core.train.callbacks import Callback, EpochEvent
from aam_core.train.local_plan import plan_local
from aam_core.train.run import run_pretrain


class UsageError(ValueError):
    """A command line the benchmark cannot run."""


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the JSON)."""
    print(message, file=sys.stderr, flush=True)


class EpochLog(Callback):
    """AAM's epochs and log lines on stderr, prefixed with the fold."""

    def __init__(self, label: str) -> None:
        self.label = label

    def on_epoch(self, event: EpochEvent) -> None:
        value = "-" if event.value is None else f"{event.value:.4g}"
        log(
            f"{self.label} epoch {event.epoch}/{event.epochs}: {event.monitor} {value} "
            f"(best epoch {event.best_epoch}), {event.seconds:.1f} s"
        )

    def on_log(self, message: str) -> None:
        log(f"{self.label} {message}")


def resolve_models(spec: str | None) -> list[str]:
    """The models to run: ``--models`` checked, or every model that needs no pretraining."""
    if spec is None:
        return [m for m in MODELS if m not in PRETRAINED]
    chosen = list(dict.fromkeys(m.strip() for m in spec.split(",") if m.strip()))
    if not chosen or any(m not in MODELS for m in chosen):
        raise UsageError(f"--models {spec!r}: choose from {', '.join(MODELS)}")
    return chosen


def _settings(text: str | None, option: str) -> dict[str, Any]:
    """A JSON mapping of RunConfig keys given as ``option``, checked before any work."""
    try:
        overrides = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} is not JSON ({exc})") from None
    if not isinstance(overrides, dict):
        raise UsageError(f"{option} must be a JSON mapping, got {text!r}")
    fixed = sorted(set(overrides) & {"group_column", "validation_fraction", "seed"})
    if fixed:  # every model must choose on the same inner split
        raise UsageError(f"{option}: {', '.join(fixed)} are set by the benchmark")
    RunConfig.from_mapping(overrides)  # an unknown key or a bad value fails before any work
    return overrides


def aam_options(args: argparse.Namespace) -> AamOptions:
    return AamOptions(
        _settings(args.aam_config, "--aam-config"),
        args.device,
        args.keep_checkpoints,
        _settings(args.pretrain_config, "--pretrain-config"),
        freeze_pretrained=args.freeze_pretrained,
    )


def pretrain_pack(
    directories: Sequence[Path], options: AamOptions, seed: int, out: Path
) -> tuple[Path, list[dict[str, Any]]]:
    """An encoder pretrained on each study of ``directories`` in turn (each continuing from the
    one before; whole studies, a random validation split), and each run's validation figures.
    Each study needs a tree; its metadata is not read."""
    from aam_core.io import load_files

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


READ_RAREFIED = frozenset({"forest", "linear"})  # the models that read Study.as_aam_reads
_CONTEXT: tuple[Study, Options, Path] | None = None  # a worker process's, inherited by fork


def _fold(study: Study, options: Options, out: Path, fold: Fold) -> dict[str, Any]:
    label = f"seed {fold.seed} fold {fold.index}"
    return run_fold(study, fold, options, out, EpochLog(f"[{label}]"), log)


def _fold_in_worker(fold: Fold) -> dict[str, Any]:
    assert _CONTEXT is not None
    return _fold(*_CONTEXT, fold)


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)  # the jobs share the cores instead of fighting for them


def fold_mapper(study: Study, options: Options, out: Path, jobs: int) -> Any:
    """The engine's mapper: each fold's results, in fold order; ``jobs`` > 1 runs that many
    folds at once in forked processes, each with its share of the cores (the forest's
    included)."""

    def run(folds: Sequence[Fold]) -> Iterator[dict[str, Any]]:
        global _CONTEXT
        if jobs <= 1:
            yield from (_fold(study, options, out, fold) for fold in folds)
            return
        if READ_RAREFIED & set(options.models):  # drawn here once, inherited by every worker
            for fold in folds:
                study.as_aam_reads(fold.seed, fold.depth)
        _CONTEXT = (study, options, out)
        threads = max(1, len(os.sched_getaffinity(0)) // jobs)
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_start_worker,
            initargs=(threads,),
        ) as pool:
            yield from pool.map(_fold_in_worker, folds)

    return run


def environment(device: str) -> dict[str, Any]:
    """The machine and the package versions a run's times and numbers belong to."""
    import sklearn
    import torch

    from aam_core import __version__

    return {
        "machine": {
            "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(),
            "device": device,
            "platform": platform.platform(),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
            "aam_core": __version__,
        },
    }


def protocol(
    args: argparse.Namespace, study: Study, models: list[str], aam: AamOptions, folds: list[Fold]
) -> dict[str, Any]:
    """What was compared and how: the samples, the folds, each model's features and grid."""
    search, refit = TREES[args.budget]
    settings = aam.settings(study.group, 0)
    depths = sorted({fold.depth for fold in folds})
    return {
        "dataset": str(args.dataset), "target": args.target, "task": args.task,
        "group": args.group, "where": args.where, "jobs": args.jobs, "min_reads": args.min_reads,
        "n_samples": int(study.y.size), "n_groups": int(np.unique(study.groups).size),
        "samples_dropped": study.notes, "classes": list(study.classes) or None,
        "seeds": args.seeds, "first_seed": args.first_seed, "folds": args.folds,
        "models": models,
        "primary_metric": PRIMARY[args.task], "budget": args.budget,
        "representation": "per outer training fold, AAM's rarefaction depth: choose_depth over "
        f"the training samples' reads ({DEFAULT_DEPTH}, or lower when that drops more than 10% "
        "of them; --aam-config rarefaction_depth fixes it). Every model trains on the training "
        "samples at or above it (the ones AAM keeps) and predicts every test sample; the "
        "depth-free models read counts rarefied to it (aam_core.data.rarefy, seeded by the "
        "outer seed, drawn once per seed and depth), a test sample below it as it is, as AAM "
        "predicts it",
        "depths": depths,
        "depth_free_baselines": [m for m in DEPTH_FREE if m in models],
        "inner_validation": "per outer training fold, 20% of the groups of the samples AAM "
        "keeps (seeded by the outer seed), drawn as AAM's training draws it (split_rows): "
        "every baseline's choices and AAM's early stopping; the chosen baseline is refit on "
        "all the kept samples",
        "forest": {"features": READS["forest"],
               "grid": {"max_features": ["sqrt", 0.3, 1.0], "min_samples_leaf": [1, 3, 5]},
               "n_estimators_search": search, "n_estimators_refit": refit,
               "note": None if search == refit else f"{args.budget} budget: the grid is "
               f"searched with {search} trees, the chosen forest refit with {refit}"},
        "linear": {"features": READS["linear"],
                   "grid": {"C": LOGISTIC_CS} if study.classes else {"alpha": RIDGE_ALPHAS}},
        "linear_raw": {"features": READS["linear_raw"],
                       "note": "CLR of raw counts: reads sequencing depth; not a depth-free "
                       "baseline (reported, not drawn in quality.png, never the best baseline)",
                       "grid": {"C": LOGISTIC_CS} if study.classes else {"alpha": RIDGE_ALPHAS}},
        "constant": {"features": READS["constant"]},
        "depth": {"features": READS["depth"],
                  "note": "reads sequencing depth alone: how far a model could score without "
                  "reading composition (depth_check)",
                  "grid": {"C": DEPTH_CS} if study.classes else {"alpha": DEPTH_ALPHAS}},
        "aam": {"features": READS["aam"],
                "settings": {**settings, "seed": "the outer seed"},
                "device": args.device, "recipe": RunConfig.from_mapping(settings).to_dict()},
        "aam_pretrained": {"features": READS["aam_pretrained"],
                           "pretrain_settings": aam.pretrain_settings(study.group, 0),
                           "freeze_base": aam.freeze_pretrained},
        "aam_pack": {"features": READS["aam_pack"], "pack": [str(p) for p in args.pack]},
    }  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("dataset", type=Path, help="folder with table.biom, metadata.tsv (tree, rep-seqs)")
    add("--target", required=True)
    add("--task", required=True, choices=("regression", "classification"))
    add("--group", help="subject column (default: every sample is its own group)")
    add("--where", action="append", default=[], help="keep samples with COL=VALUE")
    add("--min-reads", type=int, default=1000, help="drop samples with fewer reads")
    add("--seeds", type=int, default=3)
    add(
        "--first-seed",
        type=int,
        default=0,
        help="seeds first-seed .. first-seed+seeds-1: a decision made on other seeds' splits "
        "than the ones reported",
    )
    add("--folds", type=int, default=5)
    add(
        "--models",
        help=f"comma-separated, of {', '.join(MODELS)} (default: all but "
        f"{' and '.join(PRETRAINED)}, which pretrain first). forest, linear and constant "
        "read counts rarefied as AAM reads them; depth (log reads alone) and linear_raw (CLR of "
        "raw counts, not drawn) read sequencing depth",
    )
    add("--aam-config", help="JSON mapping of RunConfig keys over AAM's defaults")
    add(
        "--pretrain-config",
        help="JSON mapping of RunConfig keys over the pretraining of aam_pretrained and "
        "aam_pack (e.g. a smaller epoch count)",
    )
    add(
        "--freeze-pretrained",
        action="store_true",
        help="aam_pretrained and aam_pack train on their encoder frozen (freeze_base)",
    )
    add(
        "--pack",
        type=Path,
        action="append",
        default=[],
        help="a study folder (with a tree) aam_pack's encoder is pretrained on before each "
        "fold's samples; repeat for several, pretrained in that order",
    )
    add("--device", default="cpu", help="AAM's device")
    add(
        "--budget",
        choices=tuple(TREES),
        default="cpu",
        help="cpu: forest grid searched with 100 trees, folds in parallel (a main task of the "
        "data pack in under 30 minutes on 2 cores); gpu: 500 trees, one fold at a time",
    )
    add(
        "--jobs",
        type=int,
        help="outer folds run at once, processes sharing the cores "
        "(default: with --budget cpu one per usable core, with gpu 1)",
    )
    add("--out", type=Path, help="output folder (default quality-results/<dataset>-<target>)")
    add("--keep-checkpoints", action="store_true", help="keep AAM's checkpoints")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    args = parse_args(argv)
    task = cast(Task, args.task)
    models, aam = resolve_models(args.models), aam_options(args)
    if args.jobs is None:
        args.jobs = len(os.sched_getaffinity(0)) if args.budget == "cpu" else 1
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    if args.first_seed < 0:
        raise UsageError(f"--first-seed must be >= 0, got {args.first_seed}")
    study = load_study(args.dataset, args.target, task, args.group, args.where, args.min_reads)
    pretrained = [m for m in models if m in PRETRAINED]
    if pretrained and study.inputs.tree is None:
        raise UsageError(f"{pretrained[0]} needs a tree: {args.dataset} has no tree.nwk")
    if ("aam_pack" in models) != bool(args.pack):
        raise UsageError("aam_pack and --pack go together: name the pack's other studies")
    out = args.out or Path("quality-results") / f"{study.name}-{args.target}"
    out.mkdir(parents=True, exist_ok=True)
    pack_runs = None
    if args.pack:  # once, before the folds: every fold continues from this encoder
        encoder, pack_runs = pretrain_pack(args.pack, aam, args.first_seed, out / "pack")
        aam = dataclasses.replace(aam, pack_encoder=encoder)
    threads = max(1, len(os.sched_getaffinity(0)) // args.jobs)
    options = Options(
        folds=args.folds, repeats=args.seeds, first_seed=args.first_seed, models=tuple(models),
        budget=args.budget, forest_jobs=-1 if args.jobs == 1 else threads, aam=aam,
    )  # fmt: skip
    result = cross_validate(
        study, options, out, log=log, mapper=fold_mapper(study, options, out, args.jobs)
    )
    assert result.summary is not None  # nothing asks the benchmark to stop
    result.predictions.to_csv(out / "predictions.tsv", sep="\t", index=False)
    title = f"{study.name} {args.target}: {args.seeds} seeds x {args.folds} grouped folds"
    drawn = {m: r for m, r in result.records.items() if m not in NOT_DRAWN}
    quality_figure(out / "quality.png", title, task, drawn, result.predictions)
    report = to_jsonable(
        {
            **protocol(args, study, models, aam, result.folds),
            **result.summary,
            "pack_pretraining": pack_runs,
            "folds_reused": result.reused,
            "seconds": time.perf_counter() - started,
            **environment(args.device),
            "files": {n: str(out / n) for n in ("quality.json", "quality.png", "predictions.tsv")},
        }
    )
    (out / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    try:
        print(json.dumps(main(), indent=2))
    except (UsageError, UserError) as exc:
        sys.exit(f"error: {exc}")
