"""The AAM model: configs, blocks, encoders, heads, SequenceEncoder and SequenceRegressor."""

from aam_core.model.aam import ModelOutput, SequenceEncoder, SequenceRegressor, Standardizer
from aam_core.model.config import (
    AAMConfig,
    ConfigError,
    LossWeights,
    NucleotideEncoderConfig,
    SampleEncoderConfig,
    TargetConfig,
)
from aam_core.model.summary import format_summary, parameter_counts

__all__ = [
    "AAMConfig",
    "ConfigError",
    "LossWeights",
    "ModelOutput",
    "NucleotideEncoderConfig",
    "SampleEncoderConfig",
    "SequenceEncoder",
    "SequenceRegressor",
    "Standardizer",
    "TargetConfig",
    "format_summary",
    "parameter_counts",
]
