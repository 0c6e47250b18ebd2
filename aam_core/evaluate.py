"""``aam evaluate``: metrics of a trained model on a labelled table, computed on its
predictions (the prediction path, not the training one) with the training run's metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aam_core.io import align_metadata
from aam_core.io.types import FeatureTable
from aam_core.predict import PredictionError, Predictor
from aam_core.train.metrics import ClassificationMetrics, RegressionMetrics


def evaluate(
    predictor: Predictor,
    table: FeatureTable,
    sequences: Sequence[str],
    metadata: Any,
    *,
    column: str | None = None,
    passes: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of a regressor or classifier on a labelled table (``metadata``: an
    :class:`aam_core.io.Metadata`), with the same preprocessing as prediction. Samples without
    a label, without reads or with a class the model does not know are left out and counted."""
    target = predictor.checkpoint.target
    if predictor.kind == "encoder" or target is None:
        raise PredictionError("an encoder has no target to evaluate; use a regressor/classifier")
    column = column or str(target["column"])
    if column not in [c.name for c in metadata.columns]:
        raise PredictionError(f"column {column!r} is not in the metadata")
    frame, _, _ = align_metadata(metadata, table.sample_ids)
    result = predictor.predict(table, sequences, passes=passes, seed=seed)
    skipped = {"no_label": 0, "no_reads": 0, "unknown_class": 0}
    if predictor.kind == "classifier":
        classes = predictor.checkpoint.classes or []
        cls_metrics = ClassificationMetrics(len(classes))
        for sample, label in zip(result.samples, frame[column], strict=True):
            value = (
                None if label is None or (isinstance(label, float) and np.isnan(label)) else label
            )
            if value is not None and not isinstance(value, str):
                value = str(int(value)) if float(value).is_integer() else str(value)
            if value is None:
                skipped["no_label"] += 1
            elif sample.probabilities is None:
                skipped["no_reads"] += 1
            elif value not in classes:
                skipped["unknown_class"] += 1
            else:
                probs = [sample.probabilities[c] for c in classes]
                cls_metrics.update(np.array([probs]), [classes.index(value)])
        metrics = cls_metrics.compute()
    else:
        reg_metrics = RegressionMetrics()
        values = frame[column].to_numpy(dtype=np.float64)
        for sample, value in zip(result.samples, values, strict=True):
            if not np.isfinite(value):
                skipped["no_label"] += 1
            elif sample.prediction is None:
                skipped["no_reads"] += 1
            else:
                reg_metrics.update(np.array([sample.prediction[0]]), np.array([value]))
        metrics = reg_metrics.compute()
    n_used = len(result.samples) - sum(skipped.values())
    return {"column": column, "n_samples": n_used, "skipped": skipped, "metrics": metrics}
