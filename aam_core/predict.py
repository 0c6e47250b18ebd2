"""Prediction with a trained checkpoint, applying training's preprocessing: tokens and ASV
selection as in training, rarefaction to the training depth (when a sample is deeper; a
shallower one gets a warning), de-standardised values, class names and probabilities for
classifiers, optional embeddings, per-sample coverage, and optional K rarefaction passes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from aam_core.checkpoint import Checkpoint, build_model, load_checkpoint
from aam_core.data.batching import Collator, Sample
from aam_core.data.rarefy import sample_rng, subsample_row
from aam_core.data.selection import select_asvs
from aam_core.data.tokens import tokenize
from aam_core.errors import UserError
from aam_core.io.files import atomic_write, json_text
from aam_core.io.types import FeatureTable
from aam_core.model import SequenceEncoder, SequenceRegressor
from aam_core.vector_cache import AsvVectorCache


class PredictionError(UserError):
    """A prediction request that cannot be served (e.g. a target from an encoder)."""

    problem = "invalid-prediction-request"


@dataclass(frozen=True)
class SamplePrediction:
    sample_id: str
    prediction: list[float] | None = None  # regressor, original units (one per output)
    prediction_std: list[float] | None = None  # over rarefaction passes (passes > 1)
    label: str | None = None  # classifier
    probabilities: dict[str, float] | None = None
    probabilities_std: dict[str, float] | None = None
    embedding: list[float] | None = None
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


class Predictor:
    """A loaded model ready to predict (the service keeps these in an LRU cache)."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        device: str | torch.device = "cpu",
        vector_cache: int = 0,
    ) -> None:
        """``vector_cache``: keep the vectors of up to this many ASVs between calls (0: off);
        the service turns it on, the command-line tool predicts once and leaves it off."""
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.model: SequenceEncoder | SequenceRegressor = build_model(checkpoint).to(self.device)
        self.model.eval()
        pre = checkpoint.preprocessing
        self.max_bp = int(pre["max_bp"])
        self.token_limit = int(pre["token_limit"])
        self.truncate = bool(pre.get("truncate", False))
        self.depth = None if pre.get("rarefaction_depth") is None else int(pre["rarefaction_depth"])
        self.vector_cache = AsvVectorCache(vector_cache) if vector_cache > 0 else None

    @classmethod
    def from_path(
        cls, path: str | Path, *, device: str | torch.device = "cpu", vector_cache: int = 0
    ) -> Predictor:
        return cls(load_checkpoint(path), device=device, vector_cache=vector_cache)

    @property
    def kind(self) -> str:
        return self.checkpoint.kind

    def memory_bytes(self) -> int:
        """Parameters and buffers, plus the vector cache when full (float32 vectors)."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        cache = 0 if self.vector_cache is None else self.vector_cache.capacity * self._dim * 4
        return sum(t.numel() * t.element_size() for t in tensors) + cache

    @property
    def _dim(self) -> int:
        return int(self.checkpoint.config.dim)

    def predict(
        self,
        table: FeatureTable,
        sequences: Sequence[str],
        *,
        passes: int = 1,
        seed: int = 0,
        embeddings: bool = False,
        batch_size: int = 64,
    ) -> PredictionResult:
        """Predict every sample of ``table`` (``sequences``: one DNA string per feature)."""
        if passes < 1:
            raise PredictionError(f"passes must be >= 1, got {passes}")
        if self.kind == "encoder" and not embeddings:
            raise PredictionError(
                "this model is a pretrained encoder: it predicts no target; ask for embeddings "
                "or use a regressor/classifier"
            )
        if len(sequences) != table.n_features:
            raise PredictionError(
                f"number of sequences ({len(sequences)}) must match number of features "
                f"({table.n_features})"
            )
        tokens = tokenize(sequences, max_bp=self.max_bp, truncate=self.truncate)
        collate = Collator(tokens, token_limit=self.token_limit)
        outputs: list[list[dict[str, np.ndarray]]] = []  # [pass][batch]
        coverage: list[tuple[int, int, float]] = []
        for p in range(passes):
            samples = [self._sample(table, row, seed, p) for row in range(table.n_samples)]
            if p == 0:
                coverage = [self._coverage(s) for s in samples]
            outputs.append(
                [
                    self._run(collate([*samples[i : i + batch_size]]), embeddings)
                    for i in range(0, len(samples), batch_size)
                ]
            )
        return self._assemble(table, outputs, coverage)

    def _sample(self, table: FeatureTable, row: int, seed: int, rarefaction_pass: int) -> Sample:
        csr = table.counts
        lo, hi = csr.indptr[row], csr.indptr[row + 1]
        features, counts = csr.indices[lo:hi].astype(np.int64), csr.data[lo:hi].astype(np.int64)
        if self.depth is not None and counts.sum() > self.depth:
            drawn = subsample_row(counts, self.depth, sample_rng(seed, row, rarefaction_pass))
            features, counts = features[drawn > 0], drawn[drawn > 0]
        features, counts = select_asvs(features, counts, token_limit=len(features))
        return Sample(row, table.sample_ids[row], features, counts)

    def _coverage(self, sample: Sample) -> tuple[int, int, float]:
        total = int(sample.counts.sum())
        used = sample.counts[: self.token_limit]
        fraction = float(used.sum() / total) if total else 0.0
        return len(sample.features), len(used), fraction

    @torch.no_grad()
    def _run(self, batch: Any, embeddings: bool) -> dict[str, np.ndarray]:
        batch = batch.to(self.device)
        model = self.model
        base = model.base if isinstance(model, SequenceRegressor) else model
        vectors = None
        if self.vector_cache is not None:
            vectors = self.vector_cache.vectors(batch.tokens, lambda t: base.nucleotide(t).vectors)
        out: dict[str, np.ndarray] = {}
        if isinstance(model, SequenceRegressor):
            result = model(batch, asv_vectors=vectors)
            assert result.target is not None
            if model.kind == "classifier":
                out["probabilities"] = torch.softmax(result.target.float(), -1).cpu().numpy()
            else:
                values = model.target_norm.destandardize(result.target.float())
                out["prediction"] = values.cpu().numpy()
            embedding = result.embedding
        else:
            embedding = model.encode(batch, asv_vectors=vectors).embedding
        if embeddings:
            out["embedding"] = embedding.float().cpu().numpy()
        return out

    def _assemble(
        self,
        table: FeatureTable,
        outputs: list[list[dict[str, np.ndarray]]],
        coverage: list[tuple[int, int, float]],
    ) -> PredictionResult:
        def stacked(key: str) -> np.ndarray | None:
            if key not in outputs[0][0]:
                return None
            return np.stack([np.concatenate([b[key] for b in run]) for run in outputs])  # [K, n, .]

        prediction, probabilities, embedding = (
            stacked("prediction"),
            stacked("probabilities"),
            stacked("embedding"),
        )
        classes = self.checkpoint.classes or []
        depths = table.depths()
        results = []
        for i, sample_id in enumerate(table.sample_ids):
            warnings = []
            if depths[i] == 0:
                warnings.append("the sample has no reads: nothing to predict from")
            elif self.depth is not None and depths[i] < self.depth:
                warnings.append(
                    f"the sample has {depths[i]} reads, fewer than the training rarefaction "
                    f"depth ({self.depth}); predicted without rarefaction"
                )
            n_feat, n_used, fraction = coverage[i]
            if n_used < n_feat:
                warnings.append(
                    f"only the {n_used} most abundant of {n_feat} ASVs were read (token limit)"
                )
            entry: dict[str, Any] = {}
            passes = len(outputs)
            if prediction is not None and depths[i] > 0:
                entry["prediction"] = prediction[:, i].mean(axis=0).tolist()
                if passes > 1:
                    entry["prediction_std"] = prediction[:, i].std(axis=0).tolist()
            if probabilities is not None and depths[i] > 0:
                mean = probabilities[:, i].mean(axis=0)
                entry["label"] = classes[int(mean.argmax())]
                entry["probabilities"] = {c: float(v) for c, v in zip(classes, mean, strict=True)}
                if passes > 1:
                    std = probabilities[:, i].std(axis=0)
                    entry["probabilities_std"] = {
                        c: float(v) for c, v in zip(classes, std, strict=True)
                    }
            if embedding is not None:
                entry["embedding"] = embedding[:, i].mean(axis=0).tolist()
            results.append(
                SamplePrediction(
                    sample_id=sample_id,
                    n_features=n_feat,
                    n_features_used=n_used,
                    fraction_reads_used=fraction,
                    warnings=warnings,
                    **entry,
                )
            )
        return PredictionResult(self.kind, self.checkpoint.target, results)
