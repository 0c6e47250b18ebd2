"""Each defect of the public implementations (docs/design.md section 17), shown not to happen
here."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from aam_core.checkpoint import load_checkpoint
from aam_core.data.tokens import MASK, tokenize
from aam_core.io import Inputs, SequenceError
from aam_core.model import SequenceRegressor
from aam_core.plan import TargetSpec
from aam_core.predict import Predictor
from aam_core.train import loop
from aam_core.train.run import run_pretrain, run_train
from tests.callbacks import History
from tests.conftest import pretrain_plan, train_plan

AGE = TargetSpec("age", "regression")
SITE = TargetSpec("site", "classification")


@pytest.fixture(scope="module")
def encoder(study_inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = run_pretrain(
        study_inputs, pretrain_plan(study_inputs, epochs=1), tmp_path_factory.mktemp("enc")
    )
    assert result.best_checkpoint is not None
    return result.best_checkpoint


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prediction_loads_what_training_wrote_in_original_units(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    result = run_train(study_inputs, train_plan(study_inputs, AGE, epochs=2), tmp_path)
    for checkpoint in (result.best_checkpoint, result.last_checkpoint):
        assert checkpoint is not None
        predicted = Predictor.from_path(checkpoint).predict(
            study_inputs.table, study_inputs.sequences
        )
        values = np.array([s.prediction[0] for s in predicted.samples if s.prediction])
        assert values.size == study_inputs.table.n_samples
        ages = study_inputs.metadata.frame["age"].to_numpy()  # type: ignore[union-attr]
        # standardised outputs would sit near 0 with spread ~1; these are years
        assert abs(values.mean() - ages.mean()) < ages.std()
    saved = pd.read_csv(tmp_path / "validation_predictions.tsv", sep="\t")
    assert abs(saved["prediction"].mean() - saved["true"].mean()) < saved["true"].std()


def test_prediction_rarefies_to_the_training_depth(study_inputs: Inputs, tmp_path: Path) -> None:
    result = run_train(
        study_inputs, train_plan(study_inputs, AGE, epochs=1, rarefaction_depth=1000), tmp_path
    )
    assert result.best_checkpoint is not None
    predictor = Predictor.from_path(result.best_checkpoint)
    deep = int(np.argmax(study_inputs.table.depths()))
    (sample,) = predictor.samples(study_inputs.table.subset_samples([deep]), study_inputs.sequences)
    assert study_inputs.table.depths()[deep] > 1000 and sample.counts.sum() == 1000


def test_classification_trains_and_predicts_labels(study_inputs: Inputs, tmp_path: Path) -> None:
    result = run_train(study_inputs, train_plan(study_inputs, SITE, epochs=2), tmp_path)
    assert result.kind == "classifier" and "accuracy" in result.validation
    assert result.best_checkpoint is not None
    predicted = Predictor.from_path(result.best_checkpoint).predict(
        study_inputs.table, study_inputs.sequences
    )
    assert {s.label for s in predicted.samples} <= {"site_A", "site_B", "site_C"}


def test_validation_runs_in_eval_mode(
    study_inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[bool] = []
    original = loop.evaluate_rows

    def spy(model: Any, *args: Any, **kwargs: Any) -> Any:
        handle = model.register_forward_hook(lambda m, _a, _o: modes.append(m.training))
        try:
            return original(model, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(loop, "evaluate_rows", spy)
    run_train(study_inputs, train_plan(study_inputs, AGE, epochs=2, dropout=0.3), tmp_path)
    assert modes and not any(modes)


def test_no_nucleotide_masking_while_fine_tuning(
    study_inputs: Inputs, encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[torch.Tensor] = []
    original = SequenceRegressor.forward

    def spy(self: SequenceRegressor, batch: Any, **kwargs: Any) -> Any:
        handle = self.base.nucleotide.register_forward_hook(lambda _m, a, _o: seen.append(a[0]))
        try:
            return original(self, batch, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(SequenceRegressor, "forward", spy)
    run_train(study_inputs, train_plan(study_inputs, AGE, base=encoder, epochs=1), tmp_path)
    assert seen and not any(bool((tokens == MASK).any()) for tokens in seen)


def test_loss_weights_reach_the_loss(study_inputs: Inputs, tmp_path: Path) -> None:
    history = History()
    weights = {"unifrac": 0.5, "faith_pd": 2.0, "nucleotide": 0.0}
    plan = pretrain_plan(study_inputs, epochs=1, loss_weights=weights)
    result = run_pretrain(study_inputs, plan, tmp_path, callbacks=history)
    assert set(history.steps[0].components) == {"unifrac", "faith_pd"}
    for event in history.steps:
        c = event.components
        assert event.loss == pytest.approx(0.5 * c["unifrac"] + 2.0 * c["faith_pd"], rel=1e-5)
    saved = load_checkpoint(result.last_checkpoint).config.loss_weights
    assert (saved.unifrac, saved.faith_pd, saved.nucleotide) == (0.5, 2.0, 0.0)


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_base_freezes_and_only_then(
    study_inputs: Inputs, encoder: Path, tmp_path: Path, freeze: bool
) -> None:
    plan = train_plan(study_inputs, AGE, base=encoder, freeze_base=freeze, epochs=1)
    result = run_train(study_inputs, plan, tmp_path)
    before = load_checkpoint(encoder).state_dict
    after = load_checkpoint(result.last_checkpoint).state_dict
    unchanged = [
        torch.equal(after[f"base.{k}"], v) for k, v in before.items() if v.is_floating_point()
    ]
    assert all(unchanged) if freeze else not all(unchanged)


def test_a_pretrained_encoder_never_leaks_between_runs(
    study_inputs: Inputs, encoder: Path, tmp_path: Path
) -> None:
    digest = _sha(encoder)
    plan = train_plan(study_inputs, AGE, base=encoder, epochs=1)
    first = run_train(study_inputs, plan, tmp_path / "a")
    second = run_train(study_inputs, plan, tmp_path / "b")
    assert _sha(encoder) == digest  # the shared encoder file is never written
    a = load_checkpoint(first.last_checkpoint).state_dict
    b = load_checkpoint(second.last_checkpoint).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)  # the second run started from the file


def test_oversized_samples_are_truncated_never_skipped(
    study_inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    widths: list[int] = []
    seen = 0
    original = loop.Trainer._train_step

    def spy(self: loop.Trainer, batch: Any) -> Any:
        nonlocal seen
        widths.append(int(batch.asv_index.shape[1]))
        seen += batch.size
        return original(self, batch)

    monkeypatch.setattr(loop.Trainer, "_train_step", spy)
    result = run_train(
        study_inputs, train_plan(study_inputs, AGE, epochs=1, token_limit=8), tmp_path
    )
    assert seen == result.report["n_train"]  # every training sample, once
    assert max(widths) == 8  # samples hold ~20 ASVs: cut to the token limit, not dropped
    saved = pd.read_csv(tmp_path / "validation_predictions.tsv", sep="\t")
    assert len(saved) == result.report["n_validation"]


def test_batches_are_padded_to_their_largest_sample_only(
    study_inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    widths: list[tuple[int, int]] = []
    original = loop.Trainer._train_step

    def spy(self: loop.Trainer, batch: Any) -> Any:
        widths.append((int(batch.asv_index.shape[1]), int(batch.mask.sum(1).max())))
        return original(self, batch)

    monkeypatch.setattr(loop.Trainer, "_train_step", spy)
    run_train(study_inputs, train_plan(study_inputs, AGE, epochs=1, token_limit=1024), tmp_path)
    assert all(width == largest < 1024 for width, largest in widths)


def test_non_dna_never_becomes_padding() -> None:
    with pytest.raises(SequenceError, match="1 sequences contain characters that are not DNA"):
        tokenize(["ACGT", "ACG-T"], max_bp=10)


def test_learning_rate_warms_up_and_stays_positive(study_inputs: Inputs, tmp_path: Path) -> None:
    history = History()
    plan = train_plan(study_inputs, AGE, epochs=3, lr=1e-3, warmup_fraction=0.2)
    run_train(study_inputs, plan, tmp_path, callbacks=history)
    lrs = [e.lr for e in history.steps]
    assert max(lrs) == pytest.approx(1e-3)  # warm-up completes even on a 12-step run
    assert lrs.index(max(lrs)) == round(0.2 * len(lrs)) - 1
    assert min(lrs) > 0
