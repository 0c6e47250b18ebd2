"""The AAM model: configs, blocks, encoders, heads, SequenceEncoder and SequenceRegressor.

The modules load on first use (PEP 562): ``aam_core.model.config`` is torch-free, and the run
planner and the API read configs without importing PyTorch's model code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aam_core import lazy_attributes

if TYPE_CHECKING:
    from aam_core.model.aam import ModelOutput, SequenceEncoder, SequenceRegressor
    from aam_core.model.blocks import Standardizer
    from aam_core.model.config import (
        AAMConfig,
        ConfigError,
        LossWeights,
        NucleotideEncoderConfig,
        SampleEncoderConfig,
        TargetConfig,
    )
    from aam_core.model.summary import format_summary, parameter_counts

_HOME = {
    "ModelOutput": "aam",
    "SequenceEncoder": "aam",
    "SequenceRegressor": "aam",
    "Standardizer": "blocks",
    "AAMConfig": "config",
    "ConfigError": "config",
    "LossWeights": "config",
    "NucleotideEncoderConfig": "config",
    "SampleEncoderConfig": "config",
    "TargetConfig": "config",
    "format_summary": "summary",
    "parameter_counts": "summary",
}

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

__getattr__ = lazy_attributes(__name__, _HOME)
