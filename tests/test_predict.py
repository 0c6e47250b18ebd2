from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aam_core.checkpoint import load_checkpoint
from aam_core.data.batching import Collator
from aam_core.data.tokens import tokenize
from aam_core.evaluate import evaluate
from aam_core.io import Inputs
from aam_core.io.types import FeatureTable
from aam_core.plan import TargetSpec
from aam_core.predict import PredictionError, Predictor
from aam_core.train.run import run_pretrain, run_train
from tests.conftest import assert_within_contract, pretrain_plan, train_plan


@pytest.fixture(scope="module")
def trained(study_inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("runs")
    fast = {"epochs": 1, "token_limit": 12}
    encoder = run_pretrain(study_inputs, pretrain_plan(study_inputs, **fast), out / "pre")
    age, site = TargetSpec("age", "regression"), TargetSpec("site", "classification")
    regressor = run_train(study_inputs, train_plan(study_inputs, age, **fast), out / "reg")
    classifier = run_train(study_inputs, train_plan(study_inputs, site, **fast), out / "cls")
    assert encoder.best_checkpoint and regressor.best_checkpoint and classifier.best_checkpoint
    return {
        "encoder": encoder.best_checkpoint,
        "regressor": regressor.best_checkpoint,
        "classifier": classifier.best_checkpoint,
    }


@pytest.mark.parametrize(("precision", "rtol"), [("fp32", 1e-6), ("fp64", 1e-12)])
def test_regression_is_de_standardised_and_rarefied(
    trained: dict[str, Path], study_inputs: Inputs, precision: str, rtol: float
) -> None:
    predictor = Predictor.from_path(trained["regressor"], precision=precision)
    assert predictor.depth == 1500
    table, seqs = study_inputs.table, study_inputs.sequences
    result = predictor.predict(table.subset_samples(np.arange(6)), seqs)
    # the same numbers by hand: rarefy, collate, run the model at its precision, de-standardise
    samples = predictor.samples(table.subset_samples(np.arange(6)), seqs)
    assert all(s.counts.sum() == 1500 for s in samples)  # deeper samples were rarefied
    # the model's ASV vocabulary (on by default): each feature's row of it
    vocabulary = predictor.checkpoint.vocabulary
    assert vocabulary is not None
    row_of = {sequence: row for row, sequence in enumerate(vocabulary, start=1)}
    rows = np.array([row_of.get(s, 0) for s in seqs], dtype=np.int64)
    assert (rows > 0).any()
    batch = Collator(tokenize(seqs, max_bp=150), token_limit=12, vocabulary=rows)(samples)
    dtype = {"fp32": torch.float32, "fp64": torch.float64}[precision]
    batch = dataclasses.replace(batch, abundance=batch.abundance.to(dtype))
    model = predictor.model
    with torch.no_grad():
        raw = model(batch).target
    assert raw is not None and raw.dtype == dtype
    expected = (raw * model.target_norm.std + model.target_norm.mean).squeeze(-1).numpy()
    got = np.array([s.prediction[0] for s in result.samples if s.prediction is not None])
    np.testing.assert_allclose(got, expected, rtol=rtol)
    ages = study_inputs.metadata.frame["age"]  # type: ignore[union-attr]
    assert abs(got.mean() - ages.mean()) < 2 * ages.std()  # original units, not z-scores
    first = result.samples[0]
    assert first.n_features_used == min(first.n_features, 12)
    kept = np.sort(samples[0].counts)[::-1][:12].sum() / 1500
    assert first.fraction_reads_used == pytest.approx(kept)


def test_shallow_samples_are_flagged_and_empty_ones_refused(
    trained: dict[str, Path], study_inputs: Inputs
) -> None:
    predictor = Predictor.from_path(trained["regressor"])
    seqs = study_inputs.sequences
    counts = np.zeros((3, len(seqs)), dtype=np.int64)
    counts[0, :3] = [100, 50, 20]  # 170 reads, below the training depth
    ids = ("shallow", "empty", "also empty")
    table = FeatureTable(ids, study_inputs.table.feature_ids, sp.csr_matrix(counts))
    with pytest.raises(PredictionError) as caught:
        predictor.predict(table, seqs)
    assert str(caught.value) == (
        "2 samples have no reads ('empty', 'also empty'): nothing can be predicted from them; "
        "remove them from the table"
    )
    (shallow,) = predictor.predict(table.subset_samples(np.array([0])), seqs).samples
    assert shallow.prediction is not None and shallow.fraction_reads_used == 1.0
    assert shallow.warnings == [
        "the sample has 170 reads, fewer than the training rarefaction depth (1500); "
        "predicted without rarefaction"
    ]


def test_rarefaction_passes_give_a_spread(trained: dict[str, Path], study_inputs: Inputs) -> None:
    predictor = Predictor.from_path(trained["regressor"])
    table = study_inputs.table.subset_samples(np.arange(4))
    single = predictor.predict(table, study_inputs.sequences)
    many = predictor.predict(table, study_inputs.sequences, passes=5)
    assert single.samples[0].prediction_std is None
    stds = [s.prediction_std[0] for s in many.samples if s.prediction_std]
    assert len(stds) == 4 and all(np.isfinite(stds)) and max(stds) > 0


def test_one_pass_unless_asked(trained: dict[str, Path], study_inputs: Inputs) -> None:
    predictor = Predictor(load_checkpoint(trained["regressor"]))
    table = study_inputs.table.subset_samples(np.arange(4))
    by_default = predictor.predict(table, study_inputs.sequences).samples
    single = predictor.predict(table, study_inputs.sequences, passes=1).samples
    assert [s.prediction for s in by_default] == [s.prediction for s in single]
    assert all(s.prediction_std is None for s in by_default)


def test_classifier_names_classes_with_probabilities(
    trained: dict[str, Path], study_inputs: Inputs
) -> None:
    predictor = Predictor.from_path(trained["classifier"])
    result = predictor.predict(
        study_inputs.table.subset_samples(np.arange(5)), study_inputs.sequences
    )
    classes = predictor.checkpoint.classes
    assert classes == ["site_A", "site_B", "site_C"]
    for s in result.samples:
        assert s.probabilities is not None
        assert sum(s.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert s.label == max(s.probabilities, key=lambda c: s.probabilities[c])  # type: ignore[index]
    frame = result.to_frame()
    assert list(frame.columns[:5]) == [
        "sample_id",
        "prediction",
        "prob_site_A",
        "prob_site_B",
        "prob_site_C",
    ]


def test_encoder_gives_embeddings_only(trained: dict[str, Path], study_inputs: Inputs) -> None:
    predictor = Predictor.from_path(trained["encoder"])
    table = study_inputs.table.subset_samples(np.arange(3))
    with pytest.raises(
        PredictionError, match="this model is a pretrained encoder: it predicts no target"
    ):
        predictor.predict(table, study_inputs.sequences)
    result = predictor.predict(table, study_inputs.sequences, embeddings=True)
    assert all(s.embedding is not None and len(s.embedding) == 32 for s in result.samples)


def test_evaluate_matches_predictions(trained: dict[str, Path], study_inputs: Inputs) -> None:
    predictor = Predictor.from_path(trained["regressor"])
    table = study_inputs.table.subset_samples(np.arange(20))
    metadata = study_inputs.metadata
    assert metadata is not None
    report = evaluate(predictor, table, study_inputs.sequences, metadata)
    predictions = predictor.predict(table, study_inputs.sequences)
    ages = metadata.frame.loc[list(table.sample_ids), "age"].to_numpy()
    mae = np.mean(
        [
            abs(s.prediction[0] - a)
            for s, a in zip(predictions.samples, ages, strict=True)
            if s.prediction
        ]
    )
    assert report["column"] == "age" and report["n_samples"] == 20
    assert report["metrics"]["mae"] == pytest.approx(mae, rel=1e-9)


@pytest.mark.parametrize("kind", ["regressor", "encoder"])
def test_vector_cache_gives_the_same_numbers_and_skips_known_asvs(
    trained: dict[str, Path], study_inputs: Inputs, kind: str
) -> None:
    table = study_inputs.table
    first, second = table.subset_samples(np.arange(0, 10)), table.subset_samples(np.arange(5, 25))
    embeddings = kind == "encoder"
    plain = Predictor.from_path(trained[kind])
    cached = Predictor.from_path(trained[kind], vector_cache=10_000)
    scale = 1.0 if embeddings else float(plain.model.target_norm.std[0])  # type: ignore[union-attr]
    assert cached.vector_cache is not None
    counts = []
    for part in (first, second, second):  # cold, partly warm, fully warm
        want = plain.predict(part, part.feature_ids, embeddings=embeddings).samples
        got = cached.predict(part, part.feature_ids, embeddings=embeddings).samples
        for w, g in zip(want, got, strict=True):
            # vectors computed in another batch: within prediction's float32 contract
            if embeddings:
                assert_within_contract(g.embedding, w.embedding)
            else:
                assert_within_contract(g.prediction, w.prediction, scale)
        counts.append((cached.vector_cache.hits, cached.vector_cache.misses))
    (h1, m1), (h2, m2), (h3, m3) = counts
    assert h1 == 0 and m1 > 0  # cold: every ASV read is encoded
    assert h2 > 0 and m2 > m1  # the second table shares ASVs with the first, and has new ones
    assert m3 == m2 and h3 - h2 == (h2 - h1) + (m2 - m1)  # warm: the same ASVs, all cached
    assert len(cached.vector_cache) == m3  # each distinct ASV stored once, nothing evicted


def test_vector_cache_capacity_evicts_least_recent(
    trained: dict[str, Path], study_inputs: Inputs
) -> None:
    table = study_inputs.table.subset_samples(np.arange(0, 4))
    small = Predictor.from_path(trained["regressor"], vector_cache=5)
    base = Predictor.from_path(trained["regressor"])
    got = small.predict(table, table.feature_ids).samples
    want = base.predict(table, table.feature_ids).samples
    assert small.vector_cache is not None and len(small.vector_cache) == 5
    scale = float(base.model.target_norm.std[0])  # type: ignore[union-attr]
    for w, g in zip(want, got, strict=True):
        assert_within_contract(g.prediction, w.prediction, scale)
    # memory accounting includes a full cache: 5 vectors of D float32 values
    dim = small.checkpoint.config.dim
    assert small.memory_bytes() - base.memory_bytes() == 5 * dim * 4
    # the exact mode's float64 weights and vectors take twice the bytes
    exact = Predictor.from_path(trained["regressor"], vector_cache=5, precision="fp64")
    assert exact.memory_bytes() == 2 * small.memory_bytes()


def test_q2_sample_classifier_files_of_real_predictions(
    trained: dict[str, Path], study_inputs: Inputs, tmp_path: Path
) -> None:
    """The classifier's and regressor's predictions in q2-sample-classifier's layouts hold the
    same labels, probabilities and values as the AAM TSV."""
    from aam_core.io.predictions import q2_dir
    from aam_core.predict import write_predictions
    from tests.test_q2_predictions import read_q2_predictions, read_q2_probabilities

    table, seqs = study_inputs.table, study_inputs.sequences
    classified = Predictor.from_path(trained["classifier"]).predict(table, seqs)
    write_predictions(classified, tmp_path / "site.tsv")
    labels = read_q2_predictions(q2_dir(tmp_path / "site.tsv") / "predictions.tsv", numeric=False)
    assert labels == {s.sample_id: s.label for s in classified.samples}
    assert list(labels) == list(table.sample_ids)
    classes, probs = read_q2_probabilities(
        q2_dir(tmp_path / "site.tsv") / "class_probabilities.tsv"
    )
    assert classes == list(classified.samples[0].probabilities or {})
    for s in classified.samples:
        assert probs[s.sample_id] == [(s.probabilities or {})[c] for c in classes]
        assert s.label == classes[int(np.argmax(probs[s.sample_id]))]

    regressed = Predictor.from_path(trained["regressor"]).predict(table, seqs)
    write_predictions(regressed, tmp_path / "age.tsv")
    values = read_q2_predictions(q2_dir(tmp_path / "age.tsv") / "predictions.tsv", numeric=True)
    assert values == {s.sample_id: (s.prediction or [])[0] for s in regressed.samples}
    assert not (q2_dir(tmp_path / "age.tsv") / "class_probabilities.tsv").exists()
