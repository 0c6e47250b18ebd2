"""The run configuration: every setting of a pretraining, training or prediction run, flat.

This dataclass is the one schema of a run's settings. A REST job's ``config`` object
(``app.contracts.JobConfig`` is generated from these fields, with their bounds and defaults),
the command-line tool's flags (``aam_core.cli.options``) and config files (TOML, YAML, JSON)
all map onto it, so a key means the same everywhere and has the same bounds (``patience: 0``
is "never stop early" in all three).

Each field's metadata holds its ``help`` sentence, its ``bounds`` (``ge``, ``gt``, ``le``,
``lt``) and the ``runs`` it applies to (:data:`RUNS`); :meth:`RunConfig.__post_init__` checks
types and bounds from them, then the rules that tie fields together. Which settings a run takes
is read from ``runs`` alone (:func:`run_settings`): by the planner, which refuses the others, by
the command-line tool, which offers each command's as flags, and by the REST schema, which says
which jobs each applies to.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from typing import Any, Literal

from aam_core.errors import ConfigError
from aam_core.model.config import (
    AAMConfig,
    LossWeights,
    NucleotideEncoderConfig,
    SampleEncoderConfig,
    TargetConfig,
)

Precision = Literal["auto", "fp32", "bf16", "fp64"]
Stage = Literal["pretrain", "train"]
# The runs a setting can apply to: the two training stages, prediction with a trained model,
# and the forest baseline alone (``aam baseline``: a split, a rarefaction, the inputs).
Run = Literal["pretrain", "train", "predict", "baseline"]
RUNS: tuple[Run, ...] = ("pretrain", "train", "predict", "baseline")
TRAINING: tuple[Run, ...] = ("pretrain", "train")
MAXIMISED = frozenset(
    {"accuracy", "macro_f1", "roc_auc", "r2", "pearson_r", "unifrac_r2", "nucleotide_accuracy"}
)
BOUND_WORDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
# Peak learning rates by stage and preset. Tiny pretraining at 3e-3: on ECAM, held-out UniFrac
# R² 0.71 after 30 epochs against 0.68 at 1e-3 (whole families held out; bench/quality.py
# folds play no part in it). The default model's pretraining rate is not measured yet.
PRESET_LR = {
    "train": {"default": 1e-4, "tiny": 1e-3},
    "pretrain": {"default": 1e-4, "tiny": 3e-3},
}
MIN_AUTO_BATCH, MAX_AUTO_BATCH = 16, 64
DEFAULT_EPOCHS = 50
IDENTITY_DROPOUT = {"pretrain": 0.5, "train": 0.2}
PRETRAIN_MIN_STEPS = 2000


def auto_batch_size(n_train: int) -> int:
    """An eighth of ``n_train`` training samples (at least 8 steps an epoch), from 16 to 64."""
    return min(max(n_train // 8, MIN_AUTO_BATCH), MAX_AUTO_BATCH)


def setting(
    default: Any = None,
    help: str = "",
    *,
    runs: tuple[Run, ...] = TRAINING,
    why: str = "",
    **bounds: float,
) -> Any:
    """A field with its help sentence, the runs it applies to and its bounds (``ge``, ``gt``,
    ``le``, ``lt``); ``why`` is added to the message of a value out of bounds."""
    unknown = set(bounds) - set(BOUND_WORDS)
    assert not unknown, f"unknown bounds {unknown}"
    assert runs and set(runs) <= set(RUNS), f"unknown runs {runs}"
    metadata = {"help": help, "bounds": bounds, "why": why, "runs": runs}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    # model architecture (None = the preset's value)
    preset: Literal["auto", "default", "tiny"] = setting(
        "auto",
        "Model size: default (D=128; 4 sample and 2 nucleotide layers), tiny (D=32, one layer "
        "each: trains fast on a CPU), or auto: default on a GPU, tiny on a CPU.",
    )
    embedding_dim: int | None = setting(None, "Width D of both encoders.", ge=2, le=4096)
    layers: int | None = setting(None, "Sample-encoder layers.", ge=1, le=64)
    nucleotide_layers: int | None = setting(None, "Nucleotide-encoder layers.", ge=1, le=64)
    heads: int | None = setting(None, "Attention heads of both encoders.", ge=1, le=64)
    dropout: float | None = setting(None, "Dropout of both encoders.", ge=0, lt=1)
    loss_weights: Mapping[str, float] | None = setting(
        None, "Weights of unifrac, faith_pd, nucleotide, count, target (unset: the stage's)."
    )
    target_loss: Literal["mse", "huber"] = setting("mse", "Regression loss.", runs=("train",))
    class_weights: Literal["none", "balanced"] = setting(
        "none", "Class weights of the classification loss.", runs=("train",)
    )
    target_pooling: Literal["attention", "attention+abundance"] = setting(
        "attention",
        "Input of the target head: attention pooling of the ASV states, or beside it their "
        "abundance-weighted mean.",
        runs=("train",),
    )
    linear_head: bool = setting(
        True,
        "Add a linear model on the log abundances of the ASVs of the train split to the target "
        "head's output.",
        runs=("train",),
    )
    refit: Literal["none", "linear", "all"] = setting(
        "none",
        "After training, fit again on the train and validation samples together and register "
        "that model: 'linear' the linear base alone (same L2), 'all' the whole model for the "
        "epochs validation chose; its validation figures stay the first model's.",
        runs=("train",),
    )
    asv_vocabulary: bool = setting(
        True,
        "Learn an identity embedding for each ASV of the train split beside its sequence's "
        "vector; other ASVs are read by sequence alone (a fine-tuned model starts from its "
        "encoder's identities of the ASVs the encoder saw).",
    )
    identity_dropout: float | None = setting(
        None,
        "Share of ASV identities hidden per training step (with asv_vocabulary); unset: 0.5 in "
        "pretraining, 0.2 in training.",
        ge=0,
        lt=1,
    )
    # data
    token_limit: int = setting(1024, "Most ASVs read per sample.", ge=1, le=65_536)
    max_bp: int = setting(
        150, "Longest ASV sequence read, in bp.", ge=1, le=10_000, runs=(*TRAINING, "baseline")
    )
    truncate: bool = setting(
        False, "Cut sequences longer than max_bp instead of refusing.", runs=(*TRAINING, "baseline")
    )
    rarefaction_depth: int | None = setting(
        None,
        "Reads per sample after rarefaction (unset: chosen from the depths).",
        ge=1,
        runs=(*TRAINING, "baseline"),
    )
    rerarefy: bool | None = setting(
        None,
        "Draw a new rarefaction of the training samples every epoch (unset: in pretraining, "
        "where it keeps the encoder from memorising the train split's distances; not in "
        "training).",
    )
    validation_fraction: float = setting(
        0.2, "Share of samples for validation.", gt=0, lt=1, runs=(*TRAINING, "baseline")
    )
    group_column: str | None = setting(
        None,
        "Metadata column whose groups (e.g. subjects) never span train and validation.",
        runs=(*TRAINING, "baseline"),
    )
    # optimisation
    epochs: int | None = setting(
        None,
        "Passes over the training samples; unset: 50, and in pretraining at least enough for "
        "2,000 optimiser steps (a small table's 50 epochs are a few hundred steps).",
        ge=1,
        le=100_000,
    )
    batch_size: int | None = setting(
        None,
        "Samples per batch (per GPU); unset: an eighth of the train split, from 16 to 64.",
        why="UniFrac compares pairs",
        ge=2,
        le=65_536,
    )
    lr: float | None = setting(
        None,
        "Peak learning rate (AdamW); unset: the preset's (default 1e-4; tiny 1e-3, and 3e-3 in "
        "pretraining).",
        gt=0,
        le=1,
    )
    weight_decay: float = setting(0.01, "AdamW weight decay.", ge=0)
    warmup_fraction: float = setting(0.05, "Share of steps spent warming up.", ge=0, lt=1)
    grad_clip: float = setting(1.0, "Gradient norm clip (0 = off).", ge=0)
    grad_accumulation: int = setting(1, "Batches per optimiser step.", ge=1)
    ema: float = setting(
        0.0,
        "Decay of a moving average of the weights that validation and the saved model use "
        "(0: off; e.g. 0.99 averages about the last 100 steps).",
        ge=0,
        lt=1,
    )
    patience: int = setting(10, "Epochs without improvement before stopping (0 = never).", ge=0)
    monitor: str | None = setting(None, "Validation metric to follow (unset: the stage's).")
    precision: Precision = setting(  # noqa: RUF009
        "auto",
        "Arithmetic. Training: auto (bf16 on CUDA and on CPUs with native bf16), fp32 or bf16. "
        "Prediction: auto or fp32 (same sample, same value within 1e-5 relative), or fp64 "
        "(exact: bit for bit in any company, two to three times the time on a CPU).",
        runs=(*TRAINING, "predict"),
    )
    compile: bool = setting(False, "Compile the model with torch.compile.")
    seed: int = setting(
        0, "Seed of the split, initial weights, rarefaction and order.", ge=0, runs=RUNS
    )
    gpus: int = setting(1, "GPUs (processes) for one job.", ge=1, le=64)
    num_workers: int = setting(0, "Data-loader worker processes.", ge=0, le=64)
    baseline: bool = setting(True, "Fit a random forest on the same split.", runs=("train",))
    passes: int = setting(
        1, "Rarefaction passes averaged per sample.", ge=1, le=100, runs=("predict",)
    )
    extra: Mapping[str, Any] = setting({}, "Free-form notes, kept in the run's report.")

    def __post_init__(self) -> None:
        hints = _hints()
        for f in fields(self):
            value = getattr(self, f.name)
            _check_type(f.name, value, hints[f.name])
            _check_bounds(f, value)
        if self.embedding_dim is not None or self.heads is not None:
            preset = self.model_config_base().sample
            dim, heads = self.embedding_dim or preset.dim, self.heads or preset.heads
            if dim % heads:
                raise ConfigError(
                    f"embedding_dim ({dim}) must be divisible by heads ({heads})",
                    field="config.heads" if self.heads is not None else "config.embedding_dim",
                )
        if self.loss_weights is not None:
            unknown = sorted(set(self.loss_weights) - {f.name for f in fields(LossWeights)})
            if unknown:
                raise ConfigError(
                    f"unknown loss_weights keys: {', '.join(unknown)} (expected unifrac, "
                    "faith_pd, nucleotide, count, target)",
                    field="config.loss_weights",
                )
            try:
                LossWeights(**self.loss_weights)
            except ConfigError as exc:
                raise ConfigError(exc.message, field="config.loss_weights") from None
        self.encoders()  # validates the architecture fields together

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from a mapping (a config file, a job's config); unknown keys are an error."""
        unknown = sorted(set(values) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}", field="config")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["loss_weights"] = None if self.loss_weights is None else dict(self.loss_weights)
        out["extra"] = dict(self.extra)
        return out

    def weights(self, stage: Stage) -> LossWeights:
        if self.loss_weights is not None:
            return LossWeights(**self.loss_weights)
        return LossWeights.pretraining() if stage == "pretrain" else LossWeights.training()

    def model_config_base(self) -> AAMConfig:
        """The preset's model ("auto" before a device is known: the larger one)."""
        return AAMConfig.tiny() if self.preset == "tiny" else AAMConfig.default()

    @property
    def batch(self) -> int:
        """``batch_size``, which :meth:`resolved` decides when it is unset."""
        assert self.batch_size is not None, "a run's batch size is decided by resolved()"
        return self.batch_size

    def peak_lr(self, stage: Stage = "train") -> float:
        """``lr``, or the preset's peak learning rate in ``stage`` (small models learn
        faster)."""
        if self.lr is not None:
            return self.lr
        return PRESET_LR[stage]["tiny" if self.preset == "tiny" else "default"]

    def for_device(self, device_type: str) -> RunConfig:
        """``preset="auto"`` resolved for a run on ``device_type`` ("cuda" or "cpu"): the
        default model on a GPU, the tiny one on a CPU, where the default trains at a few
        samples a second."""
        if self.preset != "auto":
            return self
        return self.replace(preset="default" if device_type == "cuda" else "tiny")

    @property
    def dim(self) -> int:
        return self.embedding_dim or self.model_config_base().dim

    def model_config(self, stage: Stage, target: TargetConfig | None = None) -> AAMConfig:
        """The model this run builds from scratch (fine-tuning takes the encoder's instead)."""
        nucleotide, sample = self.encoders()
        weights = self.weights(stage)
        return AAMConfig(
            nucleotide=nucleotide,
            sample=sample,
            target=target if stage == "train" else None,
            loss_weights=weights,
            unifrac_head="affine",
        )

    def encoders(self) -> tuple[NucleotideEncoderConfig, SampleEncoderConfig]:
        """The two encoders' configs: the preset with this run's overrides."""
        base = self.model_config_base()
        nuc, smp = base.nucleotide, base.sample
        dim = self.embedding_dim or smp.dim
        heads = self.heads or smp.heads
        dropout = smp.dropout if self.dropout is None else self.dropout
        nucleotide = NucleotideEncoderConfig(
            dim=dim,
            layers=self.nucleotide_layers or nuc.layers,
            heads=heads,
            ffn_mult=nuc.ffn_mult,
            dropout=dropout,
            max_bp=self.max_bp,
        )
        sample = SampleEncoderConfig(
            dim=dim,
            layers=self.layers or smp.layers,
            heads=heads,
            ffn_mult=smp.ffn_mult,
            dropout=dropout,
            token_limit=self.token_limit,
            richness=True,
        )
        return nucleotide, sample

    def monitor_metric(self, stage: Stage, task: str | None) -> tuple[str, Literal["min", "max"]]:
        """The validation metric early stopping and the best checkpoint follow: the task's
        own (UniFrac R² in pretraining, MAE, ROC AUC), not the loss, whose scale mixes terms
        and whose minimum is not the best score."""
        name = self.monitor
        if name is None and stage == "pretrain":
            name = "unifrac_r2" if self.weights(stage).unifrac > 0 else "loss"
        elif name is None:
            name = "roc_auc" if task == "classification" else "mae"
        return name, ("max" if name in MAXIMISED else "min")

    def resolved(self, stage: Stage, n_train: int, world_size: int = 1) -> RunConfig:
        """``batch_size``, ``epochs`` and ``rerarefy`` as a run of ``stage`` on ``n_train``
        training samples over ``world_size`` processes uses them (the one place where unset
        values are decided): the batch size an eighth of the train split
        (:func:`auto_batch_size`), the epochs :data:`DEFAULT_EPOCHS`, and in pretraining
        enough for :data:`PRETRAIN_MIN_STEPS` optimiser steps (UniFrac is learnt over
        thousands of steps, which a small table's 50 epochs do not give: ECAM has 10 steps an
        epoch) and a new rarefaction every epoch."""
        batch = self.batch_size or auto_batch_size(n_train)
        epochs = self.epochs
        if epochs is None:
            per_rank = math.ceil(n_train / world_size)
            steps = math.ceil(math.ceil(per_rank / batch) / self.grad_accumulation)
            floor = PRETRAIN_MIN_STEPS if stage == "pretrain" else 0
            epochs = max(DEFAULT_EPOCHS, math.ceil(floor / max(steps, 1)))
        rerarefy = stage == "pretrain" if self.rerarefy is None else self.rerarefy
        return self.replace(
            batch_size=batch,
            epochs=epochs,
            rerarefy=rerarefy,
            identity_dropout=self.identity_rate(stage),
        )

    def identity_rate(self, stage: Stage) -> float:
        """``identity_dropout``, or the stage's: pretraining hides half the identities, so that
        the encoder does not memorise its train split's distances through them (ECAM, whole
        families held out: train minus validation UniFrac R² 0.09 at 0.5, 0.11 at 0.2)."""
        if self.identity_dropout is not None:
            return self.identity_dropout
        return IDENTITY_DROPOUT[stage]


@cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(RunConfig)


@cache
def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(RunConfig))


def setting_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The fields of :class:`RunConfig`, for the edges that generate their schema from it."""
    return fields(RunConfig)


@cache
def run_settings(run: Run) -> tuple[str, ...]:
    """The settings that apply to ``run``, in field order (the fields' ``runs`` metadata)."""
    return tuple(f.name for f in fields(RunConfig) if run in f.metadata["runs"])


def setting_runs(name: str) -> tuple[Run, ...]:
    """The runs the setting ``name`` applies to."""
    return next(f.metadata["runs"] for f in fields(RunConfig) if f.name == name)


def type_hint(name: str) -> Any:
    """The resolved type annotation of a field."""
    return _hints()[name]


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        hint, "a mapping"
    )


def _check_type(name: str, value: Any, hint: Any) -> None:
    """``value`` against a field's annotation: int, float, bool, str, a Literal, a Mapping, or
    one of those or None."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    wanted = [o for o in options if o is not type(None)]
    if value is None and type(None) in options:
        return
    for option in wanted:
        origin = typing.get_origin(option)
        if origin is Literal and value in typing.get_args(option):
            return
        if origin is not None and origin is not Literal and isinstance(value, Mapping):
            return
        if option is bool and isinstance(value, bool):
            return
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return
        if option is str and isinstance(value, str):
            return
    expected = " or ".join(_describe(o) for o in wanted)
    raise ConfigError(f"{name} must be {expected}, got {value!r}", field=f"config.{name}")


def _check_bounds(f: dataclasses.Field[Any], value: Any) -> None:
    bounds: dict[str, float] = f.metadata.get("bounds", {})
    if value is None or not bounds:
        return
    if all(_within(k, b, value) for k, b in bounds.items()):
        return
    lower = next(((k, b) for k, b in bounds.items() if k in ("ge", "gt")), None)
    upper = next(((k, b) for k, b in bounds.items() if k in ("le", "lt")), None)
    if lower and upper and upper[1] <= 1:  # a fraction: the interval reads best
        rule = (
            f"in {'[' if lower[0] == 'ge' else '('}{lower[1]:g}, "
            f"{upper[1]:g}{']' if upper[0] == 'le' else ')'}"
        )
    else:  # the bound the value breaks
        kind, bound = next((k, b) for k, b in bounds.items() if not _within(k, b, value))
        rule = f"{BOUND_WORDS[kind]} {bound:g}"
    why = f" ({f.metadata['why']})" if f.metadata.get("why") else ""
    raise ConfigError(f"{f.name} must be {rule}{why}, got {value}", field=f"config.{f.name}")


def _within(kind: str, bound: float, value: Any) -> bool:
    return {"ge": value >= bound, "gt": value > bound, "le": value <= bound, "lt": value < bound}[
        kind
    ]
