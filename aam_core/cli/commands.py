"""``aam``: the command-line tool. Each command is a thin adapter over ``aam_core.train`` and
``aam_core.predict``. A user error (:class:`~aam_core.errors.UserError`) prints one
``error: ...`` line and exits with status 2, a file the system cannot read or write exits with
status 1 (``aam --debug ...`` prints the traceback too)."""

from __future__ import annotations

import atexit
import functools
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, ParamSpec, TypeVar

import typer

from aam_core.cli import output
from aam_core.cli.options import RUN_SETTINGS, error_line, run_options
from aam_core.cli.params import (
    Checkpoint,
    ConfigFile,
    CvModel,
    CvOut,
    Device,
    Events,
    Folds,
    Group,
    Metadata,
    MinReads,
    Models,
    Opt,
    Out,
    PredictPrecision,
    PretrainFolds,
    Quiet,
    Refit,
    Repeats,
    Resume,
    Sequences,
    StopPath,
    Table,
    TargetColumn,
    Task,
    Tree,
)
from aam_core.errors import ConfigError, UserError
from aam_core.io.files import atomic_write, json_text
from aam_core.plan import TargetSpec
from aam_core.plan.crossval import CV_MODELS, FIXED_KEYS, MIN_READS

if TYPE_CHECKING:  # torch loads when a command runs, so that --help is quick
    from aam_core.crossval.run import Request
    from aam_core.io import Inputs
    from aam_core.plan.crossval import CrossValidation
    from aam_core.train.distributed import DistContext

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="aam",
    help="Attention All Microbes: pretrain, train and use AAM models on 16S tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: rich's tables cut long option names at 80 columns (--pretrained-en…)
    rich_markup_mode=None,
)

Settings = Mapping[str, Any]


def guarded(func: Callable[P, R]) -> Callable[P, R]:
    """User errors become one ``error:`` line and exit 2; system I/O errors exit 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (UserError, OSError) as exc:
            ctx: Any = kwargs.get("ctx")  # every command takes its typer.Context as ``ctx``
            if ctx is not None and (ctx.find_root().obj or {}).get("debug"):
                traceback.print_exc(file=sys.stderr)
            text = error_line(exc) if isinstance(exc, UserError) else output.one_line(exc)
            typer.echo(f"error: {text}", err=True)
            raise typer.Exit(2 if isinstance(exc, UserError) else 1) from None

    return wrapper


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[bool, Opt("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    ctx.obj = {"debug": debug}


def _join(device: str) -> DistContext:
    """Under torchrun (docs/multinode.md), join the process group before any input is read:
    an error that ends one process (an input file missing on its host) then breaks the
    others' next exchange at once, instead of leaving them waiting (30 minutes) for it to
    join. The group is left at exit: one still open then can abort the process."""
    from aam_core.train.distributed import init_distributed, shutdown

    dist_ctx = init_distributed(device)
    atexit.register(shutdown, dist_ctx)
    return dist_ctx


def _execute(ctx: typer.Context, run: Callable[..., Any], dist_ctx: DistContext) -> None:
    """Run a stage with the current command's --out, --resume, --events, --stop-file and
    --quiet, then print its summary. ``run`` takes ``callbacks``, ``resume`` and ``ctx``."""
    from aam_core.cli.console import run_callbacks
    from aam_core.train.distributed import any_rank

    params = ctx.params
    last, resume = Path(params["out"]) / "checkpoints" / "last.pt", bool(params["resume"])
    # Global rank 0 alone reads last.pt, sending it to the other ranks, and alone reports
    # events: another host's --out need not hold the file. All ranks learn that it is
    # missing, so that all stop, not rank 0 alone.
    if any_rank(resume and dist_ctx.is_main and not last.exists(), dist_ctx):
        raise UserError(f"--resume: {last} does not exist: there is no run to continue")
    events = params["events"] if dist_ctx.is_main else None
    with run_callbacks(params["quiet"], events, params["stop_file"]) as callbacks:
        result = run(callbacks=callbacks, resume=resume, ctx=dist_ctx)
    typer.echo(output.run_summary(result))


@app.command(epilog=RUN_SETTINGS)
@guarded
@run_options("pretrain")
def pretrain(
    ctx: typer.Context,
    table: Table,
    out: Out,
    tree: Tree = None,
    sequences: Sequences = None,
    metadata: Annotated[
        Path | None,
        Opt("--metadata", help="Sample metadata TSV, for --group-column (optional)."),
    ] = None,
    distance_matrix: Annotated[Path | None, Opt("--distance-matrix")] = None,
    pretrained_encoder: Annotated[
        Path | None,
        Opt("--pretrained-encoder", help="Continue pretraining this encoder on this table."),
    ] = None,
    config: ConfigFile = None,
    device: Device = "auto",
    resume: Resume = False,
    events: Events = None,
    stop_file: StopPath = None,
    quiet: Quiet = False,
    *,
    settings: Settings,
) -> None:
    """Pretrain an encoder (UniFrac distances + masked nucleotides); no labels needed."""
    from aam_core.io import file_hashes, load_files
    from aam_core.plan.files import given_settings
    from aam_core.train.local_plan import plan_local
    from aam_core.train.run import run_pretrain

    dist_ctx = _join(device)
    values = given_settings(config, settings)  # before any input file is read
    files = {
        "table": table,
        "tree": tree,
        "sequences": sequences,
        "metadata": metadata,
        "distance_matrix": distance_matrix,
    }
    inputs = load_files(files)
    run = plan_local("pretrain", values, inputs, base_checkpoint=pretrained_encoder, device=device)
    hashes = file_hashes(files)
    stage = functools.partial(run_pretrain, device=device, dataset_sha256=hashes)
    _execute(ctx, functools.partial(stage, inputs, run, out), dist_ctx)


@app.command(epilog=RUN_SETTINGS)
@guarded
@run_options("train")
def train(
    ctx: typer.Context,
    table: Table,
    metadata: Metadata,
    target: TargetColumn,
    task: Task,
    out: Out,
    tree: Tree = None,
    sequences: Sequences = None,
    pretrained_encoder: Annotated[
        Path | None, Opt("--pretrained-encoder", help="Encoder checkpoint of aam pretrain.")
    ] = None,
    freeze_base: Annotated[bool, Opt("--freeze-base", help="Keep the encoder fixed.")] = False,
    model: Annotated[
        Literal["aam", "ensemble", "auto"] | None,
        Opt(
            "--model",
            help="aam (default); ensemble: AAM blended with a random forest on the validation "
            "split; auto: the best of AAM, the forest and the blend there.",
        ),
    ] = None,
    config: ConfigFile = None,
    device: Device = "auto",
    resume: Resume = False,
    events: Events = None,
    stop_file: StopPath = None,
    quiet: Quiet = False,
    *,
    settings: Settings,
) -> None:
    """Train a regressor or classifier on a metadata column, from scratch or from an encoder."""
    from aam_core.io import file_hashes, load_files
    from aam_core.plan.files import given_settings
    from aam_core.train.local_plan import plan_local
    from aam_core.train.run import run_train

    dist_ctx = _join(device)
    values = given_settings(config, settings)
    files = {"table": table, "tree": tree, "metadata": metadata, "sequences": sequences}
    inputs = load_files(files)
    run = plan_local(
        "train",
        values,
        inputs,
        target=TargetSpec(target, task),
        base_checkpoint=pretrained_encoder,
        base_field="base_model_id",
        freeze_base=freeze_base,
        model_kind=model,
        device=device,
    )
    hashes = file_hashes(files)
    stage = functools.partial(run_train, device=device, dataset_sha256=hashes)
    _execute(ctx, functools.partial(stage, inputs, run, out), dist_ctx)


def parse_models(text: str) -> tuple[str, ...]:
    """``"aam, forest"`` -> ``("aam", "forest")`` (CrossValidation checks the names)."""
    return tuple(filter(None, (part.strip() for part in text.split(","))))


# The recipe's settings that are no flags of aam cross-validate: the cross-validation sets the
# split (FIXED_KEYS), and --refit is its own (the recipe's refit setting is a --config key).
CV_NOT_FLAGS = ("refit", *FIXED_KEYS)
ALL_MODELS = ",".join(CV_MODELS)


@app.command("cross-validate", epilog=RUN_SETTINGS)
@guarded
@run_options("train", exclude=CV_NOT_FLAGS)
def cross_validate(
    ctx: typer.Context,
    table: Table,
    metadata: Metadata,
    target: TargetColumn,
    task: Task,
    out: CvOut,
    tree: Tree = None,
    sequences: Sequences = None,
    group: Group = None,
    folds: Folds = 5,
    repeats: Repeats = 1,
    models: Models = ALL_MODELS,
    pretrain: PretrainFolds = False,
    min_reads: MinReads = MIN_READS,
    model: CvModel = None,
    refit: Refit = False,
    config: ConfigFile = None,
    device: Device = "auto",
    events: Events = None,
    stop_file: StopPath = None,
    quiet: Quiet = False,
    *,
    settings: Settings,
) -> None:
    """Cross-validate AAM beside a random forest, a linear model, a constant and sequencing
    depth alone, on grouped folds: out-of-fold predictions, figures per fold, AAM's paired
    differences and plots."""
    from aam_core.cli.console import FoldLines, run_callbacks
    from aam_core.crossval.run import run_request
    from aam_core.io import file_hashes, load_files
    from aam_core.plan.crossval import CrossValidation

    # Every check comes before any work: the settings and the request's counts before any
    # input file is read, then the request against the dataset's summary and its samples.
    cv = CrossValidation(
        folds=folds,
        repeats=repeats,
        group_column=group,
        models=parse_models(models),
        pretrain=pretrain,
        min_reads=min_reads,
    )
    files = {"table": table, "tree": tree, "metadata": metadata, "sequences": sequences}
    inputs = load_files(files)
    request = _cv_request(
        inputs,
        cv,
        TargetSpec(target, task),
        config,
        settings,
        model=model,
        refit=refit,
        device=device,
    )
    hashes = file_hashes(files)
    with run_callbacks(quiet, events, stop_file) as callbacks:
        outcome = run_request(
            inputs,
            request,
            out,
            callback=callbacks,
            progress=FoldLines(quiet=quiet),
            log=callbacks.on_log,
            dataset_sha256=hashes,
        )
    if outcome.stopped:
        typer.echo(
            f"stopped on request: run the same command again to continue (what is finished in "
            f"{out} is kept)"
        )
        return
    assert outcome.report is not None
    typer.echo(output.cv_summary(outcome.report, outcome.files, outcome.refit))


def _cv_request(
    inputs: Inputs,
    cv: CrossValidation,
    target: TargetSpec,
    config: Path | None,
    settings: Settings,
    *,
    model: Literal["aam", "ensemble"] | None,
    refit: bool,
    device: str,
) -> Request:
    """The request, checked against the dataset (a split setting the config file gave is
    named with the file)."""
    from aam_core.crossval.run import Request
    from aam_core.plan.crossval import plan_cross_validation
    from aam_core.plan.files import given_settings
    from aam_core.train.distributed import resolve_device
    from aam_core.train.local_plan import dataset_facts

    values = given_settings(config, settings)
    where = str(resolve_device(device))
    request = Request(target, cv, values, model_kind=model, refit=refit, device=where)
    try:
        plan_cross_validation(
            values, dataset_facts(inputs), cv, target=target, model_kind=model, device=where
        )
    except ConfigError as exc:
        if config is None or exc.field not in {f"config.{key}" for key in FIXED_KEYS}:
            raise
        # The split's settings are no flags of this command: the config file gave this one.
        key = exc.field.removeprefix("config.")
        raise ConfigError(f"{key} {exc.message}", field=exc.field, file=str(config)) from None
    return request


@app.command()
@guarded
def predict(
    ctx: typer.Context,
    model: Checkpoint,
    table: Table,
    out: Annotated[Path, Opt("--out", help="Predictions file.")],
    sequences: Sequences = None,
    passes: Annotated[int, Opt("--passes", help="Rarefaction passes (mean and std).")] = 1,
    embeddings: Annotated[bool, Opt("--embeddings", help="Add sample embeddings.")] = False,
    seed: Annotated[int, Opt("--seed")] = 0,
    device: Device = "auto",
    precision: PredictPrecision = "fp32",
    fmt: Annotated[
        Literal["tsv", "json"] | None, Opt("--format", help="Default: by the file's extension.")
    ] = None,
) -> None:
    """Predict every sample of a table: one row per sample, in the target's units."""
    from aam_core.io import load_files
    from aam_core.predict import write_predictions

    predictor = output.load_predictor(model, device, precision)
    inputs = load_files({"table": table, "sequences": sequences})
    result = predictor.predict(
        inputs.table, inputs.sequences, passes=passes, seed=seed, embeddings=embeddings
    )
    write_predictions(result, out, output.output_format(out, fmt))
    typer.echo(output.prediction_note(result, out), err=True)


@app.command()
@guarded
def evaluate(
    ctx: typer.Context,
    model: Checkpoint,
    table: Table,
    metadata: Metadata,
    sequences: Sequences = None,
    column: Annotated[str | None, Opt("--column", help="Default: the model's target.")] = None,
    passes: Annotated[int, Opt("--passes")] = 1,
    seed: Annotated[int, Opt("--seed")] = 0,
    device: Device = "auto",
    precision: PredictPrecision = "fp32",
    out: Annotated[Path | None, Opt("--out", help="Also write the JSON here.")] = None,
) -> None:
    """Metrics of a trained model on a labelled table, as JSON."""
    from aam_core.evaluate import evaluate as evaluate_model
    from aam_core.io import load_files

    predictor = output.load_predictor(model, device, precision)
    inputs = load_files({"table": table, "metadata": metadata, "sequences": sequences})
    metrics = evaluate_model(
        predictor,
        inputs.table,
        inputs.sequences,
        inputs.metadata,
        column=column,
        passes=passes,
        seed=seed,
    )
    typer.echo(output.json_output(metrics, out))


@app.command()
@guarded
@run_options("baseline")
def baseline(
    ctx: typer.Context,
    table: Table,
    metadata: Metadata,
    target: TargetColumn,
    task: Task,
    sequences: Sequences = None,
    split: Annotated[Path | None, Opt("--split", help="split.tsv of a training run.")] = None,
    config: ConfigFile = None,
    out: Annotated[Path | None, Opt("--out", help="Also write the JSON here.")] = None,
    *,
    settings: Settings,
) -> None:
    """A random forest alone on the same preprocessing and split, as JSON."""
    from aam_core.io import load_files
    from aam_core.plan.files import build_config
    from aam_core.train.baselines import run_baseline

    run_config = build_config(config, settings)
    inputs = load_files({"table": table, "metadata": metadata, "sequences": sequences})
    result = run_baseline(inputs, TargetSpec(target, task), run_config, split_file=split)
    typer.echo(output.json_output(result, out))


@app.command()
@guarded
def summary(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint file.")],
    as_json: Annotated[bool, Opt("--json", help="Machine-readable output.")] = False,
) -> None:
    """What a checkpoint holds: kind, target, preprocessing, training, metrics, parameters."""
    from aam_core.checkpoint import build_model, load_checkpoint
    from aam_core.model.summary import parameter_counts

    loaded = load_checkpoint(checkpoint, name=str(checkpoint))
    info = output.checkpoint_summary(loaded, parameter_counts(build_model(loaded)))
    text = json_text(info, indent=2) if as_json else output.format_checkpoint_summary(info)
    typer.echo(text)


@app.command()
@guarded
def card(
    ctx: typer.Context,
    model: Annotated[
        Path,
        Opt(
            "--checkpoint",
            "--model",
            help="A checkpoint written by aam pretrain or aam train (--model: old name).",
        ),
    ],
    fmt: Annotated[
        Literal["markdown", "json"] | None,
        Opt("--format", help="Default: json for an --out ending in .json, else markdown."),
    ] = None,
    out: Annotated[Path | None, Opt("--out", help="Write the card here, not to stdout.")] = None,
) -> None:
    """A checkpoint's model card: data digests, split and seed, settings, metrics beside the
    baselines, library versions, intended use and limits."""
    from aam_core.checkpoint import load_checkpoint
    from aam_core.io import sha256_file
    from aam_core.model_card import card_markdown, model_card

    built = model_card(
        load_checkpoint(model, name=str(model)), checkpoint_sha256=sha256_file(model)
    )
    if fmt is None:
        fmt = "json" if out is not None and out.suffix.lower() == ".json" else "markdown"
    text = json_text(built, indent=2) + "\n" if fmt == "json" else card_markdown(built)
    if out is None:
        typer.echo(text, nl=False)
        return
    with atomic_write(out) as handle:
        handle.write(text)
    typer.echo(f"model card ({fmt}) -> {out}", err=True)


@app.command()
@guarded
def demo(
    ctx: typer.Context,
    out: Annotated[Path, Opt("--out", help="Where the demo writes everything.")] = Path("aam-demo"),
    samples: Annotated[int, Opt("--samples", min=40, help="Synthetic samples.")] = 160,
    seed: Annotated[int, Opt("--seed")] = 0,
    device: Device = "auto",
    quiet: Quiet = False,
) -> None:
    """A synthetic study end to end: pretrain, train an age regressor, predict (under a minute)."""
    from aam_core.cli.console import ConsoleProgress
    from aam_core.demo import demo_report, run_demo

    with ConsoleProgress(quiet=quiet) as progress:
        result = run_demo(
            out, samples=samples, seed=seed, device=device, callbacks=progress, log=progress.write
        )
    typer.echo(demo_report(result))


def main() -> None:
    # torch's notice about its sparse CSR tensors (UniFrac) is noise to a user of the tool
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    app()
