"""Model cards (aam_core.model_card) of tiny trained models: every number checked against the
run's own files (split.tsv, baseline.json, the input files) or recomputed by hand."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch

from aam_core.checkpoint import Checkpoint, load_checkpoint
from aam_core.crossval.report import card_summary
from aam_core.forest import ForestPart
from aam_core.io import Inputs, file_hashes
from aam_core.model_card import CARD_VERSION, NOT_RECORDED, card_markdown, model_card
from aam_core.plan import TargetSpec
from aam_core.train.run import run_pretrain, run_train
from tests.api.models import tiny_checkpoint
from tests.conftest import pretrain_plan, train_plan

FAST: dict[str, Any] = {"epochs": 1, "token_limit": 12}
SEED, FRACTION, DEPTH = 7, 0.25, 4000  # not the defaults, so the card cannot guess them
DEPTH_MESSAGE = (
    "sequencing depth alone predicts 'site': a model of log(reads per sample) alone reaches "
    "cross-validated ROC AUC 0.81 (this model 0.66); the labels follow sequencing depth (a "
    "batch effect), so cross-validated figures may not carry over to samples sequenced otherwise"
)


def cv_summary(
    task: str, *, flagged: bool | None = False, group_column: str | None = "subject"
) -> dict[str, Any]:
    """What a cross-validation's report gives a refitted model's card (card_summary), from a
    hand-made report: figures chosen to show the card's rounding."""
    if task == "regression":
        metric = "mae"
        figures = {
            "aam": ({"mae": 3.14159, "rmse": 4.5, "r2": 0.612345}, {"mae": 3.25, "r2": 0.58}),
            "forest": ({"mae": 3.9, "rmse": 5.0, "r2": 0.4}, {"mae": 4.0}),
            "linear": ({"mae": 2.9, "rmse": 4.1, "r2": 0.65}, {"mae": 2.95}),
            "constant": ({"mae": 6.0, "rmse": 7.25, "r2": -0.0123456}, {"mae": 6.5}),
            "depth": ({"mae": 5.5, "rmse": 6.75, "r2": None}, {"mae": None}),
        }
        differences = {
            "aam-forest": (-0.758491, -1.2, -0.31, "aam"),
            "aam-linear": (0.241590, 0.05, 0.4, "other"),
            "aam-constant": (-2.85841, -3.5, -2.25, "aam"),
            "aam-depth": (-2.35841, None, None, None),
        }
    else:
        metric = "roc_auc"
        figures = {
            "aam": ({"accuracy": 0.7, "macro_f1": 0.66667, "roc_auc": 0.655555},
                    {"roc_auc": 0.6}),
            "forest": ({"accuracy": 0.75, "macro_f1": 0.7, "roc_auc": 0.7}, {"roc_auc": 0.71}),
            "depth": ({"accuracy": 0.8, "macro_f1": 0.79, "roc_auc": 0.8125}, {"roc_auc": 0.8}),
        }  # fmt: skip
        differences = {
            "aam-forest": (-0.044445, -0.1, 0.02, "neither"),
            "aam-depth": (-0.156945, -0.25, -0.05, "other"),
        }
    report = {
        "folds": 5, "repeats": 2, "first_seed": 1, "n_samples": 80, "n_groups": 20,
        "group_column": group_column, "primary_metric": metric,
        "models": {
            name: {"per_sample": ps, "subject_weighted": sw, "sd": {}, "per_fold": []}
            for name, (ps, sw) in figures.items()
        },
        "differences": {
            name: {"metric": metric, "mean": mean, "low": low, "high": high, "better": better,
                   "n": 10}
            for name, (mean, low, high, better) in differences.items()
        },
        "confounds": {"depth": {
            "metric": metric, "flagged": flagged, "reason": "depth alone reaches ...",
            "message": DEPTH_MESSAGE if flagged else None,
        }},
    }  # fmt: skip
    return card_summary(report)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def runs(
    study_inputs: Inputs, study_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Run directories: an age regressor (grouped by subject, random forest on) and an encoder
    with a site classifier trained on it, frozen, as the refit of a cross-validation."""
    out = tmp_path_factory.mktemp("card-runs")
    hashes = file_hashes(study_files)
    age = TargetSpec("age", "regression")
    plan = train_plan(study_inputs, age, baseline=True, seed=SEED, validation_fraction=FRACTION,
                      group_column="subject", rarefaction_depth=DEPTH, **FAST)  # fmt: skip
    run_train(study_inputs, plan, out / "age", dataset_sha256=hashes)
    encoder = run_pretrain(study_inputs, pretrain_plan(study_inputs, **FAST), out / "encoder",
                           dataset_sha256=hashes)  # fmt: skip
    assert encoder.best_checkpoint is not None
    site = TargetSpec("site", "classification")
    plan = train_plan(study_inputs, site, base=encoder.best_checkpoint, freeze_base=True,
                      baseline=True, seed=3, **FAST)  # fmt: skip
    # as a cross_validate job's refit: the cross-validation's figures ride in the checkpoint
    run_train(study_inputs, plan, out / "site", dataset_sha256=hashes,
              cross_validation=cv_summary("classification", flagged=True))  # fmt: skip
    return {"age": out / "age", "encoder": out / "encoder", "site": out / "site"}


def best(run: Path) -> Checkpoint:
    return load_checkpoint(run / "checkpoints" / "best.pt")


def split_of(run: Path) -> dict[str, list[str]]:
    frame = pd.read_csv(run / "split.tsv", sep="\t", dtype=str, keep_default_na=False)
    return {
        s: frame.loc[frame["split"] == s, "sample_id"].tolist() for s in ("train", "validation")
    }


def metadata(study_files: dict[str, Path]) -> pd.DataFrame:
    return pd.read_csv(study_files["metadata"], sep="\t", index_col=0, dtype={"subject": str})


def test_regressor_card_holds_the_run_s_data_split_seed_and_metrics(
    runs: dict[str, Path], study_files: dict[str, Path], study_inputs: Inputs
) -> None:
    run = runs["age"]
    checkpoint = best(run)
    card = model_card(checkpoint, checkpoint_sha256=sha256(run / "checkpoints" / "best.pt"))
    assert card["card_version"] == CARD_VERSION == 1
    assert card["model"]["kind"] == "regressor" and card["model"]["type"] == "aam"
    assert card["model"]["checkpoint_sha256"] == sha256(run / "checkpoints" / "best.pt")
    # data: the input files' digests, the samples rarefaction dropped
    assert card["data"]["sha256"] == {role: sha256(path) for role, path in study_files.items()}
    depths = np.asarray(study_inputs.table.counts.sum(axis=1)).ravel()
    below = int((depths < DEPTH).sum())
    assert below > 0
    split = split_of(run)
    assert card["data"]["samples"] == {
        "input": 80, "used": 80 - below, "train": len(split["train"]),
        "validation": len(split["validation"]), "missing_target": 0,
        "below_rarefaction_depth": below, "unseen_class": 0,
    }  # fmt: skip
    frame = metadata(study_files)
    subjects = {side: frame.loc[ids, "subject"].nunique() for side, ids in split.items()}
    assert not set(frame.loc[split["train"], "subject"]) & set(
        frame.loc[split["validation"], "subject"]
    )
    assert card["data"]["subjects"] == {"column": "subject", **subjects}
    train_ages = frame.loc[split["train"], "age"]
    summary = card["data"]["target"]["train"]
    assert summary["n"] == len(split["train"])
    assert (summary["min"], summary["max"]) == pytest.approx((train_ages.min(), train_ages.max()))
    assert summary["mean"] == pytest.approx(train_ages.mean(), rel=1e-6)
    # training: the seed, the split's settings and the digest of split.tsv
    training = card["training"]
    assert training["seed"] == SEED and training["stage"] == "train"
    assert training["split"] == {
        "method": "grouped", "validation_fraction": FRACTION, "group_column": "subject",
        "seed": SEED, "sha256": sha256(run / "split.tsv"), "n_train": len(split["train"]),
        "n_validation": len(split["validation"]),
    }  # fmt: skip
    assert training["config"] == checkpoint.training["run_config"]
    assert training["config"]["rarefaction_depth"] == DEPTH
    assert training["base_model"] is None and training["device"] == "cpu"
    # metrics: the checkpoint's, the random forest of baseline.json, the train mean by hand
    metrics = card["metrics"]
    assert metrics["model"] == checkpoint.metrics["best"]["validation"]
    assert metrics["epoch"] == 1 and metrics["monitor"] == "mae"
    forest = json.loads((run / "baseline.json").read_text())["metrics"]
    assert metrics["baselines"]["random_forest"] == forest
    validation_ages = frame.loc[split["validation"], "age"].to_numpy()
    constant_mae = np.abs(validation_ages - train_ages.mean()).mean()
    assert metrics["baselines"]["constant"]["mae"] == pytest.approx(constant_mae, rel=1e-5)
    assert metrics["baselines"]["constant"]["pearson_r"] is None  # a constant has no r
    versions = card["library_versions"]
    assert (versions["torch"], versions["numpy"], versions["scikit-learn"]) == (
        torch.__version__, np.__version__, sklearn.__version__,
    )  # fmt: skip
    assert versions["aam"] == checkpoint.library_version


def test_markdown_shows_the_numbers_and_json_round_trips(runs: dict[str, Path]) -> None:
    checkpoint = best(runs["age"])
    card = model_card(checkpoint)
    text = json.dumps(card, allow_nan=False)  # strict JSON: no NaN, no tuples, no numpy
    assert json.loads(text) == card
    markdown = card_markdown(card)
    assert card_markdown(json.loads(text)) == markdown
    model = checkpoint.metrics["best"]["validation"]
    baselines = checkpoint.metrics["baselines"]
    forest, constant = baselines["random_forest"]["validation"], baselines["constant"]["validation"]
    assert "| metric | model | random forest | constant |" in markdown
    for name in ("mae", "rmse", "r2"):
        row = f"| {name} | {model[name]:.4g} | {forest[name]:.4g} | {constant[name]:.4g} |"
        assert row in markdown
    assert f"| loss | {model['loss']:.4g} | — | — |" in markdown
    assert f"| seed | {SEED} |" in markdown
    assert "| group column | subject |" in markdown
    assert f"| split SHA-256 (split.tsv) | {sha256(runs['age'] / 'split.tsv')} |" in markdown
    assert f"- table: `{card['data']['sha256']['table']}`" in markdown
    assert f"| torch | {torch.__version__} |" in markdown
    for heading in ("Model", "Intended use", "Limits", "Data", "Training",
                    "Metrics beside baselines (validation split)", "Library versions"):  # fmt: skip
        assert f"\n## {heading}\n" in markdown
    samples, subjects = card["data"]["samples"], card["data"]["subjects"]
    assert (
        f"- Trained on {samples['train']} samples from {subjects['train']} groups of 'subject', "
        f"validated on {samples['validation']} samples from {subjects['validation']} other groups"
    ) in markdown
    below = samples["below_rarefaction_depth"]
    assert f"rarefied to {DEPTH} reads; {below} samples with fewer reads were left out" in markdown


def test_classifier_from_a_frozen_encoder_and_the_encoder_s_card(runs: dict[str, Path]) -> None:
    encoder_file = runs["encoder"] / "checkpoints" / "best.pt"
    checkpoint = best(runs["site"])
    card = model_card(checkpoint)
    assert card["training"]["base_model"] == {
        "kind": "encoder", "sha256": sha256(encoder_file), "freeze_base": True,
    }  # fmt: skip
    assert card["model"]["architecture"]["freeze_base"] is True
    classes = checkpoint.classes
    assert classes and card["model"]["target"]["classes"] == classes
    frame = pd.read_csv(runs["site"] / "validation_predictions.tsv", sep="\t")
    split = split_of(runs["site"])
    assert (
        sum(card["data"]["target"]["validation"].values()) == len(frame) == len(split["validation"])
    )
    assert card["data"]["target"]["validation"] == {
        c: int((frame["true"] == c).sum()) for c in classes
    }
    # the constant baseline predicts the train split's class shares: majority-class accuracy
    train_counts = card["data"]["target"]["train"]
    majority = max(classes, key=lambda c: train_counts[c])
    constant = card["metrics"]["baselines"]["constant"]
    assert constant["accuracy"] == pytest.approx((frame["true"] == majority).mean())
    assert constant["roc_auc"] in (None, pytest.approx(0.5))
    assert card["metrics"]["model"] == checkpoint.metrics["best"]["validation"]
    assert card["training"]["split"]["method"] == "stratified"
    assert card["training"]["seed"] == 3
    text = card_markdown(card)
    assert f"It predicts only the {len(classes)} classes of its train split" in text
    assert f"| base model | encoder `{sha256(encoder_file)}`, frozen |" in text

    encoder = model_card(load_checkpoint(encoder_file))
    assert encoder["model"]["kind"] == "encoder" and encoder["model"]["target"] is None
    assert encoder["training"]["stage"] == "pretrain"
    assert (
        encoder["metrics"]["model"] == load_checkpoint(encoder_file).metrics["best"]["validation"]
    )
    assert encoder["metrics"]["baselines"] == {
        "random_forest": None, "constant": None, "depth": None,
    }  # fmt: skip
    assert encoder["metrics"]["depth_confound"] is None
    assert encoder["intended_use"][0].startswith("Research use: embedding 16S rRNA amplicon")
    assert any(limit.startswith("Pretraining metrics say") for limit in encoder["limits"])
    assert "| metric | model |\n" in card_markdown(encoder)


def test_an_old_checkpoint_s_missing_facts_read_not_recorded(tmp_path: Path) -> None:
    """A checkpoint written before these facts were recorded (no training dict, no metrics)."""
    card = model_card(load_checkpoint(tiny_checkpoint("classifier", tmp_path / "old.pt")))
    assert card["data"]["sha256"] is None and card["library_versions"] is None
    assert card["training"]["seed"] is None and card["training"]["config"] is None
    assert card["metrics"]["model"] is None
    assert set(card["data"]["samples"].values()) == {None}
    assert json.loads(json.dumps(card, allow_nan=False)) == card
    text = card_markdown(card)
    assert f"| seed | {NOT_RECORDED} |" in text
    assert f"| group column | {NOT_RECORDED} |" in text
    assert f"Validation metrics: {NOT_RECORDED}." in text
    assert f"aam {card['model']['aam_version']}; other libraries {NOT_RECORDED}." in text
    assert "The training data's digests were not recorded: it cannot be traced." in card["limits"]


def test_an_ensemble_s_card_serves_the_blend_beside_aam_alone(runs: dict[str, Path]) -> None:
    checkpoint = best(runs["age"])
    blend = {"mae": 3.0, "rmse": 4.0, "r2": 0.5, "pearson_r": 0.75}
    forest = {"mae": 3.5, "rmse": 4.5, "r2": 0.25, "pearson_r": 0.5}
    part = ForestPart(
        weight=0.5,
        choice="ensemble",
        features=("ACGT",) * 9,
        task="regression",
        forest=None,
        params={"max_features": 0.3},
        reason="the even blend",
    )
    validation = {"aam": {"mae": 9.0}, "forest": forest, "ensemble": blend}
    metrics = {k: v for k, v in checkpoint.metrics.items() if k != "baselines"}
    ensemble = dataclasses.replace(
        checkpoint, forest=part, metrics={**metrics, "ensemble": {"validation": validation}}
    )
    card = model_card(ensemble)
    assert card["model"]["type"] == "ensemble"
    assert card["model"]["ensemble"] == {
        "choice": "ensemble", "weight": 0.5, "forest_params": {"max_features": 0.3},
        "n_forest_features": 9, "reason": "the even blend",
    }  # fmt: skip
    assert card["metrics"]["model"] == blend
    assert card["metrics"]["aam_alone"] == checkpoint.metrics["best"]["validation"]
    assert card["metrics"]["baselines"]["random_forest"] == forest  # the blend's own forest
    text = card_markdown(card)
    assert "| metric | model | AAM alone | random forest |" in text
    assert f"| mae | 3 | {checkpoint.metrics['best']['validation']['mae']:.4g} | 3.5 |" in text
    assert "random forest over the 9 ASVs of its training data" in text


def test_limits_say_when_a_baseline_beats_the_model(runs: dict[str, Path]) -> None:
    checkpoint = best(runs["age"])

    def limits(model_mae: float, forest_mae: float, constant_mae: float) -> list[str]:
        metrics = {
            "best": {"epoch": 1, "monitor": "mae", "validation": {"mae": model_mae}},
            "baselines": {
                "random_forest": {"validation": {"mae": forest_mae}},
                "constant": {"validation": {"mae": constant_mae}},
            },
        }
        card = model_card(dataclasses.replace(checkpoint, metrics=metrics))
        return [s for s in card["limits"] if s.startswith("On the validation split")]

    assert limits(2.0, 3.0, 4.0) == []
    assert limits(3.5, 3.0, 4.0) == [
        "On the validation split a random forest on the same split and abundances scores better "
        "than this model on mae (3 against 3.5): prefer it, or more data, before relying on this "
        "model."
    ]
    worst = limits(5.0, 3.0, 4.0)
    assert len(worst) == 2 and "constant prediction" in worst[1] and "(4 against 5)" in worst[1]


def with_cv(checkpoint: Checkpoint, cv: dict[str, Any]) -> Checkpoint:
    return dataclasses.replace(checkpoint, training={**checkpoint.training, "cross_validation": cv})


def section(markdown: str) -> str:
    """The Markdown's cross-validation section, up to the next heading."""
    start = markdown.index("\n## Cross-validated performance\n")
    return markdown[start : markdown.index("\n## ", start + 1)]


def test_a_refit_s_card_cites_its_cross_validation(runs: dict[str, Path]) -> None:
    cv = cv_summary("regression")
    card = model_card(with_cv(best(runs["age"]), cv))
    assert card["cross_validation"] == cv
    assert card["cross_validation"]["models"]["aam"]["per_sample"]["mae"] == 3.14159
    assert json.loads(json.dumps(card, allow_nan=False)) == card
    markdown = card_markdown(card)
    assert card_markdown(json.loads(json.dumps(card))) == markdown
    assert markdown.index("\n## Metrics beside baselines") < markdown.index("\n## Cross-validated")
    text = section(markdown)
    assert (
        "5 folds grouped by 'subject' x 2 repeats, 80 samples in 20 groups: every figure is "
        "out-of-fold, the mean over the 10 test folds, each scored on subjects held out of its "
        "model's training."
    ) in text
    assert "| model | mae | rmse | r2 | mae, subject-weighted |" in text
    for row in (
        "| AAM | 3.142 | 4.5 | 0.6123 | 3.25 |",
        "| random forest | 3.9 | 5 | 0.4 | 4 |",
        "| linear model (CLR) | 2.9 | 4.1 | 0.65 | 2.95 |",
        "| constant | 6 | 7.25 | -0.01235 | 6.5 |",
        "| sequencing depth alone | 5.5 | 6.75 | — | — |",
    ):
        assert row in text
    assert "AAM minus each other model in mae (lower is better), paired fold by fold" in text
    assert "| AAM minus | mean | 95% interval | better |" in text
    for row in (
        "| random forest | -0.7585 | -1.2 to -0.31 | AAM |",
        "| linear model (CLR) | 0.2416 | 0.05 to 0.4 | linear model (CLR) |",
        "| constant | -2.858 | -3.5 to -2.25 | AAM |",
        "| sequencing depth alone | -2.358 | — | — |",
    ):
        assert row in text
    assert "Depth confound" not in markdown and "follows sequencing depth" not in markdown
    assert (
        "Cross-validation (5 folds x 2 repeats over 80 samples) scored this recipe on subjects "
        "held out of its training: AAM reached mae 3.142 per sample (3.25 with each subject "
        "weighted once). These out-of-fold figures are the performance to expect on new "
        "subjects, a better guide than the validation split's."
    ) in card["limits"]
    assert (
        "In cross-validation AAM scored worse on mae than this model (the 95% interval of the "
        "paired difference excludes zero): linear model (CLR). Prefer it, or more data, before "
        "relying on this model."
    ) in card["limits"]
    assert f"- {card['limits'][2]}" in markdown


def test_a_flagged_depth_confound_and_a_real_refit_s_checkpoint(runs: dict[str, Path]) -> None:
    """The site classifier was trained as a refit (run_train(cross_validation=...)): its
    checkpoint, read back from disk, carries the figures; depth was flagged."""
    checkpoint = best(runs["site"])
    cv = cv_summary("classification", flagged=True)
    assert checkpoint.training["cross_validation"] == cv
    card = model_card(checkpoint)
    assert card["cross_validation"] == cv
    text = section(card_markdown(card))
    assert "| model | roc_auc | accuracy | macro_f1 | roc_auc, subject-weighted |" in text
    assert "| AAM | 0.6556 | 0.7 | 0.6667 | 0.6 |" in text
    assert "AAM minus each other model in roc_auc (higher is better)" in text
    assert "| random forest | -0.04444 | -0.1 to 0.02 | neither |" in text
    assert "| sequencing depth alone | -0.1569 | -0.25 to -0.05 | sequencing depth alone |" in text
    assert text.endswith(f"\n\n**Depth confound:** {DEPTH_MESSAGE}.\n")
    assert (
        "In cross-validation sequencing depth alone predicted the target: the labels follow "
        "sequencing depth (a batch effect), so these figures may not carry over to samples "
        "sequenced otherwise."
    ) in card["limits"]
    # the same figures unflagged: neither the message nor the sentence
    quiet = model_card(with_cv(checkpoint, cv_summary("classification", flagged=False)))
    markdown = card_markdown(quiet)
    assert "## Cross-validated performance" in markdown
    assert DEPTH_MESSAGE not in markdown and "Depth confound" not in markdown
    assert not any("sequencing depth alone predicted" in s for s in quiet["limits"])
    # a depth check that did not run (no depth model): flagged None, no message
    unknown = model_card(with_cv(checkpoint, cv_summary("classification", flagged=None)))
    assert "Depth confound" not in card_markdown(unknown)


def test_ungrouped_folds_say_samples_not_subjects(runs: dict[str, Path]) -> None:
    card = model_card(with_cv(best(runs["age"]), cv_summary("regression", group_column=None)))
    text = section(card_markdown(card))
    assert text.startswith(
        "\n## Cross-validated performance\n\n5 folds x 2 repeats, 80 samples (no group column: "
        "each sample its own group, so repeated samples of one subject may sit on both sides "
        "of a fold): every figure is out-of-fold, the mean over the 10 test folds, each scored "
        "on samples held out of its model's training.\n"
    )
    assert any(
        s.startswith("Cross-validation (5 folds x 2 repeats over 80 samples) scored this recipe on "
                     "samples held out of its training: AAM reached mae 3.142 per sample. ")
        for s in card["limits"]
    )  # fmt: skip


def test_without_a_cross_validation_the_card_has_none(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    checkpoint = best(runs["age"])
    assert "cross_validation" not in checkpoint.training
    old = model_card(load_checkpoint(tiny_checkpoint("classifier", tmp_path / "old.pt")))
    for card in (model_card(checkpoint), old):
        assert card["cross_validation"] is None
        markdown = card_markdown(card)
        assert "Cross-validat" not in markdown and "cross-validat" not in markdown
    # a card.json written before the key renders as before
    card = model_card(checkpoint)
    older = {k: v for k, v in card.items() if k != "cross_validation"}
    assert card_markdown(older) == card_markdown(card)
