"""``aam cross-validate`` on a tiny synthetic study: the out-of-fold predictions cover every
usable sample once per repeat and model, no subject is on both sides of a fold, the report's
figures are those of the predictions it wrote, the plots and the refitted model exist, and a
bad request ends with one ``error:`` line before any work."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error
from typer.testing import Result

from aam_core.checkpoint import load_checkpoint
from aam_core.cli.output import cv_summary
from aam_core.crossval import models as cv_models
from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from tests.cli.conftest import aam

MODELS = ["aam", "forest", "linear", "constant", "depth"]
FOLDS, REPEATS, MIN_READS = 3, 2, 4000
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Files:
    inputs: list[object]  # --table, --tree, --metadata, --target and --task
    metadata: pd.DataFrame  # age, site, subject by sample ID
    depths: pd.Series  # reads per sample
    root: Path


@dataclass(frozen=True)
class Run:
    inputs: list[object]
    metadata: pd.DataFrame
    depths: pd.Series
    out: Path
    result: Result
    report: dict[str, Any]
    predictions: pd.DataFrame


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """60 samples of 15 subjects, 3,000 to 12,000 reads each."""
    study = generate(SyntheticSpec(n_samples=60, n_asvs=60, asvs_per_sample=12, seed=1))
    root = tmp_path_factory.mktemp("cross_validate")
    paths = write_study(study, root / "study")
    inputs: list[object] = ["--table", paths["table"], "--tree", paths["tree"],
                            "--metadata", paths["metadata"], "--target", "age",
                            "--task", "regression"]  # fmt: skip
    depths = pd.Series(study.table.depths(), index=list(study.table.sample_ids))
    return Files(inputs, study.metadata, depths, root)


@pytest.fixture(scope="module")
def run(files: Files) -> Run:
    """One run of 3 folds x 2 repeats of every model, leaving out the samples below 4,000
    reads, with a tiny AAM of 2 epochs, the refit, and forests of 10 and 20 trees (the
    protocol is what these tests check, not the forest)."""
    config = files.root / "config.json"  # half the recipe from a file, half from flags
    config.write_text(json.dumps({"preset": "tiny", "epochs": 2}))
    out = files.root / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(cv_models.TREES, "cpu", (10, 20))
        result = aam(
            "cross-validate", *files.inputs, "--group", "subject", "--folds", FOLDS,
            "--repeats", REPEATS, "--min-reads", MIN_READS, "--config", config,
            "--rarefaction-depth", 500, "--token-limit", 32, "--no-baseline", "--refit",
            "--device", "cpu", "--out", out,
        )  # fmt: skip
    return Run(
        files.inputs, files.metadata, files.depths, out, result,
        json.loads((out / "report.json").read_text()),
        pd.read_csv(out / "predictions.tsv", sep="\t", dtype={"group": str}),
    )  # fmt: skip


def test_predictions_cover_every_usable_sample_once_per_repeat_and_model(run: Run) -> None:
    usable = sorted(run.depths.index[run.depths >= MIN_READS])
    left_out = len(run.depths) - len(usable)
    assert 0 < left_out < 20  # the filter does something, and leaves enough
    assert run.report["n_samples"] == len(usable)
    assert run.report["samples_left_out"] == {
        "without a target value": 0, f"below {MIN_READS} reads": left_out
    }  # fmt: skip
    frame = run.predictions
    assert list(frame.columns) == [
        "sample_id",
        "repeat",
        "fold",
        "model",
        "true",
        "prediction",
        "group",
    ]
    assert len(frame) == len(usable) * REPEATS * len(MODELS)
    for (repeat, model), rows in frame.groupby(["repeat", "model"]):
        assert sorted(rows["sample_id"]) == usable, (repeat, model)
        assert sorted(rows["fold"].unique()) == [1, 2, 3]
    assert sorted(frame["model"].unique()) == sorted(MODELS)
    assert sorted(frame["repeat"].unique()) == [1, 2]
    truth = run.metadata.loc[frame["sample_id"], "age"].to_numpy()
    assert frame["true"].to_numpy() == pytest.approx(truth)


def test_no_subject_is_tested_in_a_fold_it_trained_on(run: Run) -> None:
    frame = run.predictions
    subjects = run.metadata.loc[frame["sample_id"], "subject"].to_numpy()
    assert (frame["group"].to_numpy() == subjects).all()
    aam_rows = frame[frame["model"] == "aam"].set_index(["repeat", "sample_id"])["fold"]
    for model in MODELS:  # every model has the same folds
        rows = frame[frame["model"] == model].set_index(["repeat", "sample_id"])["fold"]
        assert rows.sort_index().equals(aam_rows.sort_index()), model
    sizes = {(s["repeat"], s["fold"]): s for s in run.report["fold_sizes"]}
    assert sorted(sizes) == [(r, f) for r in (1, 2) for f in (1, 2, 3)]
    assignments = []
    for repeat in (1, 2):
        rows = frame[(frame["model"] == "aam") & (frame["repeat"] == repeat)]
        for fold in (1, 2, 3):
            test = rows[rows["fold"] == fold]["sample_id"]
            train = rows[rows["fold"] != fold]["sample_id"]  # the other folds' test samples
            tested = set(run.metadata.loc[test, "subject"])
            trained = set(run.metadata.loc[train, "subject"])
            assert tested and trained and not tested & trained, (repeat, fold)
            assert sizes[repeat, fold]["n_test"] == len(test)
            assert sizes[repeat, fold]["n_train"] == len(train)
            assert sizes[repeat, fold]["depth"] == 500  # the flag's rarefaction depth
        assignments.append(rows.set_index("sample_id")["fold"].sort_index())
    assert not assignments[0].equals(assignments[1])  # each repeat shuffles its own way


def test_report_figures_are_those_of_the_predictions(run: Run) -> None:
    report, frame = run.report, run.predictions
    assert (report["folds"], report["repeats"]) == (FOLDS, REPEATS)
    assert report["n_groups"] == 15 and report["group_column"] == "subject"
    assert report["primary_metric"] == "mae"
    assert list(report["models"]) == MODELS
    for model, entry in report["models"].items():
        per_fold = entry["per_fold"]
        assert [(f["repeat"], f["fold"]) for f in per_fold] == [
            (r, f) for r in (1, 2) for f in (1, 2, 3)
        ]
        for figures in per_fold:
            rows = frame[
                (frame["model"] == model)
                & (frame["repeat"] == figures["repeat"])
                & (frame["fold"] == figures["fold"])
            ]
            assert figures["n_test"] == len(rows)
            by_hand = mean_absolute_error(rows["true"], rows["prediction"])
            assert figures["mae"] == pytest.approx(by_hand, rel=1e-9)
            weights = 1.0 / rows.groupby("group")["group"].transform("size")
            weighted = mean_absolute_error(rows["true"], rows["prediction"], sample_weight=weights)
            assert figures["subject_weighted"]["mae"] == pytest.approx(weighted, rel=1e-9)
        maes = [f["mae"] for f in per_fold]
        assert entry["per_sample"]["mae"] == pytest.approx(np.mean(maes))
        assert entry["sd"]["per_sample"]["mae"] == pytest.approx(np.std(maes, ddof=1))
    aam_maes = np.array([f["mae"] for f in report["models"]["aam"]["per_fold"]])
    assert set(report["differences"]) == {f"aam-{m}" for m in MODELS[1:]}
    for model in MODELS[1:]:
        other = np.array([f["mae"] for f in report["models"][model]["per_fold"]])
        difference = report["differences"][f"aam-{model}"]
        assert difference["n"] == FOLDS * REPEATS
        assert difference["mean"] == pytest.approx(float(np.mean(aam_maes - other)))
        assert difference["low"] <= difference["mean"] <= difference["high"]


def test_plots_and_the_printed_summary(run: Run) -> None:
    plots = sorted(p.name for p in (run.out / "plots").iterdir())
    assert plots == ["fold_scores.png", "oof_predicted_vs_true.png"]
    for name in plots:
        assert (run.out / "plots" / name).read_bytes()[:8] == PNG
    text = run.result.stdout
    lines = text.splitlines()
    assert lines[0] == (
        f"cross-validated age (regression): {run.report['n_samples']} samples of 15 subjects "
        "(subject), 3 folds x 2 repeats"
    )
    for model, entry in run.report["models"].items():
        row = next(line for line in lines if line.split()[:1] == [model])
        cells = row.split()
        assert float(cells[1]) == pytest.approx(entry["per_sample"]["mae"], rel=1e-3)
        assert float(cells[2]) == pytest.approx(entry["subject_weighted"]["mae"], rel=1e-3)
        if model != "aam":
            difference = run.report["differences"][f"aam-{model}"]
            assert float(cells[3]) == pytest.approx(difference["mean"], rel=1e-3)
            low, high = (float(c.strip("[],")) for c in cells[4:6])
            assert (low, high) == pytest.approx((difference["low"], difference["high"]), rel=1e-3)
    for path in ("report.json", "predictions.tsv", "plots/fold_scores.png",
                 "plots/oof_predicted_vs_true.png", "refit/checkpoints/best.pt"):  # fmt: skip
        assert str(run.out / path) in text
    assert ("depth confound:" in text) == run.report["confounds"]["depth"]["flagged"]
    # progress and log lines go to stderr: one line as each fold starts
    starts = [line for line in run.result.stderr.splitlines() if line.startswith("fold ")]
    assert [line.split(":")[0] for line in starts] == [
        f"fold {k}/6 (seed {(k - 1) // 3} fold {(k - 1) % 3 + 1})" for k in range(1, 7)
    ]


def test_a_flagged_depth_confound_is_printed(run: Run) -> None:
    report = json.loads(json.dumps(run.report))
    message = "depth alone predicts age (R² 0.9): the labels may follow a sequencing batch"
    report["confounds"]["depth"].update(flagged=True, message=message)
    files = {"report": Path("r.json"), "predictions": Path("p.tsv"), "plot_a": Path("a.png")}
    assert f"depth confound: {message}" in cv_summary(report, files).splitlines()


def test_the_refit_model_cites_the_cross_validation(run: Run) -> None:
    best = run.out / "refit" / "checkpoints" / "best.pt"
    assert best.is_file()
    checkpoint = load_checkpoint(best)
    cited = checkpoint.training["cross_validation"]
    assert (cited["folds"], cited["repeats"]) == (FOLDS, REPEATS)
    assert cited["n_samples"] == run.report["n_samples"]
    assert cited["group_column"] == "subject"
    assert checkpoint.target is not None and checkpoint.target["column"] == "age"
    aam_mae = run.report["models"]["aam"]["per_sample"]["mae"]
    assert math.isclose(cited["models"]["aam"]["per_sample"]["mae"], aam_mae)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--folds", 1], ["--folds", "2 to 20", "got 1"]),
        (["--repeats", 11], ["--repeats", "1 to 10", "got 11"]),
        (["--group", "not-a-column"], ["--group", "'not-a-column'", "'subject'"]),
        (["--models", "aam,rf"], ["--models", "forest, linear, constant, depth", "'rf'"]),
        (["--min-reads", -1], ["--min-reads", ">= 0", "got -1"]),
        # 15 subjects in the summary
        (["--group", "subject", "--folds", 16], ["16 folds", "'subject'", "has 15"]),
        # no sample has that many reads: found on the samples, before the duration's probe
        (["--min-reads", 100_000], ["5 folds", "usable samples", "have 0"]),
        # grouped by site, each class is one group: a training fold would lack a test class
        (["--task", "classification", "--target", "site", "--group", "site", "--folds", 3],
         ["class 'site_A'", "at least 2"]),
    ],
)  # fmt: skip
def test_a_bad_request_fails_before_any_work(
    files: Files, tmp_path: Path, args: list[object], words: list[str]
) -> None:
    out = tmp_path / "out"
    result = aam("cross-validate", *files.inputs, *args, "--device", "cpu", "--out", out, code=2)
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and all(w in line for w in words), line
    assert result.stdout == ""
    assert not out.exists()


def test_the_split_settings_are_the_cross_validations(files: Files, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("validation_fraction = 0.3\n")
    out = tmp_path / "out"
    result = aam("cross-validate", *files.inputs, "--config", config, "--out", out, code=2)
    assert result.stderr.startswith(f"error: {config}: validation_fraction is set by the cross")
    assert not out.exists()
    result = aam("cross-validate", *files.inputs, "--group-column", "subject", "--out", out, code=2)
    assert "No such option: --group-column" in result.stderr
    result = aam("cross-validate", *files.inputs, "--model", "auto", "--out", out, code=2)
    assert "'auto' is not one of 'aam', 'ensemble'" in result.stderr
    assert not out.exists()
