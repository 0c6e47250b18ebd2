"""``refit``: after a run chose its epoch count on validation, a model of the same settings is
trained on the train and validation samples together and becomes the run's model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aam_core.checkpoint import load_checkpoint
from aam_core.errors import ConfigError
from aam_core.io import Inputs
from aam_core.plan import TargetSpec
from aam_core.predict import Predictor
from aam_core.train.local_plan import plan_local
from aam_core.train.stages import run_train
from tests.conftest import tiny_settings, train_plan

AGE = TargetSpec("age", "regression")


def test_a_refit_trains_on_every_sample_for_the_chosen_epochs(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    plan = train_plan(study_inputs, AGE, epochs=3, refit=True)
    result = run_train(study_inputs, plan, tmp_path / "run")
    assert result.best_checkpoint == tmp_path / "run" / "checkpoints" / "refit.pt"
    first = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    refit = load_checkpoint(result.best_checkpoint)
    n_train, n_validation = first.training["n_train"], first.training["n_validation"]
    assert (refit.training["n_train"], refit.training["n_validation"]) == (
        n_train + n_validation,
        0,
    )
    assert refit.metrics["refit"]["epochs"] == result.fit.best_epoch
    # the figures it carries are the first model's, scored on samples it had not seen
    assert refit.metrics["best"] == first.metrics["best"]
    assert refit.metrics["baselines"] == first.metrics["baselines"]
    # its vocabulary covers the validation samples' ASVs too
    assert first.vocabulary is not None and refit.vocabulary is not None
    assert set(first.vocabulary) < set(refit.vocabulary)
    if result.fit.best_epoch > 0:  # the refit's own training, without validation
        assert (tmp_path / "run" / "refit" / "metrics.jsonl").exists()
    samples = (
        Predictor.from_path(result.best_checkpoint)
        .predict(study_inputs.table, study_inputs.sequences)
        .samples
    )
    assert all(s.prediction is not None and np.isfinite(s.prediction[0]) for s in samples)


def test_a_refit_is_for_model_aam(study_inputs: Inputs) -> None:
    with pytest.raises(ConfigError, match="refit is for model 'aam'") as error:
        plan_local(
            "train", tiny_settings(refit=True), study_inputs, target=AGE, model_kind="ensemble"
        )
    assert error.value.field == "config.refit"
