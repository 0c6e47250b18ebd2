"""What a prediction returns, per sample, and how it is written (TSV or JSON)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from aam_core.io.files import atomic_write, json_text


@dataclass(frozen=True)
class SamplePrediction:
    sample_id: str
    prediction: list[float] | None = None  # regressor, original units (one per output)
    prediction_std: list[float] | None = None  # over rarefaction passes (passes > 1)
    label: str | None = None  # classifier
    probabilities: dict[str, float] | None = None
    probabilities_std: dict[str, float] | None = None
    embedding: list[float] | None = None
    # an ensemble's parts: "aam" and "forest", each a value list or class probabilities
    components: dict[str, Any] | None = None
    n_features: int = 0  # ASVs with reads in the sample (after rarefaction)
    n_features_used: int = 0  # of those, the ones the model read (top token_limit)
    fraction_reads_used: float = 0.0
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PredictionResult:
    kind: str
    target: dict[str, Any] | None
    samples: list[SamplePrediction]

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for s in self.samples:
            row: dict[str, Any] = {"sample_id": s.sample_id}
            if s.prediction is not None:
                many = len(s.prediction) > 1
                for i, v in enumerate(s.prediction):
                    row[f"prediction_{i}" if many else "prediction"] = v
                for i, v in enumerate(s.prediction_std or []):
                    row[f"prediction_std_{i}" if many else "prediction_std"] = v
            if s.label is not None:
                row["label"] = s.label
                for name, p in (s.probabilities or {}).items():
                    row[f"prob_{name}"] = p
                for name, p in (s.probabilities_std or {}).items():
                    row[f"prob_std_{name}"] = p
            if s.embedding is not None:
                for i, v in enumerate(s.embedding):
                    row[f"embedding_{i}"] = v
            for part, value in (s.components or {}).items():  # an ensemble's parts
                if isinstance(value, dict):
                    row.update({f"{part}_prob_{name}": p for name, p in value.items()})
                else:
                    many = len(value) > 1
                    row.update({f"{part}_prediction" + (f"_{i}" if many else ""): v
                                for i, v in enumerate(value)})  # fmt: skip
            row.update(
                n_features=s.n_features,
                n_features_used=s.n_features_used,
                fraction_reads_used=s.fraction_reads_used,
                warnings="; ".join(s.warnings),
            )
            rows.append(row)
        return pd.DataFrame(rows)


def write_predictions(result: PredictionResult, path: str | Path, fmt: str = "tsv") -> None:
    """One row per sample (TSV), or the samples as JSON (``fmt="json"``), written atomically
    (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        if fmt == "json":
            samples = [dataclasses.asdict(s) for s in result.samples]
            payload = {"kind": result.kind, "target": result.target, "samples": samples}
            handle.write(json_text(payload, indent=2) + "\n")
        else:
            result.to_frame().to_csv(handle, sep="\t", index=False)
