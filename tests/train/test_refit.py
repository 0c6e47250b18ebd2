"""``refit``: after a run chose its model on validation, the train and validation samples are
fitted together and that model becomes the run's: the linear base alone ("linear"), or the
whole model for the chosen epochs ("all")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from aam_core.checkpoint import Checkpoint, build_model, load_checkpoint
from aam_core.errors import ConfigError
from aam_core.io import Inputs
from aam_core.plan import ResolvedRun, TargetSpec
from aam_core.predict import Predictor
from aam_core.train.linear_base import linear_features
from aam_core.train.local_plan import plan_local
from aam_core.train.prepare import prepare_data
from aam_core.train.run import RunResult, run_train
from tests.conftest import tiny_settings, train_plan

AGE = TargetSpec("age", "regression")


def refit_run(
    inputs: Inputs, tmp_path: Path, *, epochs: int, refit: str
) -> tuple[ResolvedRun, RunResult, Checkpoint, Checkpoint]:
    """A train run with ``refit``: its plan, result, selected model and refit model (the
    run's model, ``checkpoints/refit.pt``)."""
    plan = train_plan(inputs, AGE, epochs=epochs, refit=refit)
    result = run_train(inputs, plan, tmp_path / "run")
    assert result.best_checkpoint == tmp_path / "run" / "checkpoints" / "refit.pt"
    first = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    return plan, result, first, load_checkpoint(result.best_checkpoint)


def test_a_refit_trains_on_every_sample_for_the_chosen_epochs(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    _, result, first, refit = refit_run(study_inputs, tmp_path, epochs=3, refit="all")
    n_train, n_validation = first.training["n_train"], first.training["n_validation"]
    assert (refit.training["n_train"], refit.training["n_validation"]) == (
        n_train + n_validation,
        0,
    )
    assert refit.metrics["refit"]["epochs"] == result.fit.best_epoch
    assert refit.metrics["refit"]["what"] == "all"
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
            "train", tiny_settings(refit="all"), study_inputs, target=AGE, model_kind="ensemble"
        )
    assert error.value.field == "config.refit"


def test_a_linear_refit_fits_the_base_again_on_every_sample_and_keeps_the_network(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    plan, result, first, refit = refit_run(study_inputs, tmp_path, epochs=2, refit="linear")
    n = first.training["n_train"] + first.training["n_validation"]
    assert refit.metrics["refit"] == {"what": "linear", "n_train": n, "selected_on": "validation"}
    assert refit.metrics["best"] == first.metrics["best"]  # the selected model's figures
    changed = {
        k for k in first.state_dict if not torch.equal(first.state_dict[k], refit.state_dict[k])
    }
    assert changed and all(k.startswith("target_head.linear.") for k in changed)
    # the base refit on all the samples, with the L2 the first fit chose on validation
    prepared = prepare_data(study_inputs, plan.config, target=AGE)
    everything = np.sort(np.concatenate([prepared.split.train, prepared.split.validation]))
    vocabulary, rows = prepared.asv_vocabulary()
    assert refit.vocabulary == vocabulary  # the train split's ASVs, as the network's
    dataset = prepared.dataset(everything, plan.config.replace(rerarefy=False))
    x = linear_features(dataset, np.arange(everything.size), rows, plan.config.token_limit)
    alpha = result.report["linear_base"]["penalty"]["alpha"]
    model = build_model(refit)
    y = (
        prepared.targets[everything] - model.target_norm.mean.item()
    ) / model.target_norm.std.item()
    ridge = Ridge(alpha=alpha, tol=1e-10).fit(x, y)
    presence = refit.state_dict["target_head.linear.presence"][1:, 0].double().numpy()
    weight = refit.state_dict["target_head.linear.weight"][1:, 0].double().numpy()
    np.testing.assert_allclose(
        np.concatenate([presence, weight]), ridge.coef_, rtol=1e-4, atol=1e-5
    )
