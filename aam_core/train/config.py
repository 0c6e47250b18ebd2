"""Run configuration: every setting of a pretraining or training run, flat, with the keys the
REST API accepts in a job's ``config`` (API.md) plus a few more for the command-line tool."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from aam_core.model.config import (
    AAMConfig,
    ConfigError,
    LossWeights,
    NucleotideEncoderConfig,
    SampleEncoderConfig,
    TargetConfig,
)

Precision = Literal["auto", "fp32", "bf16"]
Stage = Literal["pretrain", "train"]
MAXIMISED = frozenset(
    {"accuracy", "macro_f1", "roc_auc", "r2", "pearson_r", "unifrac_r2", "nucleotide_accuracy"}
)


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    # model architecture (None = the preset's value)
    preset: Literal["default", "tiny"] = "default"
    embedding_dim: int | None = None
    layers: int | None = None  # sample encoder
    nucleotide_layers: int | None = None
    heads: int | None = None  # both encoders
    dropout: float | None = None
    loss_weights: Mapping[str, float] | None = None  # None = the stage's defaults
    target_loss: Literal["mse", "huber"] = "mse"
    class_weights: Literal["none", "balanced"] = "none"
    # data
    token_limit: int = 1024
    max_bp: int = 150
    truncate: bool = False
    rarefaction_depth: int | None = None
    rerarefy: bool = False
    validation_fraction: float = 0.2
    group_column: str | None = None
    # optimisation
    epochs: int = 50
    batch_size: int = 16  # per GPU
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    grad_accumulation: int = 1
    patience: int | None = 10  # epochs without improvement; None = never stop early
    monitor: str | None = None  # validation metric; None = the stage's default
    precision: Precision = "auto"
    compile: bool = False
    seed: int = 0
    gpus: int = 1
    num_workers: int = 0
    baseline: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)  # free-form notes, kept in reports

    def __post_init__(self) -> None:
        rules: list[tuple[bool, str]] = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (
                self.batch_size >= 2,
                f"batch_size must be >= 2 (UniFrac compares pairs), got {self.batch_size}",
            ),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (
                0 <= self.warmup_fraction < 1,
                f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}",
            ),
            (self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}"),
            (
                self.grad_accumulation >= 1,
                f"grad_accumulation must be >= 1, got {self.grad_accumulation}",
            ),
            (
                self.patience is None or self.patience >= 1,
                f"patience must be >= 1, got {self.patience}",
            ),
            (self.token_limit >= 1, f"token_limit must be >= 1, got {self.token_limit}"),
            (self.max_bp >= 1, f"max_bp must be >= 1, got {self.max_bp}"),
            (
                self.rarefaction_depth is None or self.rarefaction_depth >= 1,
                f"rarefaction_depth must be >= 1, got {self.rarefaction_depth}",
            ),
            (
                0 < self.validation_fraction < 1,
                f"validation_fraction must be in (0, 1), got {self.validation_fraction}",
            ),
            (self.gpus >= 1, f"gpus must be >= 1, got {self.gpus}"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (
                self.precision in ("auto", "fp32", "bf16"),
                f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}",
            ),
            (
                self.preset in ("default", "tiny"),
                f"preset must be 'default' or 'tiny', got {self.preset!r}",
            ),
        ]
        for ok, message in rules:
            if not ok:
                raise ConfigError(message)
        if self.embedding_dim is not None or self.heads is not None:
            preset = self.model_config_base().sample
            dim, heads = self.embedding_dim or preset.dim, self.heads or preset.heads
            if heads < 1 or dim % heads:
                raise ConfigError(f"embedding_dim ({dim}) must be divisible by heads ({heads})")
        if self.loss_weights is not None:
            unknown = sorted(set(self.loss_weights) - {f.name for f in fields(LossWeights)})
            if unknown:
                raise ConfigError(
                    f"unknown loss_weights keys: {', '.join(unknown)} (expected unifrac, "
                    "faith_pd, nucleotide, count, target)"
                )
            LossWeights(**self.loss_weights)  # validates the values
        self.encoders()  # validates the architecture fields

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from a mapping (TOML/YAML file, job spec); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        try:
            return cls(**dict(values))
        except TypeError as exc:  # e.g. a str where a number belongs, caught by a comparison
            raise ConfigError(f"invalid config value: {exc}") from None

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

    def architecture_overrides(self) -> dict[str, Any]:
        names = ("embedding_dim", "layers", "nucleotide_layers", "heads", "dropout")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def model_config_base(self) -> AAMConfig:
        return AAMConfig.tiny() if self.preset == "tiny" else AAMConfig.default()

    @property
    def dim(self) -> int:
        return self.embedding_dim or self.model_config_base().dim

    def model_config(self, stage: Stage, target: TargetConfig | None = None) -> AAMConfig:
        """The model this run builds from scratch (fine-tuning takes the encoder's instead)."""
        nucleotide, sample = self.encoders()
        weights = self.weights(stage)
        if stage == "pretrain":
            return AAMConfig(nucleotide=nucleotide, sample=sample, loss_weights=weights)
        return AAMConfig(nucleotide=nucleotide, sample=sample, target=target, loss_weights=weights)

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
        )
        return nucleotide, sample

    def monitor_metric(self, stage: Stage, task: str | None) -> tuple[str, Literal["min", "max"]]:
        """The validation metric early stopping and the best checkpoint follow."""
        name = self.monitor or (
            "loss" if stage == "pretrain" or task == "classification" else "mae"
        )
        return name, ("max" if name in MAXIMISED else "min")
