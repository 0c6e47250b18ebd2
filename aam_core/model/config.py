"""Model configuration: frozen, keyword-only dataclasses validated on construction.

A checkpoint carries :meth:`AAMConfig.to_dict`, and :meth:`AAMConfig.from_dict` rebuilds the
exact model from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from aam_core.data.selection import N_ABUNDANCE_FEATURES
from aam_core.data.tokens import VOCAB_SIZE
from aam_core.errors import ConfigError

Task = Literal["regression", "classification"]
TargetLoss = Literal["mse", "huber"]
TargetPooling = Literal["attention", "attention+abundance"]
LinearFeatures = Literal["log", "presence+log"]
UniFracHeadKind = Literal["euclidean", "affine"]

__all__ = [
    "AAMConfig",
    "ConfigError",
    "LossWeights",
    "NucleotideEncoderConfig",
    "SampleEncoderConfig",
    "TargetConfig",
]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _check_transformer(prefix: str, dim: int, heads: int, layers: int, dropout: float) -> None:
    _check(dim >= 2, f"{prefix}.dim must be >= 2, got {dim}")
    _check(heads >= 1, f"{prefix}.heads must be >= 1, got {heads}")
    _check(dim % heads == 0, f"{prefix}.dim ({dim}) must be divisible by {prefix}.heads ({heads})")
    _check(layers >= 1, f"{prefix}.layers must be >= 1, got {layers}")
    _check(0.0 <= dropout < 1.0, f"{prefix}.dropout must be in [0, 1), got {dropout}")


@dataclass(frozen=True, kw_only=True)
class NucleotideEncoderConfig:
    dim: int = 128
    layers: int = 2
    heads: int = 4
    ffn_mult: int = 4
    dropout: float = 0.1
    max_bp: int = 150
    vocab_size: int = VOCAB_SIZE

    def __post_init__(self) -> None:
        _check_transformer("nucleotide", self.dim, self.heads, self.layers, self.dropout)
        _check(self.ffn_mult >= 1, f"nucleotide.ffn_mult must be >= 1, got {self.ffn_mult}")
        _check(self.max_bp >= 1, f"nucleotide.max_bp must be >= 1, got {self.max_bp}")


@dataclass(frozen=True, kw_only=True)
class SampleEncoderConfig:
    dim: int = 128
    layers: int = 4
    heads: int = 4
    ffn_mult: int = 4
    dropout: float = 0.1
    token_limit: int = 1024  # most ASVs per sample = number of rank positions
    abundance_features: int = N_ABUNDANCE_FEATURES
    # ASVs seen in training that get a learned identity embedding beside their sequence's
    # vector (0: none; the checkpoint lists them); any other ASV is read by sequence alone
    vocabulary: int = 0
    identity_dropout: float = 0.0  # share of slots whose identity is hidden while training
    # Add a learned direction scaled by log(number of ASVs) to the pooled sample embedding:
    # attention pooling is a weighted mean, blind to how many ASVs a sample holds, while
    # richness carries much of the UniFrac distance (off in checkpoints written before it).
    richness: bool = False

    def __post_init__(self) -> None:
        _check_transformer("sample", self.dim, self.heads, self.layers, self.dropout)
        _check(self.ffn_mult >= 1, f"sample.ffn_mult must be >= 1, got {self.ffn_mult}")
        _check(self.token_limit >= 1, f"sample.token_limit must be >= 1, got {self.token_limit}")
        _check(self.vocabulary >= 0, f"sample.vocabulary must be >= 0, got {self.vocabulary}")
        _check(
            0.0 <= self.identity_dropout < 1.0,
            f"sample.identity_dropout must be in [0, 1), got {self.identity_dropout}",
        )


@dataclass(frozen=True, kw_only=True)
class TargetConfig:
    task: Task = "regression"
    out_dim: int = 1  # regression outputs; for classification the number of classes K
    hidden: int = 128
    loss: TargetLoss = "mse"  # regression only
    huber_delta: float = 1.0
    # How ASV states become the head's input: attention pooling alone (the checkpoints written
    # before this field), or beside it the abundance-weighted mean of the states, a direct
    # path from "which ASVs, how abundant" to the target.
    pooling: TargetPooling = "attention"
    # A linear model on the ASVs of the vocabulary added to the head's output: a weight per
    # ASV times its log1p(count) / log1p(depth), summed over the sample's ASVs (off in the
    # checkpoints written before this field; needs a vocabulary).
    linear: bool = False
    # "presence+log": beside that, a weight per ASV on its presence and an intercept, fitted
    # in closed form before the network trains (aam_core.train.linear_base) and fixed after;
    # "log": the log term alone, trained with the network (checkpoints written before this).
    linear_features: LinearFeatures = "log"
    # Rows of the linear term (ASVs of the run's train split); 0: the sample encoder's
    # vocabulary (checkpoints written before this field).
    vocabulary: int = 0

    def __post_init__(self) -> None:
        _check(
            self.task in ("regression", "classification"),
            f"target.task must be 'regression' or 'classification', got {self.task!r}",
        )
        if self.task == "classification":
            _check(self.out_dim >= 2, f"target.out_dim (classes) must be >= 2, got {self.out_dim}")
        else:
            _check(self.out_dim >= 1, f"target.out_dim must be >= 1, got {self.out_dim}")
        _check(self.hidden >= 1, f"target.hidden must be >= 1, got {self.hidden}")
        _check(
            self.loss in ("mse", "huber"),
            f"target.loss must be 'mse' or 'huber', got {self.loss!r}",
        )
        _check(self.huber_delta > 0, f"target.huber_delta must be > 0, got {self.huber_delta}")
        _check(
            self.pooling in ("attention", "attention+abundance"),
            f"target.pooling must be 'attention' or 'attention+abundance', got {self.pooling!r}",
        )
        _check(
            self.linear_features in ("log", "presence+log"),
            f"target.linear_features must be 'log' or 'presence+log', got {self.linear_features!r}",
        )
        _check(self.vocabulary >= 0, f"target.vocabulary must be >= 0, got {self.vocabulary}")


@dataclass(frozen=True, kw_only=True)
class LossWeights:
    """Weight of each loss component; 0 removes the component and the cost of its head."""

    unifrac: float = 0.0
    faith_pd: float = 0.0
    nucleotide: float = 0.0
    count: float = 0.0
    target: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            _check(value >= 0.0, f"loss_weights.{f.name} must be >= 0, got {value}")

    def active(self) -> frozenset[str]:
        return frozenset(f.name for f in fields(self) if getattr(self, f.name) > 0)

    @classmethod
    def pretraining(cls) -> LossWeights:
        return cls(unifrac=1.0, nucleotide=1.0)

    @classmethod
    def training(cls) -> LossWeights:
        return cls(target=1.0)


@dataclass(frozen=True, kw_only=True)
class AAMConfig:
    nucleotide: NucleotideEncoderConfig = field(default_factory=NucleotideEncoderConfig)
    sample: SampleEncoderConfig = field(default_factory=SampleEncoderConfig)
    target: TargetConfig | None = None  # None for the pretraining model (SequenceEncoder)
    loss_weights: LossWeights = field(default_factory=LossWeights.pretraining)
    nucleotide_mask_fraction: float = 0.15
    count_mask_fraction: float = 0.15
    # The UniFrac head: "euclidean" d = ||z_i - z_j|| (checkpoints written before this field),
    # or "affine" d = a ||z_i - z_j|| + b with the loss in units of the train split's spread
    # of distances (aam_core.model.heads.UniFracHead).
    unifrac_head: UniFracHeadKind = "euclidean"

    def __post_init__(self) -> None:
        _check(
            self.unifrac_head in ("euclidean", "affine"),
            f"unifrac_head must be 'euclidean' or 'affine', got {self.unifrac_head!r}",
        )
        _check(
            self.nucleotide.dim == self.sample.dim,
            f"nucleotide.dim ({self.nucleotide.dim}) must equal sample.dim ({self.sample.dim})",
        )
        for name in ("nucleotide_mask_fraction", "count_mask_fraction"):
            value = getattr(self, name)
            _check(0.0 < value < 1.0, f"{name} must be in (0, 1), got {value}")
        if self.target is None:
            _check(
                self.loss_weights.target == 0 and self.loss_weights.count == 0,
                "loss_weights.target and loss_weights.count need a target head "
                "(a regressor or classifier); the pretraining model has none",
            )
        _check(bool(self.loss_weights.active()), "at least one loss weight must be > 0")
        head = 0 if self.target is None else self.target.vocabulary
        _check(
            not (head and self.sample.vocabulary) or head == self.sample.vocabulary,
            f"target.vocabulary ({head}) must equal sample.vocabulary "
            f"({self.sample.vocabulary}): the two read one list of ASVs",
        )

    @property
    def dim(self) -> int:
        return self.sample.dim

    @property
    def vocabulary(self) -> int:
        """ASVs of the model's vocabulary: one list, read by the sample encoder's identity
        embeddings and the target head's linear base, either of which may be absent."""
        head = 0 if self.target is None else self.target.vocabulary
        return self.sample.vocabulary or head

    @classmethod
    def default(cls, **overrides: Any) -> AAMConfig:
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> AAMConfig:
        """D = 32, one layer in each encoder, no dropout: fast CPU tests."""
        values: dict[str, Any] = {
            "nucleotide": NucleotideEncoderConfig(
                dim=32, layers=1, heads=2, ffn_mult=2, dropout=0.0
            ),
            "sample": SampleEncoderConfig(
                dim=32, layers=1, heads=2, ffn_mult=2, dropout=0.0, token_limit=256
            ),
        }
        values.update(overrides)
        return cls(**values)

    def with_target(
        self, target: TargetConfig, loss_weights: LossWeights | None = None
    ) -> AAMConfig:
        return replace(self, target=target, loss_weights=loss_weights or LossWeights.training())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AAMConfig:
        def build(kind: type[Any], value: Any) -> Any:
            if not isinstance(value, dict):
                raise ConfigError(f"{kind.__name__} must be a mapping, got {type(value).__name__}")
            known = {f.name for f in fields(kind)}
            unknown = sorted(set(value) - known)
            _check(not unknown, f"unknown {kind.__name__} keys: {', '.join(unknown)}")
            return kind(**value)

        data = dict(data)
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        _check(not unknown, f"unknown AAMConfig keys: {', '.join(unknown)}")
        return cls(
            nucleotide=build(NucleotideEncoderConfig, data.get("nucleotide", {})),
            sample=build(SampleEncoderConfig, data.get("sample", {})),
            target=None if data.get("target") is None else build(TargetConfig, data["target"]),
            loss_weights=build(LossWeights, data.get("loss_weights", {})),
            **{
                k: data[k]
                for k in ("nucleotide_mask_fraction", "count_mask_fraction", "unifrac_head")
                if k in data
            },
        )
