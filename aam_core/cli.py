"""``aam``: the command-line tool. Each command is a thin adapter over ``aam_core.train`` and
``aam_core.predict``; user errors print one ``error: ...`` line and exit with status 2
(``aam --debug ...`` prints the traceback too)."""

from __future__ import annotations

import functools
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, ParamSpec, TypeVar

import typer

from aam_core import cli_support as support

if TYPE_CHECKING:
    from aam_core.train.config import RunConfig
    from aam_core.train.stages import RunResult

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="aam",
    help="Attention All Microbes: pretrain, train and use AAM models on 16S tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options that map one-to-one onto RunConfig fields (same names); see _run_config.
RUN_FIELDS = (
    *("preset", "epochs", "batch_size", "lr", "rarefaction_depth", "token_limit", "max_bp"),
    *("truncate", "validation_fraction", "patience", "seed", "precision", "group_column"),
    "baseline",
)

Opt = typer.Option
Table = Annotated[Path, Opt("--table", help="Feature table: BIOM (HDF5 or JSON) or .qza.")]
Tree = Annotated[Path | None, Opt("--tree", help="Rooted Newick tree or .qza phylogeny.")]
Metadata = Annotated[Path, Opt("--metadata", help="QIIME-style sample metadata TSV.")]
Sequences = Annotated[
    Path | None, Opt("--sequences", help="Representative sequences (FASTA or .qza).")
]
Model = Annotated[Path, Opt("--model", help="A checkpoint written by aam train.")]
Task = Annotated[Literal["regression", "classification"], Opt("--task")]
ConfigFile = Annotated[
    Path | None, Opt("--config", help="TOML, YAML or JSON file of run settings.")
]
Preset = Annotated[Literal["default", "tiny"] | None, Opt("--preset")]
Epochs = Annotated[int | None, Opt("--epochs")]
BatchSize = Annotated[int | None, Opt("--batch-size", help="Per GPU.")]
Lr = Annotated[float | None, Opt("--lr")]
Depth = Annotated[int | None, Opt("--rarefaction-depth")]
TokenLimit = Annotated[int | None, Opt("--token-limit", help="ASVs read per sample.")]
MaxBp = Annotated[int | None, Opt("--max-bp")]
Truncate = Annotated[bool | None, Opt("--truncate/--no-truncate", help="Cut long sequences.")]
ValFraction = Annotated[float | None, Opt("--validation-fraction")]
Patience = Annotated[int | None, Opt("--patience", help="Epochs without improvement; 0 = off.")]
Seed = Annotated[int | None, Opt("--seed")]
Precision = Annotated[Literal["auto", "fp32", "bf16"] | None, Opt("--precision")]
Device = Annotated[str, Opt("--device", help="auto, cpu, cuda or cuda:N.")]
Resume = Annotated[bool, Opt("--resume", help="Continue from OUT/checkpoints/last.pt.")]
Events = Annotated[Path | None, Opt("--events", help="Append every event as a JSON line.")]
StopPath = Annotated[Path | None, Opt("--stop-file", help="Stop cleanly once this file exists.")]
Quiet = Annotated[bool, Opt("--quiet", help="No progress bar or log lines.")]
GroupColumn = Annotated[str | None, Opt("--group-column", help="Keep groups in one split.")]


def guarded(func: Callable[P, R]) -> Callable[P, R]:
    """Input, config, checkpoint and option errors become one ``error:`` line and exit 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (ValueError, OSError) as exc:
            ctx: Any = kwargs.get("ctx")  # every command takes its typer.Context as ``ctx``
            if ctx is not None and (ctx.find_root().obj or {}).get("debug"):
                traceback.print_exc(file=sys.stderr)
            typer.echo(f"error: {support.one_line(exc)}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[bool, Opt("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    ctx.obj = {"debug": debug}


def _run_config(ctx: typer.Context, config_file: Path | None) -> RunConfig:
    """Defaults < config file < the RUN_FIELDS options given to the command."""
    flags = {k: ctx.params[k] for k in RUN_FIELDS if k in ctx.params}
    never_stop = flags.get("patience") == 0  # --patience 0: no early stopping
    config = support.build_config(config_file, {**flags, "patience": None} if never_stop else flags)
    return config.replace(patience=None) if never_stop else config


def _execute(ctx: typer.Context, run: Callable[..., RunResult]) -> None:
    """Run a stage with the current command's --out, --resume, --events, --stop-file and
    --quiet, then print its summary. ``run`` takes ``callbacks`` and ``resume``."""
    params = ctx.params
    last, resume = Path(params["out"]) / "checkpoints" / "last.pt", bool(params["resume"])
    if resume and not last.exists():
        raise FileNotFoundError(f"--resume: {last} does not exist: there is no run to continue")
    with support.run_callbacks(params["quiet"], params["events"], params["stop_file"]) as cb:
        result = run(callbacks=cb, resume=resume)
    typer.echo(support.run_summary(result))


@app.command()
@guarded
def pretrain(
    ctx: typer.Context,
    table: Table,
    out: Annotated[Path, Opt("--out", help="Run directory.")],
    tree: Tree = None,
    sequences: Sequences = None,
    distance_matrix: Annotated[Path | None, Opt("--distance-matrix")] = None,
    config: ConfigFile = None,
    preset: Preset = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    rarefaction_depth: Depth = None,
    token_limit: TokenLimit = None,
    max_bp: MaxBp = None,
    truncate: Truncate = None,
    validation_fraction: ValFraction = None,
    patience: Patience = None,
    seed: Seed = None,
    precision: Precision = None,
    device: Device = "auto",
    resume: Resume = False,
    events: Events = None,
    stop_file: StopPath = None,
    quiet: Quiet = False,
) -> None:
    """Pretrain an encoder (UniFrac distances + masked nucleotides); no labels needed."""
    from aam_core.train.stages import run_pretrain

    run_config = _run_config(ctx, config)
    files = {"tree": tree, "sequences": sequences, "distance_matrix": distance_matrix}
    inputs = support.load_files(table, **files)
    hashes = support.dataset_hashes(table=table, **files)
    _execute(
        ctx,
        functools.partial(
            run_pretrain, inputs, run_config, out, device=device, dataset_sha256=hashes
        ),
    )


@app.command()
@guarded
def train(
    ctx: typer.Context,
    table: Table,
    metadata: Metadata,
    target: Annotated[str, Opt("--target", help="Metadata column to predict.")],
    task: Task,
    out: Annotated[Path, Opt("--out", help="Run directory.")],
    tree: Tree = None,
    sequences: Sequences = None,
    pretrained_encoder: Annotated[Path | None, Opt("--pretrained-encoder")] = None,
    freeze_base: Annotated[bool, Opt("--freeze-base", help="Keep the encoder fixed.")] = False,
    group_column: GroupColumn = None,
    baseline: Annotated[
        bool | None, Opt("--baseline/--no-baseline", help="Random forest beside the model.")
    ] = None,
    config: ConfigFile = None,
    preset: Preset = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    rarefaction_depth: Depth = None,
    token_limit: TokenLimit = None,
    max_bp: MaxBp = None,
    truncate: Truncate = None,
    validation_fraction: ValFraction = None,
    patience: Patience = None,
    seed: Seed = None,
    precision: Precision = None,
    device: Device = "auto",
    resume: Resume = False,
    events: Events = None,
    stop_file: StopPath = None,
    quiet: Quiet = False,
) -> None:
    """Train a regressor or classifier on a metadata column, from scratch or from an encoder."""
    from aam_core.train.prepare import TargetSpec
    from aam_core.train.stages import run_train

    run_config = _run_config(ctx, config)
    files = {"tree": tree, "metadata": metadata, "sequences": sequences}
    inputs = support.load_files(table, **files)
    hashes = support.dataset_hashes(table=table, **files)
    spec = TargetSpec(target, task)
    run = functools.partial(
        run_train,
        inputs,
        spec,
        run_config,
        out,
        base_checkpoint=pretrained_encoder,
        freeze_base=freeze_base,
        device=device,
        dataset_sha256=hashes,
    )
    _execute(ctx, run)


@app.command()
@guarded
def predict(
    ctx: typer.Context,
    model: Model,
    table: Table,
    out: Annotated[Path, Opt("--out", help="Predictions file.")],
    sequences: Sequences = None,
    passes: Annotated[int, Opt("--passes", help="Rarefaction passes (mean and std).")] = 1,
    embeddings: Annotated[bool, Opt("--embeddings", help="Add sample embeddings.")] = False,
    seed: Annotated[int, Opt("--seed")] = 0,
    device: Device = "auto",
    fmt: Annotated[
        Literal["tsv", "json"] | None, Opt("--format", help="Default: by the file's extension.")
    ] = None,
) -> None:
    """Predict every sample of a table: one row per sample, in the target's units."""
    predictor = support.load_predictor(model, device)
    inputs = support.load_files(table, sequences=sequences)
    result = predictor.predict(
        inputs.table, inputs.sequences, passes=passes, seed=seed, embeddings=embeddings
    )
    support.write_predictions(result, out, support.output_format(out, fmt))
    typer.echo(support.prediction_note(result, out), err=True)


@app.command()
@guarded
def evaluate(
    ctx: typer.Context,
    model: Model,
    table: Table,
    metadata: Metadata,
    sequences: Sequences = None,
    column: Annotated[str | None, Opt("--column", help="Default: the model's target.")] = None,
    passes: Annotated[int, Opt("--passes")] = 1,
    seed: Annotated[int, Opt("--seed")] = 0,
    device: Device = "auto",
    out: Annotated[Path | None, Opt("--out", help="Also write the JSON here.")] = None,
) -> None:
    """Metrics of a trained model on a labelled table, as JSON."""
    from aam_core.predict import evaluate as evaluate_model

    predictor = support.load_predictor(model, device)
    inputs = support.load_files(table, metadata=metadata, sequences=sequences)
    metrics = evaluate_model(
        predictor,
        inputs.table,
        inputs.sequences,
        inputs.metadata,
        column=column,
        passes=passes,
        seed=seed,
    )
    typer.echo(support.json_output(metrics, out))


@app.command()
@guarded
def baseline(
    ctx: typer.Context,
    table: Table,
    metadata: Metadata,
    target: Annotated[str, Opt("--target", help="Metadata column to predict.")],
    task: Task,
    sequences: Sequences = None,
    split: Annotated[Path | None, Opt("--split", help="split.tsv of a training run.")] = None,
    group_column: GroupColumn = None,
    config: ConfigFile = None,
    rarefaction_depth: Depth = None,
    validation_fraction: ValFraction = None,
    seed: Seed = None,
    max_bp: MaxBp = None,
    truncate: Truncate = None,
    out: Annotated[Path | None, Opt("--out", help="Also write the JSON here.")] = None,
) -> None:
    """A random forest alone on the same preprocessing and split, as JSON."""
    from aam_core.train.prepare import TargetSpec
    from aam_core.train.stages import run_baseline

    run_config = _run_config(ctx, config)
    inputs = support.load_files(table, metadata=metadata, sequences=sequences)
    spec = TargetSpec(target, task)
    result = run_baseline(inputs, spec, run_config, split_file=split)
    typer.echo(support.json_output(result, out))


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
    info = support.checkpoint_summary(loaded, parameter_counts(build_model(loaded)))
    text = support.dumps(info, indent=2) if as_json else support.format_checkpoint_summary(info)
    typer.echo(text)


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
    with support.ConsoleProgress(quiet=quiet) as progress:
        result = support.run_demo(
            out, samples=samples, seed=seed, device=device, callbacks=progress, log=progress.write
        )
    typer.echo(support.demo_report(result))


def main() -> None:
    # torch's notice about its sparse CSR tensors (UniFrac) is noise to a user of the tool
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    app()


if __name__ == "__main__":
    main()
