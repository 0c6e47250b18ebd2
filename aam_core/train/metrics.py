"""Streaming metrics over batches, on de-standardised values (docs/design.md section 9).

Each accumulator keeps sums (or, for ROC AUC, the scores) so that batches can be added one at a
time and accumulators of several processes can be merged. :class:`Tracker` feeds them a
model's batches (one epoch, or one evaluation): loss averages, the metrics, and optionally the
predictions themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from aam_core.data.batching import Batch
from aam_core.model import ModelOutput, SequenceEncoder, SequenceRegressor
from aam_core.train.losses import LossResult

Model = SequenceEncoder | SequenceRegressor


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


class RegressionMetrics:
    """MAE, RMSE, R² and Pearson r, averaged over outputs when there are several."""

    def __init__(self) -> None:
        self.n = 0
        self.sums: dict[str, np.ndarray] = {}

    def update(self, predicted: Any, true: Any) -> None:
        p = _np(predicted).reshape(len(_np(true)), -1)  # [n, k]
        t = _np(true).reshape(p.shape)  # [n, k]
        stats = {
            "abs": np.abs(p - t).sum(0),
            "sq": ((p - t) ** 2).sum(0),
            "t": t.sum(0),
            "tt": (t * t).sum(0),
            "p": p.sum(0),
            "pp": (p * p).sum(0),
            "pt": (p * t).sum(0),
        }
        for key, value in stats.items():
            self.sums[key] = self.sums.get(key, 0) + value
        self.n += p.shape[0]

    def merge(self, other: RegressionMetrics) -> None:
        for key, value in other.sums.items():
            self.sums[key] = self.sums.get(key, 0) + value
        self.n += other.n

    def compute(self) -> dict[str, float]:
        if self.n == 0:
            return {}
        s, n = self.sums, self.n
        sst = s["tt"] - s["t"] ** 2 / n  # [k]
        spp = s["pp"] - s["p"] ** 2 / n
        spt = s["pt"] - s["p"] * s["t"] / n
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(sst > 0, 1.0 - s["sq"] / sst, np.nan)
            r = np.where((sst > 0) & (spp > 0), spt / np.sqrt(sst * spp), np.nan)
        return {
            "mae": float(np.mean(s["abs"] / n)),
            "rmse": float(np.mean(np.sqrt(s["sq"] / n))),
            "r2": float(np.mean(r2)),
            "pearson_r": float(np.mean(r)),
        }


class ClassificationMetrics:
    """Accuracy, macro-F1 (from a streaming confusion matrix) and ROC AUC (one-vs-rest, macro;
    NaN while a class is missing from the labels seen)."""

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes
        self.confusion = np.zeros((n_classes, n_classes), dtype=np.int64)  # [true, predicted]
        self.probabilities: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def update(self, probabilities: Any, labels: Any) -> None:
        prob = _np(probabilities).reshape(-1, self.n_classes)  # [n, K]
        y = _np(labels).astype(np.int64).ravel()  # [n]
        np.add.at(self.confusion, (y, prob.argmax(axis=1)), 1)
        self.probabilities.append(prob)
        self.labels.append(y)

    def merge(self, other: ClassificationMetrics) -> None:
        self.confusion += other.confusion
        self.probabilities.extend(other.probabilities)
        self.labels.extend(other.labels)

    def compute(self) -> dict[str, float]:
        total = self.confusion.sum()
        if total == 0:
            return {}
        tp = np.diag(self.confusion).astype(np.float64)
        predicted = self.confusion.sum(axis=0)
        actual = self.confusion.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(predicted + actual > 0, 2 * tp / (predicted + actual), 0.0)
        labels = np.concatenate(self.labels)
        prob = np.concatenate(self.probabilities)
        auc = float("nan")
        if np.unique(labels).size == self.n_classes:
            if self.n_classes == 2:
                auc = float(roc_auc_score(labels, prob[:, 1]))
            else:
                normalised = prob / prob.sum(axis=1, keepdims=True)
                auc = float(roc_auc_score(labels, normalised, multi_class="ovr", average="macro"))
        return {
            "accuracy": float(tp.sum() / total),
            "macro_f1": float(f1[actual > 0].mean()) if (actual > 0).any() else 0.0,
            "roc_auc": auc,
        }


class PretrainMetrics:
    """UniFrac MAE, R² and Pearson r over the pairs i < j, Faith PD MAE, masked-nucleotide
    accuracy."""

    def __init__(self) -> None:
        self.pairs = RegressionMetrics()
        self.faith = RegressionMetrics()
        self.nucleotide_correct = 0
        self.nucleotide_total = 0

    def update_unifrac(self, predicted: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
        """Add the pairs i < j of distance matrices ``[n, n]``; returns them, ``[n_pairs]``
        each (predicted, true)."""
        p, t = _np(predicted), _np(true)
        i, j = np.triu_indices(p.shape[0], k=1)
        if i.size:
            self.pairs.update(p[i, j], t[i, j])
        return p[i, j], t[i, j]

    def update_faith_pd(self, predicted: Any, true: Any) -> None:
        self.faith.update(predicted, true)

    def add_nucleotide_counts(self, correct: int, total: int) -> None:
        self.nucleotide_correct += correct
        self.nucleotide_total += total

    def merge(self, other: PretrainMetrics) -> None:
        self.pairs.merge(other.pairs)
        self.faith.merge(other.faith)
        self.nucleotide_correct += other.nucleotide_correct
        self.nucleotide_total += other.nucleotide_total

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        pairs = self.pairs.compute()
        if pairs:
            out["unifrac_mae"], out["unifrac_r2"] = pairs["mae"], pairs["r2"]
            out["unifrac_pearson_r"] = pairs["pearson_r"]
        faith = self.faith.compute()
        if faith:
            out["faith_pd_mae"] = faith["mae"]
        if self.nucleotide_total:
            out["nucleotide_accuracy"] = self.nucleotide_correct / self.nucleotide_total
        return out


# -- a model's batches ------------------------------------------------------------------


def base_of(model: Model) -> SequenceEncoder:
    return model.base if isinstance(model, SequenceRegressor) else model


def destandardized_predictions(model: Model, output: ModelOutput) -> torch.Tensor | None:
    """Regression predictions in original units ``[B, k]``, class probabilities ``[B, K]``."""
    if not isinstance(model, SequenceRegressor) or output.target is None:
        return None
    if model.kind == "classifier":
        return torch.softmax(output.target.float(), dim=-1)
    return model.target_norm.destandardize(output.target.float())


@dataclass
class Tracker:
    """Accumulates one epoch (or one evaluation) over batches."""

    model: Model
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
        pairs of the split at once instead, :func:`aam_core.train.loop.evaluate_rows`)."""
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
