"""bench/quality.py: subject-weighted metrics and the bootstrap interval against hand-computed
values, grouped folds, the baselines' rarefied counts against aam_core's rarefaction, the
ensemble hook, one end-to-end run on a tiny synthetic study whose fold metrics and paired
differences are recomputed from the predictions it wrote, and a study whose labels follow
sequencing depth alone."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from aam_core.crossval import folds as folding
from aam_core.crossval import models
from aam_core.crossval import scoring as report
from aam_core.crossval import study as studies
from aam_core.data.rarefy import choose_depth, rarefy
from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.errors import UserError
from aam_core.predict import SamplePrediction
from aam_core.train.baselines import depth_confound

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    """A bench/ script by path (bench/ is not a package); registered under its own name so
    that quality.py's ``import quality_models`` finds it."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


quality = load("quality")


def test_regression_metrics_weigh_each_subject_once() -> None:
    # errors 1, 0, -3; subject a has two samples, b one
    true, predicted, groups = np.array([1.0, 3.0, 10.0]), np.array([2.0, 3.0, 7.0]), ["a", "a", "b"]
    assert report.subject_weights(groups).tolist() == [0.5, 0.5, 1.0]
    got = report.score("regression", true, np.array(groups), values=predicted)
    # per sample: mean 14/3, total sum of squares 402/9, residual 10
    assert got["per_sample"]["mae"] == pytest.approx(4 / 3)
    assert got["per_sample"]["rmse"] == pytest.approx(math.sqrt(10 / 3))
    assert got["per_sample"]["r2"] == pytest.approx(1 - 90 / 402)
    # weights 1/4, 1/4, 1/2: weighted mean 6, spread 16.5, mean squared error 4.75
    assert got["subject_weighted"]["mae"] == pytest.approx(1.75)
    assert got["subject_weighted"]["rmse"] == pytest.approx(math.sqrt(4.75))
    assert got["subject_weighted"]["r2"] == pytest.approx(1 - 4.75 / 16.5)


def test_classification_metrics_weigh_each_subject_once() -> None:
    true = np.array(["x", "x", "y", "y"])
    prob_y = np.array([0.1, 0.6, 0.4, 0.9])
    probabilities = np.stack([1 - prob_y, prob_y], axis=1)
    labels = np.array(["x", "y", "x", "y"])
    groups = np.array(["a", "a", "a", "b"])
    got = report.score(
        "classification", true, groups, labels=labels, probabilities=probabilities,
        classes=("x", "y"),
    )  # fmt: skip
    # per sample: 2 of 4 right; F1 0.5 for both classes; 3 of 4 positive-negative pairs ordered
    assert got["per_sample"] == pytest.approx({"accuracy": 0.5, "macro_f1": 0.5, "roc_auc": 0.75})
    # weights 1/3, 1/3, 1/3, 1: accuracy (1/3 + 1) / 2; F1 x: 2/3 / (4/3), y: 2 / (8/3);
    # AUC (1/9 + 1/3 + 1/3) / (4/3 * 2/3)
    assert got["subject_weighted"] == pytest.approx(
        {"accuracy": 2 / 3, "macro_f1": (0.5 + 0.75) / 2, "roc_auc": 7 / 8}
    )


def test_a_fold_with_one_class_has_no_auc() -> None:
    got = report.classification_metrics(
        np.array(["x", "x"]), np.array(["x", "y"]), np.array([[0.9, 0.1], [0.2, 0.8]]),
        ("x", "y"), np.ones(2),
    )  # fmt: skip
    assert math.isnan(got["roc_auc"]) and got["accuracy"] == 0.5


def test_bootstrap_interval_by_hand() -> None:
    equal = report.bootstrap_interval([0.25] * 15)
    assert equal["n"] == 15
    assert equal["mean"] == equal["low"] == equal["high"] == pytest.approx(0.25, abs=1e-12)
    assert equal["above_zero"] and not equal["below_zero"]
    # two differences: a resample's mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so
    # the 2.5th and 97.5th percentiles are the extremes
    two = report.bootstrap_interval([0.0, 1.0])
    assert (two["mean"], two["low"], two["high"]) == (0.5, 0.0, 1.0)
    assert not two["below_zero"] and not two["above_zero"]
    assert report.bootstrap_interval([-1.0, math.nan, -2.0])["below_zero"]
    assert report.bootstrap_interval([-1.0, math.nan, -2.0])["n"] == 2
    assert report.bootstrap_interval([])["mean"] is None


def test_bootstrap_interval_is_seeded() -> None:
    differences = np.random.default_rng(3).normal(0.2, 1.0, size=15)
    first = report.bootstrap_interval(differences, seed=0)
    assert report.bootstrap_interval(differences, seed=0) == first
    assert report.bootstrap_interval(differences, seed=1)["low"] != first["low"]
    assert first["mean"] == pytest.approx(differences.mean())
    assert first["low"] < first["mean"] < first["high"]


@pytest.mark.parametrize("stratified", [False, True])
def test_grouped_folds_keep_groups_whole_and_cover_every_sample_once(stratified: bool) -> None:
    rng = np.random.default_rng(0)
    groups = np.array([f"g{g}" for g in rng.integers(0, 13, size=60)])
    labels = np.char.mod("%d", rng.integers(0, 2, size=60)) if stratified else None
    assignments = []
    for seed in (0, 1):
        folds = folding.outer_folds(groups, labels, 5, seed)
        assert len(folds) == 5
        tests = np.concatenate([test for _, test in folds])
        assert np.array_equal(np.sort(tests), np.arange(60))  # every sample tested once
        for train, test in folds:
            assert np.array_equal(np.union1d(train, test), np.arange(60))
            assert not set(groups[train]) & set(groups[test])
        fold_of = np.empty(60, dtype=int)
        for k, (_, test) in enumerate(folds):
            fold_of[test] = k
        assignments.append(fold_of)
    assert not np.array_equal(*assignments)  # the seed shuffles the groups


def test_clr_by_hand() -> None:
    got = studies.clr(sp.csr_matrix(np.array([[1, 0], [0, 3]])))
    # log(1.5) - log(0.5) = log 3 and log(3.5) - log(0.5) = log 7, each row centred
    a, b = math.log(3) / 2, math.log(7) / 2
    assert got == pytest.approx(np.array([[a, -a], [-b, b]]))


def test_sample_output_reads_predictions_and_ensemble_components() -> None:
    read = models._sample_output
    assert read(SamplePrediction("s", prediction=[2.5]), (), None) == (2.5, None)
    sample = SamplePrediction("s", label="y", probabilities={"y": 0.75, "x": 0.25})
    row, label = read(sample, ("x", "y", "z"), None)  # z: never seen in training
    assert row.tolist() == [0.25, 0.75, 0.0] and label == "y"
    # the ensemble's AAM member, as aam_core will report it (SamplePrediction.components)
    member = SimpleNamespace(components={"aam": 3.5})
    assert read(member, (), "aam") == (3.5, None)
    member = SimpleNamespace(components={"aam": {"x": 0.4, "y": 0.6}})
    row, label = read(member, ("x", "y"), "aam")
    assert row.tolist() == [0.4, 0.6] and label == "y"


def test_models_are_checked_and_default_to_all() -> None:
    # every model but aam_pretrained and aam_pack, which pretrain first
    everything = ["forest", "linear", "linear_raw", "constant", "depth", "aam", "ensemble"]
    assert quality.resolve_models(None) == everything
    assert quality.resolve_models(" aam, forest,aam") == ["aam", "forest"]
    with pytest.raises(quality.UsageError, match="choose from forest, linear, linear_raw, cons"):
        quality.resolve_models("forest,rf")


def test_the_best_baseline_is_the_best_mean_of_the_depth_free_ones() -> None:
    def results(**means: float | None) -> dict[str, Any]:
        return {m: {"mean": {"per_sample": {"mae": v, "roc_auc": v}}} for m, v in means.items()}

    free = ("forest", "linear", "constant")
    # lowest MAE; linear_raw is lower still but not a candidate
    got = results(forest=2.0, linear=1.5, constant=3.0, linear_raw=1.0)
    assert report.best_model("regression", got, free) == "linear"
    # highest AUC; a model without an AUC (None) and one not run are skipped; equals: the first
    got = results(forest=0.7, linear=None, constant=0.5, linear_raw=0.9)
    assert report.best_model("classification", got, free) == "forest"
    assert report.best_model("classification", results(forest=0.5, constant=0.5), free) == "forest"
    assert report.best_model("classification", results(linear_raw=0.9), free) is None


def test_aam_config_cannot_move_the_shared_split() -> None:
    def options(config: str) -> object:
        argv = ["data", "--target", "age", "--task", "regression", "--aam-config", config]
        return quality.aam_options(quality.parse_args(argv))

    with pytest.raises(quality.UsageError, match="seed, validation_fraction are set by the bench"):
        options('{"seed": 3, "validation_fraction": 0.3, "lr": 0.001}')
    with pytest.raises(UserError, match=r"lr must be in \(0, 1\], got -1"):
        options('{"lr": -1}')
    with pytest.raises(quality.UsageError, match="--aam-config must be a JSON mapping"):
        options("[1]")
    assert options('{"lr": 0.001}').settings("subject", 2) == {  # type: ignore[attr-defined]
        "group_column": "subject",
        "validation_fraction": 0.2,
        "seed": 2,
        "baseline": False,  # the benchmark's own forest is the one compared
        "lr": 0.001,
    }


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    study = generate(SyntheticSpec(n_samples=60, n_asvs=60, asvs_per_sample=12, seed=1))
    directory = tmp_path_factory.mktemp("synthetic")
    write_study(study, directory)
    return directory


def test_sample_filters(study_dir: Path) -> None:
    metadata = pd.read_csv(study_dir / "metadata.tsv", sep="\t", index_col=0)
    site_a = studies.load_study(study_dir, "age", "regression", "subject", ["site=site_A"], 1)
    assert site_a.y.size == (metadata["site"] == "site_A").sum()
    assert site_a.notes["not site=site_A"] == (metadata["site"] != "site_A").sum()
    deep = studies.load_study(study_dir, "age", "regression", "subject", [], 6000)
    full = studies.load_study(study_dir, "age", "regression", "subject", [], 1)
    assert (
        deep.y.size
        == (full.inputs.table.depths() >= 6000).sum()
        == 60 - deep.notes["below 6000 reads"]
    )


def _recomputed(rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Regression metrics of predictions.tsv rows, with scikit-learn, per sample and with
    weights 1 / (samples of the subject among these rows)."""
    out = {}
    sizes = rows.groupby("group")["group"].transform("size").to_numpy()
    for view, weights in (("per_sample", None), ("subject_weighted", 1.0 / sizes)):
        true, predicted = rows["true"], rows["prediction"]
        out[view] = {
            "mae": mean_absolute_error(true, predicted, sample_weight=weights),
            "rmse": math.sqrt(mean_squared_error(true, predicted, sample_weight=weights)),
            "r2": r2_score(true, predicted, sample_weight=weights),
        }
    return out


@pytest.fixture
def small_forests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forests of 10 and 20 trees: the protocol is what these tests check, and a 500-tree
    refit per fold would be most of their time."""
    monkeypatch.setitem(models.TREES, "cpu", (10, 20))


TINY_AAM = {"preset": "tiny", "epochs": 2, "rarefaction_depth": 500, "token_limit": 32}


def run_age_study(study_dir: Path, out: Path, models: str) -> dict[str, Any]:
    """quality.py on the synthetic study's age, grouped by subject: 1 seed, 2 folds, a tiny
    AAM of 2 epochs, one fold at a time."""
    return quality.main(
        [str(study_dir), "--target", "age", "--task", "regression", "--group", "subject",
         "--seeds", "1", "--folds", "2", "--models", models,
         "--aam-config", json.dumps(TINY_AAM), "--jobs", "1", "--out", str(out)]
    )  # fmt: skip


@pytest.mark.usefixtures("small_forests")
def test_end_to_end_on_a_synthetic_study(study_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_age_study(study_dir, out, "forest,linear,linear_raw,constant,depth,aam")
    assert json.loads((out / "quality.json").read_text()) == result
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (result["n_samples"], result["n_groups"]) == (60, 15)  # 4 samples per subject
    assert result["models"] == ["forest", "linear", "linear_raw", "constant", "depth", "aam"]
    assert result["primary_metric"] == "mae"
    assert result["depths"] == [500]  # --aam-config's rarefaction_depth: every sample kept
    assert set(result["differences"]) == {
        "linear-forest", "linear_raw-forest", "constant-forest", "depth-forest", "aam-forest",
        "aam-best_baseline", "aam-depth",
    }  # fmt: skip
    assert result["machine"]["cores"] >= 1 and result["versions"]["sklearn"]
    predictions = pd.read_csv(out / "predictions.tsv", sep="\t")
    for model, summary in result["results"].items():
        rows = predictions[predictions["model"] == model]
        assert sorted(rows["sample_id"]) == sorted(f"S{i:05d}" for i in range(60))  # once each
        assert [(f["seed"], f["fold"]) for f in summary["folds"]] == [(0, 1), (0, 2)]
        for fold in summary["folds"]:
            fold_rows = rows[rows["fold"] == fold["fold"]]
            assert fold["n_test"] == len(fold_rows)
            expected = _recomputed(fold_rows)
            for view in ("per_sample", "subject_weighted"):
                assert {k: fold[view][k] for k in expected[view]} == pytest.approx(expected[view])
        assert summary["pooled"][0]["subject_weighted"] == pytest.approx(
            _recomputed(rows)["subject_weighted"]
        )
        maes = [f["per_sample"]["mae"] for f in summary["folds"]]
        assert summary["mean"]["per_sample"]["mae"] == pytest.approx(np.mean(maes))
        assert summary["sd"]["per_sample"]["mae"] == pytest.approx(np.std(maes, ddof=1))
    constant = result["results"]["constant"]["folds"][0]["details"]["value"]
    assert constant == pytest.approx(
        float(np.median(predictions.query("model == 'forest' and fold == 2")["true"]))
    )  # the median of the other fold, its training fold
    rf, aam = result["results"]["forest"]["folds"], result["results"]["aam"]["folds"]
    expected = [
        a["per_sample"]["mae"] - r["per_sample"]["mae"] for a, r in zip(aam, rf, strict=True)
    ]
    assert result["differences"]["aam-forest"]["per_sample"]["mean"] == pytest.approx(
        np.mean(expected)
    )
    for fold, forest in zip(aam, rf, strict=True):
        # the forest chose on the validation samples AAM stopped on, at AAM's depth
        assert fold["details"]["inner_split_matches"] is True
        assert fold["details"]["epochs_run"] == 2
        assert fold["details"]["depth"] == forest["details"]["depth"] == 500
    # the best depth-free baseline: the lowest mean MAE of rf, linear and constant
    means = {m: result["results"][m]["mean"]["per_sample"]["mae"] for m in result["results"]}
    best = min(("forest", "linear", "constant"), key=means.__getitem__)
    assert result["best_baseline"]["model"] == best
    assert result["best_baseline"]["mean"]["per_sample"] == means[best]
    assert result["differences"]["aam-best_baseline"]["baseline"] == best
    for other, key in ((best, "aam-best_baseline"), ("depth", "aam-depth")):
        folds = result["results"][other]["folds"]
        for view in ("per_sample", "subject_weighted"):
            paired = [a[view]["mae"] - b[view]["mae"] for a, b in zip(aam, folds, strict=True)]
            assert result["differences"][key][view] == report.bootstrap_interval(paired)
    # the depth check of a regression: the product's verdict on the depth model's mean R²
    # beside AAM's
    check, depth = result["depth_check"], result["results"]["depth"]["mean"]
    aam_means = result["results"]["aam"]["mean"]
    assert check["metric"] == "r2" and check["against"] == "aam"
    assert check["primary_mean"] == {v: depth[v]["mae"] for v in ("per_sample", "subject_weighted")}
    for view in ("per_sample", "subject_weighted"):
        expected = depth_confound(
            {"r2": depth[view]["r2"]}, {"r2": aam_means[view]["r2"]}, "regression",
            target="age", scope="cross-validated",
        )  # fmt: skip
        assert check["verdict"][view] == expected
    assert check["flagged"] == check["verdict"]["per_sample"]["confounded"]


@pytest.mark.usefixtures("small_forests")
def test_end_to_end_classification_with_three_classes(study_dir: Path, tmp_path: Path) -> None:
    result = quality.main(
        [str(study_dir), "--target", "site", "--task", "classification", "--group", "subject",
         "--seeds", "1", "--folds", "3", "--models", "forest,linear,constant",
         "--out", str(tmp_path)]
    )  # fmt: skip
    classes = ["site_A", "site_B", "site_C"]
    assert result["jobs"] == len(os.sched_getaffinity(0))  # --budget cpu: a fold per core
    assert result["classes"] == classes and result["primary_metric"] == "roc_auc"
    predictions = pd.read_csv(tmp_path / "predictions.tsv", sep="\t")
    for model, summary in result["results"].items():
        for fold in summary["folds"]:
            chosen = (predictions["model"] == model) & (predictions["fold"] == fold["fold"])
            rows = predictions[chosen]
            sizes = rows.groupby("group")["group"].transform("size").to_numpy()
            for view, weights in (("per_sample", None), ("subject_weighted", 1.0 / sizes)):
                true, labels = rows["true"], rows["prediction"]
                prob = rows[[f"prob_{c}" for c in classes]].to_numpy()
                expected = {
                    "accuracy": accuracy_score(true, labels, sample_weight=weights),
                    "macro_f1": f1_score(true, labels, average="macro", sample_weight=weights),
                    "roc_auc": roc_auc_score(
                        true, prob, multi_class="ovr", labels=classes, sample_weight=weights
                    ),
                }
                assert fold[view] == pytest.approx(expected)
    for fold in result["results"]["constant"]["folds"]:
        assert fold["per_sample"]["roc_auc"] == 0.5  # one score for every sample


def test_pretrained_aam_beside_aam_from_scratch(
    study_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """aam_pretrained fine-tunes from an encoder pretrained on each fold's training samples,
    aam_pack from one pretrained on the pack's other studies first; both are compared with
    aam from scratch, pair by pair."""
    other = generate(SyntheticSpec(n_samples=30, n_asvs=50, asvs_per_sample=10, seed=7))
    pack = write_study(other, tmp_path_factory.mktemp("pack"))["table"].parent
    out = tmp_path_factory.mktemp("pretrained")
    aam_config = {"preset": "tiny", "epochs": 1, "rarefaction_depth": 500, "token_limit": 32}
    result = quality.main(
        [str(study_dir), "--target", "age", "--task", "regression", "--group", "subject",
         "--seeds", "1", "--folds", "2", "--models", "aam,aam_pretrained,aam_pack",
         "--aam-config", json.dumps(aam_config), "--pretrain-config", '{"epochs": 2}',
         "--pack", str(pack), "--jobs", "1", "--out", str(out)]
    )  # fmt: skip
    assert {"aam_pretrained-aam", "aam_pack-aam"} <= set(result["differences"])
    assert result["aam_pretrained"]["pretrain_settings"]["epochs"] == 2
    (pack_run,) = result["pack_pretraining"]
    assert pack_run["study"] == pack.name and pack_run["epochs_run"] == 2
    pack_encoder = out / "pack" / f"1-{pack.name}" / "checkpoints" / "best.pt"
    for variant in ("aam_pretrained", "aam_pack"):
        for fold in result["results"][variant]["folds"]:
            run = out / variant / f"seed0-fold{fold['fold']}"
            pretrain = json.loads((run / "pretrain" / "report.json").read_text())
            r2 = fold["details"]["unifrac_r2"]  # pairs of validation samples only
            assert isinstance(r2, float) and r2 == pretrain["validation"]["unifrac_r2"]
            assert pretrain["split"]["group_column"] == "subject"  # whole subjects held out
            started = (pretrain.get("base_checkpoint") or {}).get("path")
            assert started == (str(pack_encoder) if variant == "aam_pack" else None)
            fine_tune = json.loads((run / "train" / "report.json").read_text())
            assert fine_tune["base_checkpoint"]["path"].endswith("pretrain/checkpoints/best.pt")
            assert not (run / "pretrain" / "checkpoints").exists()  # removed once predicted
    folds = {m: result["results"][m]["folds"] for m in ("aam", "aam_pretrained")}
    gaps = [p["per_sample"]["mae"] - a["per_sample"]["mae"]
            for p, a in zip(folds["aam_pretrained"], folds["aam"], strict=True)]  # fmt: skip
    assert result["differences"]["aam_pretrained-aam"]["per_sample"]["mean"] == pytest.approx(
        np.mean(gaps)
    )
    with pytest.raises(quality.UsageError, match="aam_pack and --pack go together"):
        quality.main([str(study_dir), "--target", "age", "--task", "regression",
                      "--models", "aam_pack"])  # fmt: skip


@pytest.mark.usefixtures("small_forests")
def test_aam_and_the_ensemble_come_from_one_run(study_dir: Path, tmp_path: Path) -> None:
    result = run_age_study(study_dir, tmp_path, "forest,aam,ensemble")
    assert set(result["differences"]) == {
        "aam-forest", "ensemble-forest", "aam-best_baseline", "ensemble-best_baseline"
    }  # fmt: skip
    assert result["best_baseline"]["model"] == "forest" and result["depth_check"] is None
    for model in ("aam", "ensemble"):  # the forest, the one depth-free baseline run
        against = result["differences"][f"{model}-best_baseline"]
        assert against == {"baseline": "forest", **result["differences"][f"{model}-forest"]}
    aam, ensemble = result["results"]["aam"]["folds"], result["results"]["ensemble"]["folds"]
    assert len(list((tmp_path / "aam").iterdir())) == 2  # one training run per fold
    predictions = pd.read_csv(tmp_path / "predictions.tsv", sep="\t")
    for a, e in zip(aam, ensemble, strict=True):
        assert a["seconds"] == e["seconds"] and a["details"]["shared_run"]
        assert 0 <= e["details"]["ensemble"]["weight"] <= 1
        for model, fold in (("aam", a), ("ensemble", e)):
            rows = predictions[
                (predictions["model"] == model) & (predictions["fold"] == fold["fold"])
            ]
            assert fold["per_sample"] == pytest.approx(_recomputed(rows)["per_sample"])


@pytest.mark.usefixtures("small_forests")
def test_folds_run_in_parallel_give_the_results_of_one_at_a_time(
    study_dir: Path, tmp_path: Path
) -> None:
    def run(jobs: int) -> tuple[dict[str, Any], pd.DataFrame]:
        out = tmp_path / f"jobs{jobs}"
        result = quality.main(
            [str(study_dir), "--target", "age", "--task", "regression", "--group", "subject",
             "--seeds", "2", "--folds", "2", "--models", "forest,linear,constant",
             "--jobs", str(jobs), "--out", str(out)]
        )  # fmt: skip
        return result, pd.read_csv(out / "predictions.tsv", sep="\t")

    (one, one_rows), (two, two_rows) = run(1), run(2)
    assert two["jobs"] == 2
    for model in ("forest", "linear", "constant"):
        alone, parallel = one["results"][model]["folds"], two["results"][model]["folds"]
        assert [(f["seed"], f["fold"]) for f in parallel] == [(0, 1), (0, 2), (1, 1), (1, 2)]
        for a, p in zip(alone, parallel, strict=True):
            assert (a["seed"], a["fold"], a["details"]) == (p["seed"], p["fold"], p["details"])
            for view in ("per_sample", "subject_weighted"):  # a forest's sums, other threads
                assert p[view] == pytest.approx(a[view], rel=1e-12)
    pd.testing.assert_frame_equal(one_rows, two_rows, rtol=1e-12)
    with pytest.raises(quality.UsageError, match="--jobs must be >= 1, got 0"):
        quality.main([str(study_dir), "--target", "age", "--task", "regression", "--jobs", "0"])
    # --first-seed: seed 1 alone is the second seed of the run above, fold for fold
    later = quality.main(
        [str(study_dir), "--target", "age", "--task", "regression", "--group", "subject",
         "--seeds", "1", "--first-seed", "1", "--folds", "2", "--models", "forest,linear,constant",
         "--jobs", "1", "--out", str(tmp_path / "later")]
    )  # fmt: skip
    assert later["first_seed"] == 1
    for model in ("forest", "linear", "constant"):
        again, before = later["results"][model]["folds"], one["results"][model]["folds"][2:]
        assert [(f["seed"], f["fold"]) for f in again] == [(1, 1), (1, 2)]
        for a, b in zip(again, before, strict=True):
            assert a["per_sample"] == pytest.approx(b["per_sample"], rel=1e-12)
    with pytest.raises(quality.UsageError, match="--first-seed must be >= 0, got -1"):
        quality.main([str(study_dir), "--target", "age", "--task", "regression",
                      "--first-seed", "-1"])  # fmt: skip


@pytest.mark.usefixtures("small_forests")
def test_baselines_read_the_counts_aam_reads(
    study_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = studies.load_study(study_dir, "age", "regression", "subject", [], 1000)
    fold = folding.make_folds(study, range(1, 2), 3, None)[0]  # seed 1, AAM's default depth
    depths = study.inputs.table.depths()
    # the synthetic reads span 3,000-12,000: the default 5,000 would drop > 10% of the samples
    assert fold.depth == choose_depth(depths[fold.train]).depth < 5000
    assert np.array_equal(fold.kept, fold.train[depths[fold.train] >= fold.depth])
    assert fold.kept.size < fold.train.size  # AAM drops training samples below its depth
    shallow = fold.test[depths[fold.test] < fold.depth]
    assert shallow.size  # test samples AAM predicts unrarefied

    fits: dict[str, list[np.ndarray]] = {}
    seen: dict[str, np.ndarray] = {}
    original = models.tune_and_refit

    def spy(study: Any, fold: Any, x: np.ndarray, make: Any, grid: Any) -> Any:
        """tune_and_refit, recording its features and what the refit model is fit on."""
        name = type(make(grid[0], True)).__name__
        seen[name], fits[name] = x, []

        def recording(point: Any, refit: bool) -> Any:
            model = make(point, refit)
            fit = model.fit
            if refit:
                model.fit = lambda x, y: (fits[name].append(x), fit(x, y))[1]
            return model

        return original(study, fold, x, recording, grid)

    monkeypatch.setattr(models, "tune_and_refit", spy)
    models.fit_forest(study, fold, "cpu")
    models.fit_linear(study, fold)
    models.fit_linear(study, fold, raw=True)  # Ridge again: its record replaces linear's
    raw_clr = seen.pop("Ridge")
    models.fit_linear(study, fold)

    drawn = rarefy(study.inputs.table, fold.depth, seed=1)  # aam_core's draw, the outer seed
    kept = np.searchsorted(drawn.kept_rows, fold.kept)
    assert np.array_equal(drawn.kept_rows[kept], fold.kept)
    counts = drawn.table.counts[kept].toarray()  # [n_kept, n_features], depth reads each
    (forest,) = fits["RandomForestRegressor"]  # refit once, on the rows AAM keeps
    assert forest.sum(axis=1) == pytest.approx(np.ones(fold.kept.size))
    assert forest * fold.depth == pytest.approx(counts)
    (linear,) = fits["Ridge"]
    assert linear == pytest.approx(studies.clr(sp.csr_matrix(counts)))
    # test samples: the deep ones rarefied by the same draw, the shallow ones as they are
    deep = np.setdiff1d(fold.test, shallow)
    x = seen["RandomForestRegressor"]
    rarefied = drawn.table.counts[np.searchsorted(drawn.kept_rows, deep)].toarray()
    assert x[deep] * fold.depth == pytest.approx(rarefied)
    raw = study.inputs.table.counts[shallow].toarray()
    assert x[shallow] == pytest.approx(raw / raw.sum(axis=1, keepdims=True))
    # linear_raw reads the raw counts of every sample
    assert raw_clr == pytest.approx(studies.clr(study.inputs.table.counts))
    # a second draw for the same (seed, depth) is the one already drawn
    assert study.as_aam_reads(1, fold.depth) is study.as_aam_reads(1, fold.depth)


@pytest.fixture(scope="module")
def depth_study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study whose label ``batch`` is sequencing depth alone: each subject is sequenced
    shallow (6,000-9,000 reads) or deep (30,000-60,000), every read drawn from the sample's
    composition, which is independent of the label; so counts rarefied to 5,000 carry no trace
    of it (a multinomial rarefied is a multinomial of the same proportions)."""
    base = generate(SyntheticSpec(n_samples=80, n_asvs=60, asvs_per_sample=20, seed=2))
    rng = np.random.default_rng(5)
    subjects = base.metadata["subject"].to_numpy()
    names = np.unique(subjects)
    deep = np.isin(subjects, rng.permutation(names)[: names.size // 2])  # [80]
    composition = base.table.counts.toarray().astype(np.float64)
    composition /= composition.sum(axis=1, keepdims=True)
    reads = np.where(deep, rng.integers(30_000, 60_001, 80), rng.integers(6_000, 9_001, 80))
    counts = np.stack([rng.multinomial(n, p) for n, p in zip(reads, composition, strict=True)])
    table = dataclasses.replace(base.table, counts=sp.csr_matrix(counts.astype(np.int64)))
    metadata = base.metadata.assign(batch=np.where(deep, "deep", "shallow"))
    directory = tmp_path_factory.mktemp("depth-study")
    write_study(dataclasses.replace(base, table=table, metadata=metadata), directory)
    return directory


@pytest.mark.usefixtures("small_forests")
def test_a_label_that_follows_depth_is_read_by_depth_alone(
    depth_study_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[list[str]] = []
    plot = quality.quality_figure

    def spy(path: Path, title: str, task: str, records: Any, predictions: Any) -> Path:
        drawn.append(list(records))
        return plot(path, title, task, records, predictions)

    monkeypatch.setattr(quality, "quality_figure", spy)
    result = quality.main(
        [str(depth_study_dir), "--target", "batch", "--task", "classification",
         "--group", "subject", "--seeds", "1", "--folds", "4",
         "--models", "forest,linear,linear_raw,constant,depth", "--jobs", "1",
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert result["depths"] == [5000]  # every sample has >= 6,000 reads: none dropped
    auc = {m: r["mean"]["per_sample"]["roc_auc"] for m, r in result["results"].items()}
    assert auc["depth"] == 1.0  # the label is the depth
    assert abs(auc["forest"] - 0.5) < 0.2 and abs(auc["linear"] - 0.5) < 0.2
    assert auc["constant"] == 0.5
    check = result["depth_check"]
    assert check["metric"] == "roc_auc" and check["against"] is None  # AAM did not run
    assert check["primary_mean"]["per_sample"] == 1.0
    assert check["flagged"] and all(v["confounded"] for v in check["verdict"].values())
    assert check["message"].startswith("sequencing depth alone predicts 'batch': a model of")
    assert "reaches cross-validated ROC AUC 1.00" in check["message"]
    # linear_raw: reported and described, never drawn nor the best baseline
    assert "linear_raw" in result["results"] and "linear_raw-forest" in result["differences"]
    assert "not a depth-free baseline" in result["linear_raw"]["note"]
    assert drawn == [["forest", "linear", "constant", "depth"]]
    best = max(("forest", "linear", "constant"), key=auc.__getitem__)
    assert result["best_baseline"]["model"] == best
    assert result["best_baseline"]["among"] == ["forest", "linear", "constant"]
    predictions = pd.read_csv(tmp_path / "predictions.tsv", sep="\t")
    assert set(predictions["model"]) == {"forest", "linear", "linear_raw", "constant", "depth"}
    print({m: round(v, 3) for m, v in auc.items()})
