"""``aam demo``: the whole pipeline on a synthetic study, as a new user first runs it."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from tests.cli.conftest import aam


def _mae(text: str, label: str) -> float:
    match = re.search(rf"^  {label}\s+MAE\s+([0-9.]+)", text, flags=re.MULTILINE)
    assert match, f"no {label!r} line in:\n{text}"
    return float(match.group(1))


@pytest.mark.slow
def test_demo_beats_the_mean_and_shows_the_baseline(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    text = aam("demo", "--out", out, "--quiet").stdout
    model = _mae(text, r"AAM \(pretrained encoder, then trained on\)")
    forest = _mae(text, "random forest baseline")
    mean = _mae(text, "predicting the train mean")
    assert model <= 0.85 * mean, text
    assert 0 < forest < mean, text
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert len(predictions) == 160 and predictions["prediction"].notna().all()
    assert f"predictions: {out / 'predictions.tsv'}" in text
    assert (out / "train" / "checkpoints" / "best.pt").exists()
    # the printed MAE is that of the run's best checkpoint on its validation split
    truth = pd.read_csv(out / "train" / "validation_predictions.tsv", sep="\t")
    assert model == pytest.approx((truth["true"] - truth["prediction"]).abs().mean(), abs=0.006)
