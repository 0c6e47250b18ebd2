"""Streaming metrics over batches, on de-standardised values (docs/design.md section 9).

Each accumulator keeps sums (or, for ROC AUC, the scores) so that batches can be added one at a
time and accumulators of several processes can be merged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score


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
