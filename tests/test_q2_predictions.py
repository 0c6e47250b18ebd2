"""Prediction files in q2-sample-classifier's layouts (PredictionsFormat, ProbabilitiesFormat),
checked the way its format validators and transformers read them (no qiime2 dependency)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from aam_core.io.predictions import (
    PredictionResult,
    SamplePrediction,
    q2_dir,
    q2_tables,
    write_predictions,
)


def read_q2_predictions(path: Path, *, numeric: bool) -> dict[str, str | float]:
    """PredictionsFormat: header ``id<TAB>prediction``, then one row of exactly two fields per
    sample, IDs unique; a regressor's are numbers."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["id", "prediction"]
    assert len(lines) > 1, "at least one data record besides the header"
    rows: dict[str, str | float] = {}
    for line in lines[1:]:
        cells = line.strip().split("\t")
        assert len(cells) == 2, f"two fields per record, found {cells!r}"
        assert cells[0] and not cells[0].startswith("#") and cells[0] not in rows
        rows[cells[0]] = float(cells[1]) if numeric else cells[1]
    if numeric:
        assert all(math.isfinite(float(v)) for v in rows.values())
    return rows


def read_q2_probabilities(path: Path) -> tuple[list[str], dict[str, list[float]]]:
    """ProbabilitiesFormat: header ``id<TAB><class>...``, then per sample two or more fields,
    all numeric but the ID; here also probabilities in [0, 1] summing to 1, IDs unique."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    assert header[0] == "id" and len(header) >= 2 and len(set(header)) == len(header)
    rows: dict[str, list[float]] = {}
    for line in lines[1:]:
        cells = line.strip().split("\t")
        assert len(cells) == len(header)
        assert cells[0] and cells[0] not in rows
        rows[cells[0]] = [float(c) for c in cells[1:]]
        assert all(0.0 <= p <= 1.0 for p in rows[cells[0]])
        assert math.fsum(rows[cells[0]]) == pytest.approx(1.0, abs=1e-9)
    assert rows
    return header[1:], rows


def _classifier() -> PredictionResult:
    probs = [{"gut": 0.75, "oral": 0.25}, {"gut": 0.1, "oral": 0.9}]
    samples = [
        SamplePrediction("S.1", label="gut", probabilities=probs[0]),
        SamplePrediction("S 2", label="oral", probabilities=probs[1]),
    ]
    return PredictionResult("classifier", {"column": "site"}, samples)


def test_classifier_writes_predictions_and_class_probabilities(tmp_path: Path) -> None:
    out = tmp_path / "preds.tsv"
    write_predictions(_classifier(), out)
    assert q2_dir(out) == tmp_path / "preds_q2"
    assert sorted(p.name for p in q2_dir(out).iterdir()) == [
        "class_probabilities.tsv",
        "predictions.tsv",
    ]
    labels = read_q2_predictions(q2_dir(out) / "predictions.tsv", numeric=False)
    assert labels == {"S.1": "gut", "S 2": "oral"}
    classes, probs = read_q2_probabilities(q2_dir(out) / "class_probabilities.tsv")
    assert classes == ["gut", "oral"]
    assert probs == {"S.1": [0.75, 0.25], "S 2": [0.1, 0.9]}
    assert (q2_dir(out) / "class_probabilities.tsv").read_text() == (
        "id\tgut\toral\nS.1\t0.75\t0.25\nS 2\t0.1\t0.9\n"
    )
    assert out.read_text().startswith("sample_id\t")  # the AAM layout is unchanged


def test_regressor_writes_predictions_only(tmp_path: Path) -> None:
    samples = [SamplePrediction("a", prediction=[41.5]), SamplePrediction("b", prediction=[-3e-5])]
    out = tmp_path / "ages.json"
    write_predictions(PredictionResult("regressor", None, samples), out, "json")
    assert [p.name for p in q2_dir(out).iterdir()] == ["predictions.tsv"]
    text = (q2_dir(out) / "predictions.tsv").read_text()
    assert text == "id\tprediction\na\t41.5\nb\t-3e-05\n"
    assert read_q2_predictions(q2_dir(out) / "predictions.tsv", numeric=True) == {
        "a": 41.5,
        "b": -3e-05,
    }


@pytest.mark.parametrize(
    "samples",
    [
        [SamplePrediction("a", prediction=[1.0, 2.0])],  # several outputs: no q2 layout
        [SamplePrediction("a", embedding=[0.1, 0.2])],  # an encoder
        [SamplePrediction("a\tb", prediction=[1.0])],  # an ID a plain TSV cannot hold
        [SamplePrediction("#a", prediction=[1.0])],  # q2 would read the row as a comment
        [],
    ],
)
def test_no_q2_files_where_q2_has_no_layout(samples: list[SamplePrediction]) -> None:
    assert q2_tables(PredictionResult("regressor", None, samples)) == {}
