"""Helpers of the ``aam`` command-line tool: config files, the run callbacks (progress bar,
events file, stop file), output writers and text summaries. Everything here is
presentation; the work itself happens in ``aam_core.train`` and ``aam_core.predict``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import yaml
from tqdm import tqdm  # type: ignore[import-untyped]

from aam_core.train.callbacks import Callback, CallbackList, EpochEvent, StepEvent

if TYPE_CHECKING:  # the heavy modules load when a command runs, so that --help is quick
    from aam_core.checkpoint import Checkpoint
    from aam_core.io import Inputs
    from aam_core.predict import PredictionResult, Predictor
    from aam_core.train.config import RunConfig
    from aam_core.train.stages import RunResult

CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """Strict JSON (NaN and infinities become null)."""
    from aam_core.train.artifacts import to_jsonable

    return json.dumps(to_jsonable(obj), allow_nan=False, indent=indent)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# -- configuration -------------------------------------------------------------------------


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Keys and values of a TOML, YAML or JSON file (chosen by extension)."""
    from aam_core.model.config import ConfigError

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise ConfigError(
            f"{path}: unknown config file type {suffix or '(none)'!r}; "
            "use .toml, .yaml, .yml or .json"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the config file ({exc.strerror})") from None
    try:
        if suffix == ".toml":
            values: Any = tomllib.loads(text)
        elif suffix == ".json":
            values = json.loads(text)
        else:
            values = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        reason = one_line(exc)[:160]
        raise ConfigError(f"{path}: not a valid {suffix[1:].upper()} file ({reason})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"{path}: a config file must hold a mapping of settings, got {type(values).__name__}"
        )
    return values


def build_config(
    config_file: str | Path | None, flags: Mapping[str, Any], **defaults: Any
) -> RunConfig:
    """``defaults`` < the config file < flags that were given (not None). The file must be a
    valid configuration on its own; its errors name it."""
    from aam_core.model.config import ConfigError
    from aam_core.train.config import RunConfig

    values: dict[str, Any] = dict(defaults)
    if config_file is not None:
        from_file = read_config_file(config_file)
        try:
            RunConfig.from_mapping(from_file)
        except ConfigError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
        values.update(from_file)
    values.update({k: v for k, v in flags.items() if v is not None})
    return RunConfig.from_mapping(values)


def dataset_hashes(**paths: str | Path | None) -> dict[str, str]:
    from aam_core.io import sha256_file

    return {role: sha256_file(p) for role, p in paths.items() if p is not None}


def load_files(
    table: Path,
    *,
    tree: Path | None = None,
    metadata: Path | None = None,
    sequences: Path | None = None,
    distance_matrix: Path | None = None,
) -> Inputs:
    """Read and cross-check the given files; messages name them as the user typed them."""
    from aam_core.io import load_inputs

    given = {
        "table": table,
        "tree": tree,
        "metadata": metadata,
        "sequences": sequences,
        "distance_matrix": distance_matrix,
    }
    names = {role: str(p) for role, p in given.items() if p is not None}
    return load_inputs(
        table,
        tree=tree,
        metadata=metadata,
        sequences=sequences,
        distance_matrix=distance_matrix,
        names=names,
    )


# -- callbacks -----------------------------------------------------------------------------


class ConsoleProgress(Callback):
    """A tqdm bar of optimiser steps and the run's log lines, on stderr."""

    def __init__(self, *, quiet: bool = False, stream: IO[str] | None = None) -> None:
        self.quiet = quiet
        self.stream = stream
        self.bar: Any = None

    def _out(self) -> IO[str]:
        return self.stream or sys.stderr

    def on_step(self, event: StepEvent) -> None:
        if self.quiet:
            return
        if self.bar is None or self.bar.total != event.steps or event.step <= self.bar.n:
            self.close()  # a new run (the demo runs two) or a resumed one
            self.bar = tqdm(
                total=event.steps,
                initial=event.step - 1,
                unit="step",
                file=self._out(),
                dynamic_ncols=True,
                leave=False,
            )
        self.bar.update(event.step - self.bar.n)
        self.bar.set_postfix(epoch=f"{event.epoch}/{event.epochs}", loss=f"{event.loss:.4g}")

    def on_epoch(self, event: EpochEvent) -> None:
        train_loss = event.train.get("loss")
        parts = [f"epoch {event.epoch}/{event.epochs}"]
        if train_loss is not None:
            parts.append(f"train loss {train_loss:.4g}")
        if event.value is not None:
            split = "validation" if event.validation else "train"
            parts.append(f"{split} {event.monitor} {event.value:.4g}")
        if event.best_value is not None:
            parts.append(f"best {event.best_value:.4g} (epoch {event.best_epoch})")
        self.write(", ".join(parts))

    def on_log(self, message: str) -> None:
        self.write(message)

    def write(self, message: str) -> None:
        if not self.quiet:
            tqdm.write(message, file=self._out())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventsFile(Callback):
    """Appends one JSON object per event (``{"type": "step" | "epoch" | "log", ...}``) and
    flushes it at once, so that another process can follow the run."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _write(self, record: dict[str, Any]) -> None:
        if self.handle is None:
            return
        self.handle.write(dumps({**record, "time": time.time()}) + "\n")
        self.handle.flush()

    def on_step(self, event: StepEvent) -> None:
        self._write({"type": "step", **dataclasses.asdict(event), "fraction": event.fraction})

    def on_epoch(self, event: EpochEvent) -> None:
        self._write({"type": "epoch", **dataclasses.asdict(event)})

    def on_log(self, message: str) -> None:
        self._write({"type": "log", "message": message})

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class StopFile(Callback):
    """Requests a clean stop (checkpoint first) once ``path`` exists."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def should_stop(self) -> bool:
        return self.path.exists()


@contextlib.contextmanager
def run_callbacks(
    quiet: bool, events: Path | None, stop_file: Path | None
) -> Iterator[CallbackList]:
    """The command-line tool's callbacks for one run, closed afterwards."""
    sink = EventsFile(events) if events is not None else None
    stop = [StopFile(stop_file)] if stop_file is not None else []
    try:
        with ConsoleProgress(quiet=quiet) as progress:
            yield CallbackList([progress, *([sink] if sink else []), *stop])
    finally:
        if sink is not None:
            sink.close()


# -- outputs -------------------------------------------------------------------------------


def _brief(metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return "none"
    shown = [
        f"{k} {v:.4g}"
        for k, v in metrics.items()
        if isinstance(v, int | float) and not k.startswith("loss_")
    ]
    return ", ".join(shown) or "none"


def run_summary(result: RunResult) -> str:
    fit = result.fit
    lines = [
        f"{result.report.get('stage', result.kind)} {fit.stopped}: {fit.epochs_run} epochs, "
        f"{fit.steps} optimiser steps; best epoch {fit.best_epoch} "
        f"({fit.monitor} {_number(fit.best_value)})"
    ]
    if fit.stopped == "requested":
        lines.append("stopped on request: run the same command with --resume to continue")
    if result.validation:
        lines.append(f"validation ({result.kind}): {_brief(result.validation)}")
    if result.baseline is not None:
        lines.append(f"baseline (random forest): {_brief(result.baseline.get('metrics'))}")
    best = result.best_checkpoint if result.best_checkpoint else None
    lines.append(f"checkpoints: best {best or '(none yet)'}, last {result.last_checkpoint}")
    lines.append(f"outputs: {result.out_dir}")
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def load_predictor(path: Path, device: str) -> Predictor:
    from aam_core.checkpoint import load_checkpoint
    from aam_core.predict import Predictor
    from aam_core.train.distributed import resolve_device

    return Predictor(load_checkpoint(path, name=str(path)), device=resolve_device(device))


def prediction_note(result: PredictionResult, out: Path) -> str:
    warned = [s for s in result.samples if s.warnings]
    n_warnings = sum(len(s.warnings) for s in warned)
    return (
        f"predicted {len(result.samples)} samples with a {result.kind} -> {out} "
        f"({n_warnings} warnings on {len(warned)} samples)"
    )


def json_output(obj: Any, out: Path | None) -> str:
    """The JSON text a command prints, also written to ``out`` when given."""
    text = dumps(obj, indent=2)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    return text


def output_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        return fmt
    return "json" if path.suffix.lower() == ".json" else "tsv"


def write_predictions(result: PredictionResult, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        samples = [dataclasses.asdict(s) for s in result.samples]
        payload = {"kind": result.kind, "target": result.target, "samples": samples}
        path.write_text(dumps(payload, indent=2) + "\n", encoding="utf-8")
    else:
        result.to_frame().to_csv(path, sep="\t", index=False)


def checkpoint_summary(checkpoint: Checkpoint, parameters: Mapping[str, int]) -> dict[str, Any]:
    training = checkpoint.training
    return {
        "kind": checkpoint.kind,
        "target": checkpoint.target,
        "freeze_base": checkpoint.freeze_base,
        "architecture": {
            "embedding_dim": checkpoint.config.dim,
            "sample_layers": checkpoint.config.sample.layers,
            "nucleotide_layers": checkpoint.config.nucleotide.layers,
            "heads": checkpoint.config.sample.heads,
        },
        "preprocessing": checkpoint.preprocessing,
        "training": {
            k: training.get(k) for k in ("stage", "n_train", "n_validation", "dataset_sha256")
        },
        "metrics": checkpoint.metrics,
        "parameters": dict(parameters),
        "library_version": checkpoint.library_version,
        "format_version": checkpoint.format_version,
    }


def format_checkpoint_summary(info: Mapping[str, Any]) -> str:
    lines = [f"kind: {info['kind']}"]
    target = info.get("target")
    if target:
        lines.append(f"target: {target.get('column')} ({target.get('task')})")
        if target.get("classes"):
            lines.append(f"classes: {', '.join(map(str, target['classes']))}")
    arch = info["architecture"]
    lines.append(
        f"architecture: dim {arch['embedding_dim']}, {arch['sample_layers']} sample layers, "
        f"{arch['nucleotide_layers']} nucleotide layers, {arch['heads']} heads"
        + (", encoder frozen" if info.get("freeze_base") else "")
    )
    pre = info["preprocessing"]
    lines.append("preprocessing: " + ", ".join(f"{k} {v}" for k, v in pre.items()))
    training = info["training"]
    lines.append(
        f"training: stage {training.get('stage')}, {training.get('n_train')} train / "
        f"{training.get('n_validation')} validation samples"
    )
    best = info["metrics"].get("best") or {}
    if best:
        lines.append(f"best epoch {best.get('epoch')} (monitor {best.get('monitor')})")
        for split in ("validation", "train"):
            if best.get(split):
                lines.append(f"  {split}: {_brief(best[split])}")
    params = info["parameters"]
    lines.append(f"parameters: {params['total']:,} total, {params['trainable']:,} trainable")
    width = max(len(k) for k in params)
    lines.extend(
        f"  {k:<{width}}  {v:>12,}" for k, v in params.items() if k not in ("total", "trainable")
    )
    lines.append(
        f"written by aam {info['library_version']}, checkpoint format {info['format_version']}"
    )
    return "\n".join(lines)


def mean_predictor_mae(split_tsv: Path, values: Mapping[str, float]) -> float:
    """MAE on the validation split of predicting the train split's mean (the floor to beat)."""
    import numpy as np

    from aam_core.train.artifacts import read_split_tsv

    split = read_split_tsv(split_tsv)
    train = np.array([values[s] for s in split["train"]], dtype=np.float64)
    validation = np.array([values[s] for s in split["validation"]], dtype=np.float64)
    return float(np.abs(validation - train.mean()).mean())


# -- the demo ------------------------------------------------------------------------------

# Sized so that the whole demo takes well under a minute on two slow CPU cores while the
# regressor clearly beats predicting the train mean (seeds 0-3: 0.50-0.69 of its MAE; the tiny
# model can sit at the mean for many steps first, hence batches of 8 and 20 epochs).
DEMO_ASVS = 150
DEMO_ASVS_PER_SAMPLE = 25
DEMO_RUN = {
    "preset": "tiny",
    "lr": 3e-3,
    "batch_size": 8,
    "rarefaction_depth": 2000,
    "token_limit": 64,
    "patience": None,
}
DEMO_PRETRAIN_EPOCHS = 3
DEMO_TRAIN_EPOCHS = 20


@dataclasses.dataclass(frozen=True)
class DemoResult:
    data: dict[str, Path]
    pretrain: RunResult
    train: RunResult
    predictions: Path
    mean_mae: float  # validation MAE of predicting the train split's mean age


def run_demo(
    out: Path,
    *,
    samples: int,
    seed: int,
    device: str | None,
    callbacks: Callback | None,
    log: Callable[[str], None],
) -> DemoResult:
    """Synthetic study -> pretrained encoder -> age regressor trained on from it (not frozen)
    -> predictions for every sample."""
    from aam_core.data.synthetic import SyntheticSpec, generate, write_study
    from aam_core.predict import Predictor
    from aam_core.train.config import RunConfig
    from aam_core.train.distributed import resolve_device
    from aam_core.train.prepare import TargetSpec
    from aam_core.train.stages import run_pretrain, run_train

    spec = SyntheticSpec(
        n_samples=samples, n_asvs=DEMO_ASVS, asvs_per_sample=DEMO_ASVS_PER_SAMPLE, seed=seed
    )
    study = generate(spec)
    paths = write_study(study, out / "data")
    log(f"wrote a synthetic study of {samples} samples and {DEMO_ASVS} ASVs to {out / 'data'}")
    inputs = load_files(paths["table"], tree=paths["tree"], metadata=paths["metadata"])
    hashes = dataset_hashes(**paths)
    config = RunConfig.from_mapping({**DEMO_RUN, "seed": seed, "epochs": DEMO_PRETRAIN_EPOCHS})
    pretrain = run_pretrain(
        inputs, config, out / "pretrain", callbacks=callbacks, device=device, dataset_sha256=hashes
    )
    encoder = pretrain.best_checkpoint or pretrain.last_checkpoint
    train = run_train(
        inputs,
        TargetSpec("age", "regression"),
        config.replace(epochs=DEMO_TRAIN_EPOCHS),
        out / "train",
        base_checkpoint=encoder,
        freeze_base=False,
        callbacks=callbacks,
        device=device,
        dataset_sha256=hashes,
    )
    model = train.best_checkpoint or train.last_checkpoint
    predictor = Predictor.from_path(model, device=resolve_device(device))
    predictions = out / "predictions.tsv"
    write_predictions(predictor.predict(inputs.table, inputs.sequences), predictions, "tsv")
    ages = {str(k): float(v) for k, v in study.metadata["age"].items()}
    return DemoResult(
        paths, pretrain, train, predictions, mean_predictor_mae(out / "train" / "split.tsv", ages)
    )


def demo_report(result: DemoResult) -> str:
    model = result.train.validation
    forest = (result.train.baseline or {}).get("metrics") or {}
    n_validation = result.train.report.get("n_validation")
    lines = [
        f"age regression, {n_validation} validation samples (ages in years):",
        f"  AAM (pretrained encoder, then trained on)  MAE {model['mae']:6.2f}  "
        f"R² {model['r2']:5.2f}",
    ]
    if forest:
        lines.append(
            f"  random forest baseline                    MAE {forest['mae']:6.2f}  "
            f"R² {forest['r2']:5.2f}"
        )
    lines += [
        f"  predicting the train mean                 MAE {result.mean_mae:6.2f}",
        f"data:        {result.data['table'].parent}",
        f"encoder:     {result.pretrain.best_checkpoint or result.pretrain.last_checkpoint}",
        f"regressor:   {result.train.best_checkpoint or result.train.last_checkpoint}",
        f"predictions: {result.predictions}",
        f"run outputs: {result.train.out_dir} (report.json, split.tsv, plots/)",
    ]
    return "\n".join(lines)
