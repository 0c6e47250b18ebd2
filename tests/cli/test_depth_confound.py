"""``aam train`` on a generated study whose ``batch`` labels follow sequencing depth (deep
samples one class, shallow the other) and whose ``age`` does not: the first run warns in its
log, report.json, checkpoint and card; the second shows the depth model's figures and no
warning. The depth figures are recomputed from the raw table and the run's split.tsv."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import Result

from aam_core.checkpoint import load_checkpoint
from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.io import read_table
from aam_core.model_card import card_markdown
from aam_core.train.baselines import CONFOUNDED_R2, fit_depth_baseline
from tests.cli.conftest import FAST, Study, aam, read_split


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """60 samples of 2,000 to 20,000 reads (none below the runs' rarefaction depth, 2,000);
    ``batch`` is "deep" above the median depth, "shallow" below."""
    spec = SyntheticSpec(n_samples=60, n_asvs=60, asvs_per_sample=12,
                         depth_range=(2000, 20000), seed=8)  # fmt: skip
    generated = generate(spec)
    depths = generated.table.depths()
    batch = np.where(depths > np.median(depths), "deep", "shallow")
    metadata = generated.metadata.assign(batch=batch)
    paths = write_study(dataclasses.replace(generated, metadata=metadata),
                        tmp_path_factory.mktemp("depth_study"))  # fmt: skip
    return Study(paths["table"], paths["tree"], paths["metadata"], metadata)


def train(study: Study, out: Path, target: str, task: str) -> Result:
    """Two epochs, no random forest (slow, and not what is checked here), log on stderr."""
    return aam("train", "--table", study.table, "--metadata", study.metadata, "--target", target,
               "--task", task, "--out", out, *FAST, "--epochs", 2, "--seed", 3,
               "--no-baseline")  # fmt: skip


def by_hand(study: Study, run: Path, task: str) -> dict[str, Any]:
    """The depth model refitted from the table's raw depths and the run's split."""
    table = read_table(study.table)
    depth_of = dict(zip(table.sample_ids, table.depths(), strict=True))
    split = read_split(run)
    order = [*split["train"], *split["validation"]]
    depths = np.array([depth_of[s] for s in order])  # [n] train rows first
    train = np.arange(len(split["train"]))
    validation = np.arange(len(split["train"]), len(order))
    if task == "classification":
        classes = load_checkpoint(run / "checkpoints" / "best.pt").classes
        assert classes is not None
        labels = study.frame.loc[order, "batch"].map(list(classes).index).to_numpy()
        return fit_depth_baseline(depths, labels, train, validation, task=task, n_classes=2)
    targets = study.frame.loc[order, "age"].to_numpy()
    return fit_depth_baseline(depths, targets, train, validation, task="regression")


def card(run: Path) -> tuple[dict[str, Any], str]:
    checkpoint = run / "checkpoints" / "best.pt"
    as_json = json.loads(aam("card", "--checkpoint", checkpoint, "--format", "json").stdout)
    return as_json, aam("card", "--checkpoint", checkpoint).stdout


def trained(
    study: Study, run: Path, target: str, task: str
) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``aam train`` of ``target``: its log, report.json, the depth model and the verdict it
    reported, and the depth model refit by hand on its split."""
    log = train(study, run, target, task).stderr
    report = json.loads((run / "report.json").read_text())
    expected = by_hand(study, run, task)
    return log, report, report["depth_baseline"], report["depth_confound"], expected


def test_labels_that_follow_depth_are_flagged_everywhere(study: Study, tmp_path: Path) -> None:
    run = tmp_path / "batch"
    log, report, depth, verdict, expected = trained(study, run, "batch", "classification")
    assert depth["metrics"] == pytest.approx(expected["metrics"], rel=1e-9)
    for key in ("log_depth_mean", "log_depth_std", "intercept", "slope"):
        assert depth["coefficients"][key] == pytest.approx(expected["coefficients"][key])
    assert depth["metrics"]["roc_auc"] == 1.0  # the raw depths, not the rarefied ones
    model_auc = report["validation"]["roc_auc"]
    assert verdict == {
        "confounded": True,
        "metric": "roc_auc",
        "depth": 1.0,
        "model": model_auc,
        "reason": "depth alone reaches ROC AUC 1 (>= 0.75)",
        "message": "sequencing depth alone predicts 'batch': a model of log(reads per sample) "
        f"alone reaches validation ROC AUC 1.00 (this model {model_auc:.2f}); the labels "
        "follow sequencing depth (a batch effect), so validation figures may not carry over "
        "to samples sequenced otherwise",
    }
    assert report["warnings"][-1] == verdict["message"]
    assert f"warning: {verdict['message']}\n" in log
    accuracy = expected["metrics"]["accuracy"]
    assert f"baseline (log reads per sample alone) validation: accuracy {accuracy:.4g}" in log

    metrics = load_checkpoint(run / "checkpoints" / "best.pt").metrics
    assert metrics["depth_confound"] == verdict
    assert metrics["baselines"]["depth"]["validation"] == depth["metrics"]
    assert metrics["baselines"]["depth"]["train"] == depth["train_metrics"]

    as_json, markdown = card(run)
    assert as_json["metrics"]["depth_confound"] == verdict
    assert as_json["metrics"]["baselines"]["depth"] == depth["metrics"]
    assert markdown == card_markdown(as_json)
    assert markdown.startswith(
        f"# Model card: classifier of batch\n\n**Warning:** {verdict['message']}.\n\n## Model\n"
    )
    assert "| metric | model | constant | sequencing depth alone |" in markdown
    assert f"| roc_auc | {model_auc:.4g} | 0.5 | 1 |" in markdown


def test_labels_that_do_not_follow_depth_show_the_figure_without_a_warning(
    study: Study, tmp_path: Path
) -> None:
    run = tmp_path / "age"
    log, report, depth, verdict, expected = trained(study, run, "age", "regression")
    # the run holds regression targets as float32: agreement to its precision
    assert depth["metrics"] == pytest.approx(expected["metrics"], rel=1e-6)
    assert depth["metrics"]["r2"] < CONFOUNDED_R2
    assert verdict["confounded"] is False and verdict["message"] is None
    assert verdict["depth"] == depth["metrics"]["r2"]
    assert not any("sequencing depth alone" in w for w in report["warnings"])
    assert "sequencing depth alone" not in log
    mae = depth["metrics"]["mae"]
    assert f"baseline (log reads per sample alone) validation: mae {mae:.4g}" in log

    metrics = load_checkpoint(run / "checkpoints" / "best.pt").metrics
    assert metrics["depth_confound"] == verdict
    as_json, markdown = card(run)
    assert as_json["metrics"]["baselines"]["depth"] == depth["metrics"]
    assert "**Warning:**" not in markdown
    assert f"| mae | {report['validation']['mae']:.4g} |" in markdown
    assert "sequencing depth alone |" in markdown
