"""What a prediction returns, per sample, and how it is written (TSV or JSON).

Every prediction table has one layout, :func:`prediction_frame`'s: a predict job's
``predictions.tsv``, a training run's ``validation_predictions.tsv`` and a cross-validation's
out-of-fold ``predictions.tsv``. Its columns are ``sample_id``, the truth where it is known
(``true``), the prediction in q2-sample-classifier's column (``prediction``: a regressor's
value or a classifier's label; ``prediction_<k>`` for a model of several outputs) and each
class's probability (``prob_<class>``). The q2-sample-classifier files themselves
(:func:`q2_tables`) are written beside a predict job's table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from aam_core.io.files import atomic_write, json_text

SAMPLE_ID, TRUE, PREDICTION = "sample_id", "true", "prediction"


def probability_column(name: str) -> str:
    return f"prob_{name}"


def prediction_frame(
    sample_ids: Sequence[str],
    *,
    true: Any = None,
    values: Any = None,
    labels: Iterable[Any] | None = None,
    probabilities: Any = None,
    classes: Sequence[str] = (),
) -> pd.DataFrame:
    """The prediction table of ``sample_ids``: a regressor's ``values`` ([n] or [n, k]) or a
    classifier's ``labels`` with ``probabilities`` ([n, len(classes)]), and ``true`` (values or
    labels, as the prediction) where known. Columns not given are left out."""
    frame = pd.DataFrame({SAMPLE_ID: [str(s) for s in sample_ids]})
    if labels is not None or classes:
        for name, given in ((TRUE, true), (PREDICTION, labels)):
            if given is not None:
                frame[name] = [str(v) for v in given]
        if probabilities is not None:
            prob = np.asarray(probabilities, dtype=np.float64)
            for k, name in enumerate(classes):
                frame[probability_column(name)] = prob[:, k]
        return frame
    for name, given in ((TRUE, true), (PREDICTION, values)):
        if given is None:
            continue
        array = np.asarray(given, dtype=np.float64).reshape(len(frame), -1)  # [n, k]
        if array.shape[1] == 1:
            frame[name] = array[:, 0]
        else:
            for k in range(array.shape[1]):
                frame[f"{name}_{k}"] = array[:, k]
    return frame


class Predicted(Protocol):
    """A sample's prediction as any layer holds it (this module's SamplePrediction, the REST
    answer's entry): a regressor's value(s), or a classifier's label and class probabilities."""

    @property
    def sample_id(self) -> str: ...
    @property
    def prediction(self) -> Any: ...
    @property
    def label(self) -> str | None: ...
    @property
    def probabilities(self) -> Mapping[str, float] | None: ...


def samples_frame(samples: Sequence[Predicted]) -> pd.DataFrame:
    """:func:`prediction_frame` of per-sample predictions: labels and probabilities when every
    sample has a label, values when every sample has one; otherwise the IDs alone."""
    labelled = bool(samples) and all(s.label is not None for s in samples)
    valued = bool(samples) and all(s.prediction is not None for s in samples)
    classes = list(samples[0].probabilities or {}) if labelled else []
    return prediction_frame(
        [s.sample_id for s in samples],
        values=[s.prediction for s in samples] if valued and not labelled else None,
        labels=[str(s.label) for s in samples] if labelled else None,
        probabilities=[[(s.probabilities or {})[c] for c in classes] for s in samples]
        if classes
        else None,
        classes=classes,
    )


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
        """The prediction table (:func:`prediction_frame`), then per sample the spread over
        rarefaction passes, the embedding, an ensemble's parts and what the model read."""
        frame = samples_frame(self.samples)
        extra = pd.DataFrame([_extra_columns(s) for s in self.samples], index=frame.index)
        return pd.concat([frame, extra], axis=1)


def _extra_columns(s: SamplePrediction) -> dict[str, Any]:
    row: dict[str, Any] = {}
    many = s.prediction is not None and len(s.prediction) > 1
    for i, v in enumerate(s.prediction_std or []):
        row[f"prediction_std_{i}" if many else "prediction_std"] = v
    for name, p in (s.probabilities_std or {}).items():
        row[f"prob_std_{name}"] = p
    for i, v in enumerate(s.embedding or []):
        row[f"embedding_{i}"] = v
    for part, value in (s.components or {}).items():  # an ensemble's parts
        if isinstance(value, dict):
            row.update({f"{part}_prob_{name}": p for name, p in value.items()})
        else:
            suffix = [f"_{i}" if len(value) > 1 else "" for i in range(len(value))]
            row.update({f"{part}_prediction{end}": v for end, v in zip(suffix, value, strict=True)})
    row.update(
        n_features=s.n_features,
        n_features_used=s.n_features_used,
        fraction_reads_used=s.fraction_reads_used,
        warnings="; ".join(s.warnings),
    )
    return row


# q2-sample-classifier's file layouts, which ``qiime tools import`` takes: PredictionsFormat
# (SampleData[RegressorPredictions] / SampleData[ClassifierPredictions]) and
# ProbabilitiesFormat (SampleData[Probabilities])
Q2_PREDICTIONS = "predictions.tsv"
Q2_PROBABILITIES = "class_probabilities.tsv"


def q2_dir(path: str | Path) -> Path:
    """Where ``write_predictions(result, path)`` puts the q2-sample-classifier files:
    ``preds.tsv`` -> ``preds_q2/``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_q2")


def q2_tables(result: PredictionResult) -> dict[str, str]:
    """The q2-sample-classifier files of a prediction, file name -> text: ``predictions.tsv``
    (header ``id<TAB>prediction``; a regressor's value or a classifier's label) and, for a
    classifier, ``class_probabilities.tsv`` (header ``id<TAB><class>...``). None for an
    encoder or a regressor with several outputs (q2 has no layout for them)."""
    tables: dict[str, str] = {}
    samples = result.samples
    names = [s.sample_id for s in samples] + [str(s.label) for s in samples]
    names += list(samples[0].probabilities or {}) if samples else []
    if not all(_plain(n) for n in names):
        return tables  # a tab, line break or leading '#' that q2's plain TSV cannot hold
    if samples and all(s.label is not None for s in samples):
        labels = ([s.sample_id, str(s.label)] for s in samples)
        tables[Q2_PREDICTIONS] = _tsv(["id", "prediction"], labels)
        classes = list(samples[0].probabilities or {})
        if classes:
            rows = (
                [s.sample_id, *(repr(float((s.probabilities or {})[c])) for c in classes)]
                for s in samples
            )
            tables[Q2_PROBABILITIES] = _tsv(["id", *classes], rows)
    elif samples and all(s.prediction is not None and len(s.prediction) == 1 for s in samples):
        rows = ([s.sample_id, repr(float((s.prediction or [])[0]))] for s in samples)
        tables[Q2_PREDICTIONS] = _tsv(["id", "prediction"], rows)
    return tables


def _plain(cell: str) -> bool:
    return not cell.startswith("#") and not any(c in cell for c in "\t\r\n")


def _tsv(header: list[str], rows: Iterable[list[str]]) -> str:
    # plain tab-joined cells: q2's format validators split lines on tabs, without quoting
    return "".join("\t".join(cells) + "\n" for cells in [header, *rows])


def write_q2_predictions(result: PredictionResult, directory: str | Path) -> list[Path]:
    """Write ``q2_tables(result)`` into ``directory`` (atomically, each); the paths written."""
    tables = q2_tables(result)
    directory = Path(directory)
    written = []
    for name, text in tables.items():
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_write(directory / name) as handle:
            handle.write(text)
        written.append(directory / name)
    return written


def write_predictions(result: PredictionResult, path: str | Path, fmt: str = "tsv") -> None:
    """One row per sample (TSV), or the samples as JSON (``fmt="json"``), written atomically
    (a reader never sees half a file); beside it, in ``q2_dir(path)``, the same predictions in
    q2-sample-classifier's layouts (``write_q2_predictions``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_q2_predictions(result, q2_dir(path))
    with atomic_write(path) as handle:
        if fmt == "json":
            samples = [dataclasses.asdict(s) for s in result.samples]
            payload = {"kind": result.kind, "target": result.target, "samples": samples}
            handle.write(json_text(payload, indent=2) + "\n")
        else:
            result.to_frame().to_csv(handle, sep="\t", index=False)
