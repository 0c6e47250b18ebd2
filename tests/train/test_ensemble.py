"""The ensemble model kind: the even blend, auto's choice on the validation split, the tuned forest,
and the forest's round trip through a checkpoint (only scikit-learn's trees are ever loaded)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aam_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aam_core.forest import ForestPart, forest_inputs
from aam_core.io import Inputs
from aam_core.plan import TargetSpec
from aam_core.train.baselines import GRID, TUNING_TREES, fit_baseline, forest_class
from aam_core.train.ensemble import choose_blend
from aam_core.train.run import run_train
from tests.conftest import train_plan

AGE = TargetSpec("age", "regression")
SITE = TargetSpec("site", "classification")


def test_the_ensemble_is_the_even_blend_and_reports_its_validation_scores() -> None:
    truth = np.zeros(4)
    aam, forest = np.full(4, 1.0), np.full(4, -1.0)  # errors cancel at an even blend
    blend = choose_blend(aam, forest, truth, None, "ensemble")
    assert (blend.weight, blend.choice) == (0.5, "ensemble")
    assert blend.validation["ensemble"]["mae"] == 0.0
    assert (blend.validation["aam"]["mae"], blend.validation["forest"]["mae"]) == (1.0, 1.0)
    assert blend.reason == (
        "validation mean absolute error: AAM 1, forest 1, blend with AAM weight 0.5 0"
    )
    # no weight is fitted: a validation split that favours AAM still gets the even blend
    favoured = choose_blend(truth.copy(), forest, truth, None, "ensemble")
    assert favoured.weight == 0.5 and favoured.validation["ensemble"]["mae"] == 0.5


def test_auto_may_keep_one_part_and_ensemble_keeps_both() -> None:
    truth = np.array([1.0, 2.0, 3.0])
    exact, off = truth.copy(), truth + 5.0
    auto = choose_blend(exact, off, truth, None, "auto")
    assert (auto.weight, auto.choice) == (1.0, "aam")
    assert auto.reason.endswith("model 'auto' chose aam")
    both = choose_blend(exact, off, truth, None, "ensemble")
    assert (both.weight, both.choice) == (0.5, "ensemble")
    assert both.validation["ensemble"]["mae"] == pytest.approx(2.5)  # half of 5
    assert choose_blend(off, exact, truth, None, "auto").choice == "forest"


def test_classification_blends_probabilities_by_log_loss() -> None:
    truth = np.array([0, 1])
    aam = np.array([[0.9, 0.1], [0.6, 0.4]])  # sure and right, unsure and wrong
    forest = np.array([[0.5, 0.5], [0.1, 0.9]])
    blend = choose_blend(aam, forest, truth, ("a", "b"), "auto")
    losses = {
        w: -np.mean(np.log((w * aam + (1 - w) * forest)[[0, 1], truth])) for w in (0, 0.5, 1)
    }  # forest 0.399, even blend 0.394, AAM 0.511
    assert blend.weight == min(losses, key=lambda w: (losses[w], -w)) == 0.5
    assert blend.choice == "ensemble"


def test_the_forest_is_tuned_by_out_of_bag_error() -> None:
    rng = np.random.default_rng(0)
    x = sp.csr_matrix(rng.dirichlet(np.ones(20), size=120))  # [120, 20]
    y = 40.0 * x[:, 0].toarray().ravel() + rng.normal(0, 0.1, size=120)
    train, val = np.arange(100), np.arange(100, 120)
    tuned = fit_baseline(x, y, train, val, task="regression", n_estimators=50, tune=True)
    errors = {}
    for max_features, leaf in GRID:
        forest = forest_class("regression")(
            n_estimators=TUNING_TREES,
            max_features=max_features,
            min_samples_leaf=leaf,
            oob_score=True,
            random_state=0,
        ).fit(x[train], y[train])
        errors[(max_features, leaf)] = float(np.abs(forest.oob_prediction_ - y[train]).mean())
    best = min(errors, key=lambda k: errors[k])
    assert (tuned.params["max_features"], tuned.params["min_samples_leaf"]) == best
    assert fit_baseline(x, y, train, val, task="regression", n_estimators=5).params == {}


def test_forest_inputs_map_sequences_to_columns_and_keep_the_depth() -> None:
    counts = sp.csr_matrix(np.array([[2, 6, 2], [0, 0, 4]]))  # columns: C, A, T
    x = forest_inputs(counts, ["CCC", "AAA", "TTT"], ["AAA", "CCC", "GGG"])
    # T is unknown to the forest: it still counts in the depth (10 and 4 reads)
    np.testing.assert_allclose(x.toarray(), [[0.6, 0.2, 0.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("target", [AGE, SITE], ids=["regressor", "classifier"])
def test_an_ensemble_run_writes_its_forest_into_the_best_checkpoint(
    study_inputs: Inputs, tmp_path: Path, target: TargetSpec
) -> None:
    plan = train_plan(study_inputs, target, epochs=1)
    run = run_train(study_inputs, dataclasses.replace(plan, model_kind="ensemble"), tmp_path)
    assert run.best_checkpoint is not None
    checkpoint = load_checkpoint(run.best_checkpoint)
    part = checkpoint.forest
    assert part is not None and part.weight == 0.5 and part.choice == "ensemble"
    summary = checkpoint.metrics["ensemble"]
    assert summary["weight"] == part.weight and summary["reason"] == part.reason
    assert set(summary["validation"]) == {"aam", "forest", "ensemble"}
    assert run.report["ensemble"] == summary
    assert part.task == target.task
    used = np.asarray(study_inputs.table.counts.sum(axis=0)).ravel() > 0  # [n_features]
    assert set(part.features) <= {f for f, u in zip(study_inputs.sequences, used, strict=True) if u}
    assert len(part.features) > 0.9 * used.sum()  # the ASVs of the run's samples
    # the forest reads the same values back from the file
    table = study_inputs.table
    again = ForestPart.from_payload(part.to_payload(), file="x")
    n_classes = 3 if target is SITE else 0
    np.testing.assert_array_equal(
        again.predict(table.counts, table.feature_ids, n_classes),
        part.predict(table.counts, table.feature_ids, n_classes),
    )


def test_a_forest_that_would_run_code_is_refused(study_inputs: Inputs, tmp_path: Path) -> None:
    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    run = run_train(
        study_inputs,
        dataclasses.replace(train_plan(study_inputs, AGE, epochs=1), model_kind="ensemble"),
        tmp_path,
    )
    assert run.best_checkpoint is not None
    checkpoint = load_checkpoint(run.best_checkpoint)
    assert checkpoint.forest is not None
    payload = checkpoint.forest.to_payload()
    evil = np.frombuffer(skops.io.dumps(FunctionTransformer(func=print)), dtype=np.uint8)
    payload["forest"] = torch.from_numpy(evil.copy())
    bad = dataclasses.replace(checkpoint, forest=None)
    path = save_checkpoint(bad, tmp_path / "evil.pt")
    raw = torch.load(path, weights_only=True)
    raw["ensemble"] = payload
    torch.save(raw, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value).startswith("evil.pt: its forest holds types that are not a ")
    assert "builtins.print" in str(info.value)
