"""ASV identity embeddings (``asv_vocabulary``): the ASVs of the train split get a learned vector
beside their sequence's; an ASV outside the vocabulary is read by sequence alone, exactly as a
model without one would read it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from aam_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aam_core.data.batching import Collator
from aam_core.data.tokens import tokenize
from aam_core.io import Inputs
from aam_core.model.aam import SequenceEncoder
from aam_core.model.config import AAMConfig
from aam_core.plan import TargetSpec
from aam_core.predict import Predictor
from aam_core.train.callbacks import Callback
from aam_core.train.prepare import prepare_data
from aam_core.train.run import run_pretrain, run_train
from tests.conftest import BatchFactory, pretrain_plan, tiny_run, train_plan

AGE = TargetSpec("age", "regression")


def test_the_vocabulary_is_the_train_split_s_asvs_by_sequence(study_inputs: Inputs) -> None:
    prepared = prepare_data(study_inputs, tiny_run(), target=AGE)
    vocabulary, rows = prepared.asv_vocabulary()
    assert list(vocabulary) == sorted(vocabulary)
    train = prepared.rarefied.subset_samples(prepared.split.train).counts
    seen = np.asarray(train.sum(axis=0)).ravel() > 0  # [n_features]
    assert len(vocabulary) == seen.sum()
    for feature, row in enumerate(rows):
        if seen[feature]:
            assert vocabulary[row - 1] == prepared.sequences[feature]
        else:
            assert row == 0


def test_unknown_asvs_read_as_without_a_vocabulary(make_batch: BatchFactory) -> None:
    torch.manual_seed(0)
    plain = SequenceEncoder(AAMConfig.tiny()).eval()
    with_vocabulary = AAMConfig.tiny(
        sample=dataclasses.replace(AAMConfig.tiny().sample, vocabulary=7, identity_dropout=0.5)
    )
    model = SequenceEncoder(with_vocabulary).eval()
    missing = model.load_state_dict(plain.state_dict(), strict=False)
    assert missing.missing_keys == ["sample.identity.weight"]
    batch = make_batch([0, 1, 2])
    unknown = dataclasses.replace(batch, identity=torch.zeros_like(batch.asv_index))
    with torch.no_grad():
        torch.testing.assert_close(model(unknown).embedding, plain(batch).embedding)
        known = dataclasses.replace(unknown, identity=(batch.asv_index >= 0).long() * 3)
        assert not torch.allclose(model(known).embedding, plain(batch).embedding)
        assert torch.all(model.sample.identity.weight[0] == 0)  # type: ignore[union-attr]


def test_a_vocabulary_model_round_trips_and_maps_sequences_at_prediction(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    plan = train_plan(study_inputs, AGE, epochs=1)
    plan = dataclasses.replace(plan, config=plan.config.replace(asv_vocabulary=True))
    result = run_train(study_inputs, plan, tmp_path / "run")
    assert result.best_checkpoint is not None
    checkpoint = load_checkpoint(result.best_checkpoint)
    assert checkpoint.vocabulary is not None
    assert checkpoint.config.sample.vocabulary == len(checkpoint.vocabulary) > 0
    predictor = Predictor.from_path(result.best_checkpoint)
    table, sequences = study_inputs.table, list(study_inputs.sequences)
    values = predictor.predict(table, sequences).samples
    assert all(s.prediction is not None and np.isfinite(s.prediction[0]) for s in values)
    # A sequence finds its vocabulary row in any case (were it case-sensitive, lower case
    # would read every ASV as unseen, by sequence alone, and move every prediction).
    lower = predictor.predict(table, [s.lower() for s in sequences]).samples
    assert [s.prediction for s in lower] == [s.prediction for s in values]
    broken = dataclasses.replace(checkpoint, vocabulary=checkpoint.vocabulary[:-1])
    path = save_checkpoint(broken, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="its ASV vocabulary lists"):
        load_checkpoint(path)


def test_the_collator_maps_each_slot_to_its_vocabulary_row(
    study_inputs: Inputs, make_batch: BatchFactory
) -> None:
    features = study_inputs.table.feature_ids
    tokens = tokenize(features, max_bp=150)
    rows = np.arange(len(features), dtype=np.int64) % 5  # some features outside (row 0)
    collate = Collator(tokens, token_limit=64, vocabulary=rows)
    from aam_core.data.batching import SampleDataset

    dataset = SampleDataset(study_inputs.table)
    batch = collate([dataset[0], dataset[1]])
    assert batch.identity is not None
    for i, sample in enumerate((dataset[0], dataset[1])):
        n = min(len(sample.features), 64)
        assert batch.identity[i, :n].tolist() == rows[sample.features[:n]].tolist()
        assert batch.identity[i, n:].tolist() == [0] * (batch.identity.shape[1] - n)


@pytest.mark.parametrize("freeze", [False, True], ids=["fine-tuned", "frozen"])
def test_a_fine_tuned_model_takes_its_encoder_s_identities_by_sequence(
    study_inputs: Inputs, tmp_path: Path, freeze: bool
) -> None:
    """Pretraining learns identities of its own train split's ASVs; a model trained from the
    encoder on another split (another vocabulary) starts from them where the sequences
    match, and from zero (an unknown ASV) elsewhere."""
    encoder = run_pretrain(study_inputs, pretrain_plan(study_inputs, epochs=1), tmp_path / "pre")
    assert encoder.best_checkpoint is not None
    pretrained = load_checkpoint(encoder.best_checkpoint)
    assert pretrained.vocabulary is not None and pretrained.config.sample.vocabulary > 0
    plan = train_plan(
        study_inputs, AGE, base=encoder.best_checkpoint, freeze_base=freeze, epochs=1, seed=3
    )
    lines: list[str] = []
    result = run_train(study_inputs, plan, tmp_path / "train", callbacks=_Lines(lines))
    assert result.best_checkpoint is not None
    tuned = load_checkpoint(result.best_checkpoint)
    assert tuned.vocabulary is not None and tuned.vocabulary != pretrained.vocabulary
    before = pretrained.state_dict["sample.identity.weight"]  # [V1 + 1, D]
    row_of = {s: r for r, s in enumerate(pretrained.vocabulary, start=1)}
    shared = [s for s in tuned.vocabulary if s in row_of]
    assert 0 < len(shared) < len(tuned.vocabulary)
    assert result.report["base_checkpoint"]["identities"] == len(shared)
    assert any(f"identities of {len(shared)} ASVs" in line for line in lines)
    if freeze:  # nothing trained: exactly the encoder's rows, zero for the ASVs it never saw
        after = tuned.state_dict["base.sample.identity.weight"]  # [V2 + 1, D]
        for r, sequence in enumerate(tuned.vocabulary, start=1):
            zero = torch.zeros_like(after[r])
            expected = before[row_of[sequence]] if sequence in row_of else zero
            torch.testing.assert_close(after[r], expected)


class _Lines(Callback):
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def on_log(self, message: str) -> None:
        self.lines.append(message)
