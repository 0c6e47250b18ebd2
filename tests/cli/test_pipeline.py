"""End to end on generated data: ``aam pretrain`` -> ``aam train`` -> ``aam predict`` /
``evaluate`` / ``summary`` / ``baseline``, checked against the study's true values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aam_core.checkpoint import build_model, load_checkpoint
from aam_core.io import sha256_file
from tests.cli.conftest import FAST, Study, aam, read_split

TRAIN_EPOCHS = 10


@pytest.fixture(scope="session")
def regressor_run(
    study: Study, encoder_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Age regressor on the frozen pretrained encoder (random-forest baseline on: the CLI
    default)."""
    out = tmp_path_factory.mktemp("runs") / "regressor"
    aam("train", "--table", study.table, "--metadata", study.metadata, "--target", "age",
        "--task", "regression", "--out", out, "--pretrained-encoder",
        encoder_run / "checkpoints" / "best.pt", "--freeze-base", *FAST, "--batch-size", 8,
        "--epochs", TRAIN_EPOCHS, "--quiet")  # fmt: skip
    return out


def _predict(model: Path, study: Study, out: Path, *extra: object) -> pd.DataFrame:
    result = aam("predict", "--checkpoint", model, "--table", study.table, "--out", out, *extra)
    assert f"predicted {len(study.frame)} samples with a " in result.stderr
    if out.suffix == ".json":
        return pd.DataFrame(json.loads(out.read_text())["samples"])
    return pd.read_csv(out, sep="\t", dtype={"sample_id": str})


def test_pretrain_writes_an_encoder(encoder_run: Path, study: Study) -> None:
    info = json.loads(aam("summary", encoder_run / "checkpoints" / "best.pt", "--json").stdout)
    assert info["kind"] == "encoder" and info["target"] is None
    assert info["training"]["n_train"] + info["training"]["n_validation"] == len(study.frame)
    assert info["preprocessing"]["rarefaction_depth"] == 2000
    assert info["preprocessing"]["token_limit"] == 64
    report = json.loads((encoder_run / "report.json").read_text())
    assert (report["stopped"], report["epochs_run"]) == ("completed", 4)
    # validation holds whole subjects (the metadata is read for --group-column alone)
    split = read_split(encoder_run)
    subjects = {s: set(study.frame.loc[ids, "subject"]) for s, ids in split.items()}
    assert subjects["train"] and subjects["validation"]
    assert not subjects["train"] & subjects["validation"]
    assert report["split"]["group_column"] == "subject"
    # early stopping follows UniFrac R² over every validation pair, reported beside Pearson r,
    # and the same model on its train split (eval mode) shows what it memorised
    assert report["monitor"] == "unifrac_r2"
    assert {"unifrac_r2", "unifrac_pearson_r"} <= set(report["validation"])
    assert {"unifrac_r2", "unifrac_pearson_r"} <= set(report["train_evaluation"])
    assert (encoder_run / "plots" / "unifrac_distances.png").stat().st_size > 0


def test_regressor_predicts_every_sample_in_years(
    regressor_run: Path, study: Study, tmp_path: Path
) -> None:
    frame = _predict(regressor_run / "checkpoints" / "best.pt", study, tmp_path / "pred.tsv")
    # one row per sample of the table, in its order
    assert frame["sample_id"].tolist() == study.frame.index.tolist()
    predicted = frame.set_index("sample_id")["prediction"]
    age = study.frame["age"]
    # original units (years), not standardised values around 0
    assert abs(predicted.mean() - age.mean()) < 2 * age.std()
    assert predicted.std() > 1.0
    split = read_split(regressor_run)
    validation = split["validation"]
    mae = float(np.abs(predicted[validation] - age[validation]).mean())
    mean_mae = float(np.abs(age[validation] - age[split["train"]].mean()).mean())
    assert mae <= 0.85 * mean_mae, (mae, mean_mae)
    # the random forest ran beside it by default
    baseline = json.loads((regressor_run / "baseline.json").read_text())
    assert baseline["metrics"]["mae"] > 0


def test_frozen_encoder_keeps_its_weights(encoder_run: Path, regressor_run: Path) -> None:
    """Every weight of the encoder, and each ASV identity under the regressor's own
    vocabulary (its train split's ASVs): the encoder's row for the same sequence, zero for an
    ASV the encoder never saw."""
    pretrained = load_checkpoint(encoder_run / "checkpoints" / "best.pt")
    encoder, identity = pretrained.state_dict, "sample.identity.weight"
    assert pretrained.vocabulary is not None
    row_of = {s: r for r, s in enumerate(pretrained.vocabulary, start=1)}
    for name in ("best.pt", "last.pt"):
        trained = load_checkpoint(regressor_run / "checkpoints" / name)
        assert trained.freeze_base and trained.vocabulary is not None
        base = {k[5:]: v for k, v in trained.state_dict.items() if k.startswith("base.")}
        assert base.keys() == encoder.keys()
        assert [k for k in encoder if k != identity and not torch.equal(encoder[k], base[k])] == []
        for r, sequence in enumerate(trained.vocabulary, start=1):
            kept = (
                encoder[identity][row_of[sequence]] if sequence in row_of else 0 * base[identity][r]
            )
            assert torch.equal(base[identity][r], kept)


def test_classifier_beats_the_majority_class(
    study: Study, encoder_run: Path, tmp_path: Path
) -> None:
    """Older or younger than the median age: a label the model learns in a few epochs (on
    ``site`` the tiny model stays at the class prior for longer than a test can wait)."""
    frame = study.frame.assign(
        age_group=np.where(study.frame["age"] >= study.frame["age"].median(), "older", "younger")
    )
    metadata = tmp_path / "metadata.tsv"
    frame.to_csv(metadata, sep="\t", index_label="sample_id")
    out = tmp_path / "age_group"
    aam("train", "--table", study.table, "--metadata", metadata, "--target", "age_group",
        "--task", "classification", "--out", out, "--pretrained-encoder",
        encoder_run / "checkpoints" / "best.pt", *FAST, "--batch-size", 8, "--epochs", 8,
        "--no-baseline", "--quiet")  # fmt: skip
    predicted = _predict(out / "checkpoints" / "best.pt", study, tmp_path / "p.json")
    labels = predicted.set_index("sample_id")["label"]
    validation = read_split(out)["validation"]
    truth = frame.loc[validation, "age_group"]
    accuracy = float((labels[validation] == truth).mean())
    majority = float(truth.value_counts(normalize=True).max())
    assert accuracy >= majority + 0.2, (accuracy, majority)


def test_site_classifier_outputs_and_evaluation(study: Study, tmp_path: Path) -> None:
    out = tmp_path / "site"
    aam("train", "--table", study.table, "--metadata", study.metadata, "--target", "site",
        "--task", "classification", "--out", out, *FAST, "--epochs", 1, "--no-baseline",
        "--quiet")  # fmt: skip
    model = out / "checkpoints" / "best.pt"
    as_json = _predict(model, study, tmp_path / "site.json")
    classes = sorted(study.frame["site"].unique())
    probabilities = pd.DataFrame(as_json["probabilities"].tolist())
    assert list(probabilities.columns) == classes
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # TSV: the label in prediction and one prob_<class> column per class, the same values
    as_tsv = _predict(model, study, tmp_path / "site.tsv")
    assert [c for c in as_tsv.columns if c.startswith("prob_")] == [f"prob_{c}" for c in classes]
    assert as_tsv["prediction"].tolist() == as_json["label"].tolist()
    np.testing.assert_allclose(as_tsv[[f"prob_{c}" for c in classes]], probabilities, rtol=1e-6)
    accuracy = float((as_tsv["prediction"].to_numpy() == study.frame["site"].to_numpy()).mean())
    printed = json.loads(aam("evaluate", "--checkpoint", model, "--table", study.table,
                             "--metadata", study.metadata).stdout)  # fmt: skip
    assert printed["column"] == "site" and printed["n_samples"] == len(study.frame)
    assert printed["metrics"]["accuracy"] == pytest.approx(accuracy)


def test_evaluate_matches_the_predictions(
    regressor_run: Path, study: Study, tmp_path: Path
) -> None:
    model = regressor_run / "checkpoints" / "best.pt"
    frame = _predict(model, study, tmp_path / "pred.tsv")
    predicted = frame.set_index("sample_id")["prediction"]
    age = study.frame["age"]
    mae = float(np.abs(predicted - age[predicted.index]).mean())
    out = tmp_path / "metrics.json"
    printed = json.loads(aam("evaluate", "--checkpoint", model, "--table", study.table,
                             "--metadata", study.metadata, "--out", out).stdout)  # fmt: skip
    assert printed == json.loads(out.read_text())
    assert printed["column"] == "age" and printed["n_samples"] == len(study.frame)
    assert printed["metrics"]["mae"] == pytest.approx(mae, rel=1e-6)


def test_summary_of_a_trained_model(regressor_run: Path, study: Study) -> None:
    path = regressor_run / "checkpoints" / "best.pt"
    checkpoint = load_checkpoint(path)
    model = build_model(checkpoint)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < total  # the encoder is frozen
    text = aam("summary", path).stdout
    assert text.startswith("kind: regressor\ntarget: age (regression)\n")
    assert "encoder frozen" in text
    assert f"parameters: {total:,} total, {trainable:,} trainable" in text
    info = json.loads(aam("summary", path, "--json").stdout)
    assert info["kind"] == "regressor"
    assert info["parameters"]["total"] == total
    assert info["target"]["column"] == "age"
    assert info["metrics"]["best"]["monitor"] == "mae"
    assert info["metrics"]["best"]["validation"]["mae"] == pytest.approx(
        checkpoint.metrics["best"]["validation"]["mae"]
    )
    hashes = info["training"]["dataset_sha256"]
    assert set(hashes) == {"table", "metadata"}  # the files given to aam train
    assert hashes["table"] == sha256_file(study.table)


def test_baseline_on_the_split_of_a_run(regressor_run: Path, study: Study) -> None:
    result = json.loads(aam("baseline", "--table", study.table, "--metadata", study.metadata,
                            "--target", "age", "--task", "regression",
                            "--split", regressor_run / "split.tsv",
                            "--rarefaction-depth", 2000).stdout)  # fmt: skip
    split = read_split(regressor_run)
    assert (result["n_train"], result["n_validation"]) == tuple(map(len, split.values()))
    # same data, split and seed as the random forest the training run fitted
    fitted = json.loads((regressor_run / "baseline.json").read_text())
    assert result["metrics"]["mae"] == pytest.approx(fitted["metrics"]["mae"], rel=1e-9)


def test_pretraining_continues_from_an_encoder_on_another_table(
    encoder_run: Path, small_study: Study, tmp_path: Path
) -> None:
    """``aam pretrain --pretrained-encoder``: the encoder's weights start a pretraining run on
    another table (its ASV identities where the sequences match), read as it was trained to."""
    encoder = encoder_run / "checkpoints" / "best.pt"
    out = tmp_path / "continued"
    aam("pretrain", "--table", small_study.table, "--tree", small_study.tree, "--out", out,
        "--pretrained-encoder", encoder, "--epochs", 1, "--quiet")  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    base = report["base_checkpoint"]
    assert base["sha256"] == sha256_file(encoder) and base["kind"] == "encoder"
    first = load_checkpoint(encoder)
    # every tensor but the identities (another table's ASVs) came from the encoder; the UniFrac
    # head's distance statistics are then refit to this table
    assert base["matched_keys"] == len(first.state_dict) - 1
    assert base["identities"] == 0  # the two generated studies share no ASV
    continued = load_checkpoint(out / "checkpoints" / "best.pt")
    assert continued.preprocessing["token_limit"] == first.preprocessing["token_limit"] == 64
