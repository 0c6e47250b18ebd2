"""Per-epoch bookkeeping shared by training and evaluation: loss averages, metrics on
de-standardised values, and (optionally) the predictions themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from aam_core.data.batching import Batch
from aam_core.model import ModelOutput, SequenceEncoder, SequenceRegressor
from aam_core.train.losses import LossResult
from aam_core.train.metrics import ClassificationMetrics, PretrainMetrics, RegressionMetrics


def base_of(model: SequenceEncoder | SequenceRegressor) -> SequenceEncoder:
    return model.base if isinstance(model, SequenceRegressor) else model


def destandardized_predictions(
    model: SequenceEncoder | SequenceRegressor, output: ModelOutput
) -> torch.Tensor | None:
    """Regression predictions in original units ``[B, k]``, class probabilities ``[B, K]``."""
    if not isinstance(model, SequenceRegressor) or output.target is None:
        return None
    if model.kind == "classifier":
        return torch.softmax(output.target.float(), dim=-1)
    return model.target_norm.destandardize(output.target.float())


@dataclass
class Tracker:
    """Accumulates one epoch (or one evaluation) over batches."""

    model: SequenceEncoder | SequenceRegressor
    keep_predictions: bool = False
    n_batches: int = 0
    loss_sum: float = 0.0
    component_sums: dict[str, float] = field(default_factory=dict)
    sample_ids: list[str] = field(default_factory=list)
    predictions: list[np.ndarray] = field(default_factory=list)
    truths: list[np.ndarray] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    # (predicted, true) UniFrac distances of the pairs scored at once, with keep_predictions
    distance_pairs: tuple[np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.pretrain = PretrainMetrics()
        self.regression = RegressionMetrics()
        n_classes = self.n_classes
        self.classification = ClassificationMetrics(n_classes) if n_classes else None

    @property
    def n_classes(self) -> int | None:
        m = self.model
        if isinstance(m, SequenceRegressor) and m.kind == "classifier":
            assert m.config.target is not None
            return m.config.target.out_dim
        return None

    def update(
        self, batch: Batch, output: ModelOutput, loss: LossResult | None, *, pairs: bool = True
    ) -> None:
        """Add a batch; ``pairs=False`` leaves its UniFrac pairs out (evaluation scores all
        pairs of the split at once instead, :func:`aam_core.train.evaluation.evaluate_rows`)."""
        self.n_batches += 1
        if loss is not None:
            self.loss_sum += float(loss.total.detach())
            for name, value in loss.component_values().items():
                self.component_sums[name] = self.component_sums.get(name, 0.0) + value
        if pairs and output.unifrac is not None and batch.unifrac is not None:
            self.pretrain.update_unifrac(output.unifrac, batch.unifrac)
        if output.faith_pd is not None and batch.faith_pd is not None:
            faith = base_of(self.model).faith_norm.destandardize(output.faith_pd.float())
            self.pretrain.update_faith_pd(faith, batch.faith_pd)
        if output.nucleotide_logits is not None and output.nucleotide_targets is not None:
            # counted on the device: moving [U, L, 4] logits to the host would cost more
            targets = output.nucleotide_targets
            chosen = targets >= 0
            hits = (output.nucleotide_logits.argmax(dim=-1) == targets) & chosen
            self.pretrain.add_nucleotide_counts(int(hits.sum()), int(chosen.sum()))
        predicted = destandardized_predictions(self.model, output)
        if predicted is not None and batch.target is not None:
            if self.classification is not None:
                self.classification.update(predicted, batch.target)
            else:
                self.regression.update(predicted, batch.target)
        if self.keep_predictions:
            self.sample_ids.extend(batch.sample_ids)
            self.embeddings.append(output.embedding.detach().float().cpu().numpy())
            if predicted is not None:
                self.predictions.append(predicted.detach().float().cpu().numpy())
            if batch.target is not None:
                self.truths.append(batch.target.detach().cpu().numpy())

    def merge(self, other: Tracker) -> None:
        self.n_batches += other.n_batches
        self.loss_sum += other.loss_sum
        for name, value in other.component_sums.items():
            self.component_sums[name] = self.component_sums.get(name, 0.0) + value
        self.pretrain.merge(other.pretrain)
        self.regression.merge(other.regression)
        if self.classification is not None and other.classification is not None:
            self.classification.merge(other.classification)
        self.sample_ids.extend(other.sample_ids)
        self.predictions.extend(other.predictions)
        self.truths.extend(other.truths)
        self.embeddings.extend(other.embeddings)

    def summary(self) -> dict[str, float]:
        """Mean loss and components per batch, plus every metric available."""
        out: dict[str, Any] = {}
        if self.n_batches and self.component_sums:
            out["loss"] = self.loss_sum / self.n_batches
            for name, value in self.component_sums.items():
                out[f"loss_{name}"] = value / self.n_batches
        out.update(self.pretrain.compute())
        out.update(self.regression.compute())
        if self.classification is not None:
            out.update(self.classification.compute())
        return out

    def state_for_gather(self) -> Tracker:
        """A copy without the model (what is sent between ranks)."""
        clone = Tracker.__new__(Tracker)
        clone.__dict__.update({k: v for k, v in self.__dict__.items() if k != "model"})
        clone.model = None  # type: ignore[assignment]
        return clone
