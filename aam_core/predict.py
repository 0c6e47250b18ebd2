"""Prediction with a trained checkpoint, applying training's preprocessing: tokens and ASV
selection as in training, rarefaction to the training depth (when a sample is deeper; a
shallower one gets a warning), de-standardised values, class names and probabilities for
classifiers, optional embeddings, per-sample coverage, and optional K rarefaction passes."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from aam_core.checkpoint import Checkpoint, build_model, load_checkpoint
from aam_core.data.batching import Batch, Collator, Sample
from aam_core.data.rarefy import rarefy_by_content
from aam_core.data.selection import select_asvs, sequence_ranks
from aam_core.data.tokens import PAD, tokenize
from aam_core.errors import UserError
from aam_core.io.errors import preview
from aam_core.io.predictions import PredictionResult, SamplePrediction, write_predictions
from aam_core.io.types import FeatureTable
from aam_core.model import SequenceEncoder, SequenceRegressor
from aam_core.vector_cache import DEFAULT_CAPACITY, AsvVectorCache

__all__ = [
    "PRECISIONS",
    "RELATIVE_TOLERANCE",
    "PredictionError",
    "PredictionResult",
    "Predictor",
    "SamplePrediction",
    "write_predictions",
]

# Prediction's arithmetic. "fp32" (the default) batches samples and the ASVs of a batch: kernels
# block and reduce differently for other batch shapes and padding, so the same sample alone and
# among others differs in the last bits (measured: up to 3e-5 of a value near zero, 2e-7
# absolute, on a default() model). The contract (RELATIVE_TOLERANCE): the same sample and model
# give values within 1e-5 of the larger of |value| and the value's scale (the training target's
# standard deviation for a regressor; 1 for probabilities and embeddings), hence the same label
# unless two classes' probabilities are that close. "fp64" is the exact mode: float64, each
# sample run alone and each ASV's vector computed alone (so a cached vector is the one the ASV
# gets in any company), so a sample's numbers are the same bit for bit whatever else the table
# holds and in whatever order, at two to three times the time on a CPU.
PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp64": torch.float64}
RELATIVE_TOLERANCE = 1e-5


class PredictionError(UserError):
    """A prediction request that cannot be served (e.g. a target from an encoder)."""

    problem = "invalid-prediction-request"


class Predictor:
    """A loaded model ready to predict (the service keeps these in an LRU cache).

    A prediction is a function of the sample's counts and the model alone: ASVs are ranked
    with ties broken by sequence, a sample deeper than the training depth is rarefied with a
    seed from its content (not its row), and the arithmetic is that of ``precision`` (see
    :data:`PRECISIONS`: float32 within :data:`RELATIVE_TOLERANCE`, or float64 bit for bit).
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        device: str | torch.device = "cpu",
        vector_cache: int = 0,
        precision: str = "fp32",
    ) -> None:
        """``vector_cache``: keep the vectors of up to this many ASVs between calls (0: off);
        the service turns it on, the command-line tool predicts once and leaves it off.
        ``precision``: "fp32" or "fp64" (:data:`PRECISIONS`)."""
        if precision not in PRECISIONS:
            raise PredictionError(
                f"precision must be 'fp32' or 'fp64' (exact, bit for bit), got {precision!r}"
            )
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.exact = precision == "fp64"
        model = build_model(checkpoint).to(self.device, dtype=self.dtype)
        self.model: SequenceEncoder | SequenceRegressor = model
        self.model.eval()
        pre = checkpoint.preprocessing
        self.max_bp = int(pre["max_bp"])
        self.token_limit = int(pre["token_limit"])
        self.truncate = bool(pre.get("truncate", False))
        self.depth = None if pre.get("rarefaction_depth") is None else int(pre["rarefaction_depth"])
        self.vector_cache = AsvVectorCache(vector_cache) if vector_cache > 0 else None
        # each vocabulary sequence's row (from 1), built once: a loaded model serves many calls
        vocabulary = checkpoint.vocabulary
        self._vocabulary = (
            None
            if vocabulary is None
            else {sequence: row for row, sequence in enumerate(vocabulary, start=1)}
        )

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        vector_cache: int = 0,
        precision: str = "fp32",
    ) -> Predictor:
        return cls(
            load_checkpoint(path), device=device, vector_cache=vector_cache, precision=precision
        )

    @property
    def kind(self) -> str:
        return self.checkpoint.kind

    def memory_bytes(self) -> int:
        """Parameters and buffers, plus the vector cache when full."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        cache = 0 if self.vector_cache is None else self.vector_cache.capacity * self._dim
        forest = 0 if self.checkpoint.forest is None else self.checkpoint.forest.memory_bytes()
        weights = sum(t.numel() * t.element_size() for t in tensors)
        return weights + cache * self.dtype.itemsize + forest

    @property
    def _dim(self) -> int:
        return int(self.checkpoint.config.dim)

    def predict(
        self,
        table: FeatureTable,
        sequences: Sequence[str],
        *,
        passes: int | None = None,
        seed: int = 0,
        embeddings: bool = False,
        batch_size: int = 64,
    ) -> PredictionResult:
        """Predict every sample of ``table`` (``sequences``: one DNA string per feature).

        ``passes``: rarefaction passes averaged per sample (default 1);
        only samples deeper than the training depth differ between passes. ``batch_size``:
        samples per model call (the exact mode runs each sample alone)."""
        passes = 1 if passes is None else passes
        self._check_request(table, sequences, passes, embeddings)
        depths = table.depths()  # [n_samples]
        tokens = tokenize(sequences, max_bp=self.max_bp, truncate=self.truncate)
        collate = Collator(
            tokens, token_limit=self.token_limit, vocabulary=self._vocabulary_rows(sequences)
        )
        reads = _Reads(table, sequences, sequence_ranks(sequences))
        # Later passes re-read a chunk's ASVs (rarefaction only drops some): with a cache, K
        # passes cost one nucleotide-encoder run per chunk and K runs of the sample encoder.
        # The exact mode runs one sample at a time: a cache encodes an ASV the samples share
        # once, not once per sample.
        cache = self.vector_cache
        if cache is None and (passes > 1 or self.exact):
            cache = AsvVectorCache(DEFAULT_CAPACITY)
        if self.exact:
            batch_size = 1
        deep = np.zeros(table.n_samples, dtype=bool)
        if self.depth is not None:
            deep = depths > self.depth
        outputs: dict[str, np.ndarray] = {}  # key -> [K, n, ...]
        coverage: list[tuple[int, int, float]] = []
        for start in range(0, table.n_samples, batch_size):
            chunk = np.arange(start, min(start + batch_size, table.n_samples))
            for p in range(passes):
                # a sample at or below the training depth is not rarefied: every pass is pass 0
                rows = chunk if p == 0 else chunk[deep[chunk]]
                if rows.size:
                    samples = [self._sample(reads, int(row), seed, p) for row in rows]
                    if p == 0:
                        coverage.extend(self._coverage(s) for s in samples)
                    parts = self._run(collate(samples), embeddings, cache)
                    parts.update(self._blend(parts, samples, reads))
                    for key, value in parts.items():
                        store = outputs.setdefault(
                            key, np.zeros((passes, table.n_samples, *value.shape[1:]))
                        )
                        store[p, rows] = value
                if p > 0:
                    for store in outputs.values():
                        store[p, chunk[~deep[chunk]]] = store[0, chunk[~deep[chunk]]]
        return self._assemble(table, outputs, coverage)

    def _check_request(
        self, table: FeatureTable, sequences: Sequence[str], passes: int, embeddings: bool
    ) -> None:
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
        empty = [table.sample_ids[i] for i in np.flatnonzero(table.depths() == 0)]
        if empty:
            raise PredictionError(
                f"{len(empty)} samples have no reads ({preview(empty)}): nothing can be "
                "predicted from them; remove them from the table"
            )

    def samples(
        self,
        table: FeatureTable,
        sequences: Sequence[str],
        *,
        seed: int = 0,
        rarefaction_pass: int = 0,
    ) -> list[Sample]:
        """Every sample of ``table`` as the model reads it: rarefied when deeper than the
        training depth, its ASVs in rank order."""
        reads = _Reads(table, sequences, sequence_ranks(sequences))
        return [self._sample(reads, row, seed, rarefaction_pass) for row in range(table.n_samples)]

    def _sample(self, reads: _Reads, row: int, seed: int, rarefaction_pass: int) -> Sample:
        csr = reads.table.counts
        lo, hi = csr.indptr[row], csr.indptr[row + 1]
        features, counts = csr.indices[lo:hi].astype(np.int64), csr.data[lo:hi].astype(np.int64)
        present = counts > 0  # a stored zero is no read: it must not take a rank
        features, counts = features[present], counts[present]
        if self.depth is not None and counts.sum() > self.depth:
            features, counts = rarefy_by_content(
                features,
                counts,
                self.depth,
                sequences=reads.sequences,
                ranks=reads.ranks,
                seed=seed,
                draw=rarefaction_pass,
            )
        features, counts = select_asvs(
            features, counts, ranks=reads.ranks, token_limit=len(features)
        )
        return Sample(row, reads.table.sample_ids[row], features, counts)

    def _coverage(self, sample: Sample) -> tuple[int, int, float]:
        total = int(sample.counts.sum())
        used = sample.counts[: self.token_limit]
        fraction = float(used.sum() / total) if total else 0.0
        return len(sample.features), len(used), fraction

    @torch.no_grad()
    def _run(
        self, batch: Batch, embeddings: bool, cache: AsvVectorCache | None
    ) -> dict[str, np.ndarray]:
        with _ieee_matmuls(self.device):
            return self._forward(batch, embeddings, cache)

    def _forward(
        self, batch: Batch, embeddings: bool, cache: AsvVectorCache | None
    ) -> dict[str, np.ndarray]:
        batch = batch.to(self.device)
        batch = dataclasses.replace(batch, abundance=batch.abundance.to(self.dtype))
        model = self.model
        vectors = None
        if cache is not None:  # always, in the exact mode (predict)
            encode = self._each_alone if self.exact else self._together
            vectors = cache.vectors(batch.tokens, encode)
        out: dict[str, np.ndarray] = {}
        if isinstance(model, SequenceRegressor):
            result = model(batch, asv_vectors=vectors)
            assert result.target is not None
            # the head's output to float64 first: probabilities that sum to 1 and target units
            # without a second rounding
            target = result.target.to(torch.float64)
            if model.kind == "classifier":
                out["probabilities"] = torch.softmax(target, -1).cpu().numpy()
            else:
                out["prediction"] = model.target_norm.destandardize(target).cpu().numpy()
            embedding = result.embedding
        else:
            embedding = model.encode(batch, asv_vectors=vectors).embedding
        if embeddings:
            out["embedding"] = embedding.cpu().numpy()
        return out

    @property
    def _encoder(self) -> SequenceEncoder:
        model = self.model
        return model.base if isinstance(model, SequenceRegressor) else model

    def _together(self, tokens: torch.Tensor) -> torch.Tensor:
        """Vectors ``[U, D]`` of ``tokens [U, L]``, the ASVs encoded as one batch."""
        return self._encoder.nucleotide(tokens).vectors

    def _each_alone(self, tokens: torch.Tensor) -> torch.Tensor:
        """Vectors ``[U, D]`` of ``tokens [U, L]``, each ASV encoded alone at its own length:
        the exact mode's, the same bits for an ASV in any batch."""
        nucleotide = self._encoder.nucleotide
        lengths = (tokens != PAD).sum(dim=1).tolist()
        return torch.cat([nucleotide(tokens[i : i + 1, :n]).vectors for i, n in enumerate(lengths)])

    def _blend(
        self, parts: dict[str, np.ndarray], samples: list[Sample], reads: _Reads
    ) -> dict[str, np.ndarray]:
        """An ensemble's forest on the same rarefied reads the model read, and the blend
        ``w * AAM + (1 - w) * forest`` in place of the model's own output (which is kept as
        the ``aam`` component)."""
        forest = self.checkpoint.forest
        if forest is None:
            return {}
        key = "prediction" if "prediction" in parts else "probabilities"
        counts = sp.csr_matrix(
            (
                np.concatenate([s.counts for s in samples]),
                np.concatenate([s.features for s in samples]),
                np.concatenate([[0], np.cumsum([len(s.features) for s in samples])]),
            ),
            shape=(len(samples), reads.table.n_features),
        )  # [n, n_features]: every read the model's input came from
        n_classes = len(self.checkpoint.classes or [])
        trees = forest.predict(counts, reads.sequences, n_classes)  # [n] or [n, K]
        aam = parts[key]  # [n, 1] or [n, K]
        trees = trees.reshape(aam.shape)
        return {
            key: forest.weight * aam + (1.0 - forest.weight) * trees,
            "aam": aam,
            "forest": trees,
        }

    def _assemble(
        self,
        table: FeatureTable,
        outputs: dict[str, np.ndarray],
        coverage: list[tuple[int, int, float]],
    ) -> PredictionResult:
        prediction, probabilities, embedding = (
            outputs.get("prediction"),
            outputs.get("probabilities"),
            outputs.get("embedding"),
        )  # each [K, n, .]
        classes = self.checkpoint.classes or []
        depths = table.depths()
        results = []
        for i, sample_id in enumerate(table.sample_ids):
            warnings = []
            if self.depth is not None and depths[i] < self.depth:
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
            if prediction is not None:
                entry["prediction"] = prediction[:, i].mean(axis=0).tolist()
                if len(prediction) > 1:
                    # about the first pass: identical passes give exactly 0, not a rounding
                    spread = prediction[:, i] - prediction[:1, i]  # [passes, out_dim]
                    entry["prediction_std"] = spread.std(axis=0).tolist()
            if probabilities is not None:
                mean = probabilities[:, i].mean(axis=0)
                entry["label"] = classes[int(mean.argmax())]
                entry["probabilities"] = {c: float(v) for c, v in zip(classes, mean, strict=True)}
                if len(probabilities) > 1:
                    std = probabilities[:, i].std(axis=0)
                    entry["probabilities_std"] = {
                        c: float(v) for c, v in zip(classes, std, strict=True)
                    }
            if embedding is not None:
                entry["embedding"] = embedding[:, i].mean(axis=0).tolist()
            if "aam" in outputs:
                entry["components"] = {
                    name: self._component(outputs[name][:, i].mean(axis=0), classes)
                    for name in ("aam", "forest")
                }
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

    def _vocabulary_rows(self, sequences: Sequence[str]) -> np.ndarray | None:
        """Each feature's row of the model's ASV vocabulary (0: an ASV it never saw)."""
        index = self._vocabulary
        if index is None:
            return None
        return np.array([index.get(s.upper(), 0) for s in sequences], dtype=np.int64)

    def _component(self, values: np.ndarray, classes: list[str]) -> Any:
        if self.kind == "classifier":
            return {c: float(v) for c, v in zip(classes, values, strict=True)}
        return values.tolist()


@contextlib.contextmanager
def _ieee_matmuls(device: torch.device) -> Iterator[None]:
    """CUDA matmuls and convolutions in IEEE float32 for the call: training turns TF32 on for
    the process (aam_core.train.loop), and its 10-bit mantissa would break the tolerance."""
    if device.type != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


@dataclass(frozen=True, eq=False)
class _Reads:
    """A table with what ranking and content-seeded rarefaction need: one sequence per
    feature and each feature's rank among them."""

    table: FeatureTable
    sequences: Sequence[str]
    ranks: np.ndarray  # int64 [n_features]
