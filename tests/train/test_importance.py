"""``importance.tsv``: per ASV of the train split, the L2 norm of its linear-base weights (log
abundance and presence, over classes) and the baseline forest's ``feature_importances_``, in
q2-sample-classifier's ImportanceFormat; stored by the worker as the output ``importance``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aam_core.checkpoint import load_checkpoint
from aam_core.io import Inputs
from aam_core.plan import TargetSpec
from aam_core.train import outputs
from aam_core.train.baselines import BaselineResult
from aam_core.train.outputs import importance_frame, write_importance
from aam_core.train.run import run_train
from app.store import LocalArtifactStore
from tests.conftest import train_plan
from worker.finish import store_outputs

AGE = TargetSpec("age", "regression")
SITE = TargetSpec("site", "classification")


def q2_importance_rows(path: Path) -> tuple[list[str], dict[str, list[float]]]:
    """The file checked as q2-sample-classifier's ImportanceFormat validates it (a header line;
    then per line a feature and one or more cells, each a number; at least one data line),
    parsed: (header, feature -> values)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "the file ends with a line break"
    header, body = lines[0].split("\t"), lines[1:-1]
    assert len(header) >= 2, f"header {header!r}"
    assert body, "ImportanceFormat needs at least one data line after the header"
    rows: dict[str, list[float]] = {}
    for number, line in enumerate(body, start=2):
        cells = line.strip().split("\t")
        assert len(cells) == len(header) >= 2, f"line {number}: {cells!r}"
        values = [float(c) for c in cells[1:]]  # ValueError: a cell that is not a number
        assert all(np.isfinite(values)), f"line {number}: {cells!r}"
        assert cells[0] not in rows, f"line {number}: feature {cells[0]!r} repeats"
        rows[cells[0]] = values
    return header, rows


def _abs_weights(checkpoint_path: Path, inputs: Inputs) -> dict[str, np.ndarray]:
    """Feature ID -> its |weights| (``[2 * out_dim]``: log abundance, then presence) in the
    checkpoint's linear base."""
    checkpoint = load_checkpoint(checkpoint_path)
    assert checkpoint.vocabulary is not None
    state = checkpoint.state_dict
    weight = np.concatenate(
        [state[f"target_head.linear.{name}"].double().numpy() for name in ("weight", "presence")],
        axis=1,
    )  # [V + 1, 2K]
    row = {seq: i + 1 for i, seq in enumerate(checkpoint.vocabulary)}
    sequence = dict(zip(inputs.table.feature_ids, inputs.sequences, strict=True))
    return {fid: np.abs(weight[row[seq]]) for fid, seq in sequence.items() if seq in row}


def test_the_frame_sorts_by_its_first_column_and_writes_q2_text(tmp_path: Path) -> None:
    frame = importance_frame(
        ["a", "b", "c", "d"],
        importance=np.array([0.1, 0.5, 0.1, 2.0]),
        random_forest=np.array([0.4, 0.3, 0.2, 0.1]),
    )
    assert frame is not None
    write_importance(tmp_path / "importance.tsv", frame)
    assert (tmp_path / "importance.tsv").read_text() == (
        "feature\timportance\trandom_forest\n"
        "d\t2.0\t0.1\nb\t0.5\t0.3\na\t0.1\t0.4\nc\t0.1\t0.2\n"  # ties keep their order
    )
    forest_only = importance_frame(["a", "b"], random_forest=np.array([0.25, 0.75]))
    assert forest_only is not None and list(forest_only.columns) == ["random_forest"]
    assert list(forest_only.index) == ["b", "a"]
    assert importance_frame(["a"]) is None
    assert importance_frame([], importance=np.array([])) is None
    with pytest.raises(ValueError, match=r"importance holds \(3,\) values, expected one per "):
        importance_frame(["a", "b"], importance=np.ones(3))


def test_a_regression_run_writes_the_linear_weights_and_the_forests_importances(
    study_inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fitted: list[BaselineResult] = []
    real = outputs.fit_baseline

    def keep(*args: Any, **kwargs: Any) -> BaselineResult:
        fitted.append(real(*args, **kwargs))
        return fitted[-1]

    monkeypatch.setattr(outputs, "fit_baseline", keep)
    plan = train_plan(study_inputs, AGE, epochs=2, baseline=True)
    run = run_train(study_inputs, plan, tmp_path / "run")
    assert run.best_checkpoint is not None and len(fitted) == 1
    header, rows = q2_importance_rows(tmp_path / "run" / "importance.tsv")
    assert header == ["feature", "importance", "random_forest"]

    weights = _abs_weights(run.best_checkpoint, study_inputs)
    assert set(rows) == set(weights)  # one row per ASV of the vocabulary (train split)
    got = np.array([rows[f][0] for f in rows])
    norms = [np.sqrt(np.sum(weights[f] ** 2)) for f in rows]  # out_dim 1: log and presence
    np.testing.assert_allclose(got, norms, rtol=1e-12)
    assert got.max() > 0 and np.all(np.diff(got) <= 0)  # learnt, sorted descending

    forest = fitted[0].forest  # its columns: the prepared (rarefied) table's features
    prepared_ids = _prepared_feature_ids(study_inputs, plan)
    index = {fid: j for j, fid in enumerate(prepared_ids)}
    expected = np.asarray(forest.feature_importances_)[[index[f] for f in rows]]
    np.testing.assert_array_equal([rows[f][1] for f in rows], expected)
    assert expected.sum() == pytest.approx(1.0)  # every feature the forest used has a row

    storage = LocalArtifactStore(tmp_path / "artifacts")
    stored = store_outputs(storage, tmp_path / "run")
    assert (
        storage.path(stored["importance"]).read_bytes()
        == (tmp_path / "run" / "importance.tsv").read_bytes()
    )


def _prepared_feature_ids(inputs: Inputs, plan: Any) -> tuple[str, ...]:
    from aam_core.train.prepare import prepare_data

    return prepare_data(inputs, plan.config, target=plan.target).rarefied.feature_ids


def test_a_classifier_ranks_asvs_by_the_norm_of_their_class_weights(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    run = run_train(study_inputs, train_plan(study_inputs, SITE, epochs=2), tmp_path / "run")
    assert run.best_checkpoint is not None
    header, rows = q2_importance_rows(tmp_path / "run" / "importance.tsv")
    assert header == ["feature", "importance"]  # no forest ran
    weights = _abs_weights(run.best_checkpoint, study_inputs)
    assert set(rows) == set(weights) and all(w.shape == (6,) for w in weights.values())
    np.testing.assert_allclose(
        [rows[f][0] for f in rows],
        [np.sqrt(np.sum(weights[f] ** 2)) for f in rows],
        rtol=1e-12,
    )


def test_without_the_linear_term_only_the_forest_or_no_file(
    study_inputs: Inputs, tmp_path: Path
) -> None:
    plain = train_plan(study_inputs, AGE, epochs=1, asv_vocabulary=False, linear_head=False)
    run_train(study_inputs, plain, tmp_path / "plain")
    assert not (tmp_path / "plain" / "importance.tsv").exists()
    assert "importance" not in store_outputs(
        LocalArtifactStore(tmp_path / "artifacts"), tmp_path / "plain"
    )

    forest = train_plan(
        study_inputs, AGE, epochs=1, asv_vocabulary=False, linear_head=False, baseline=True
    )
    run_train(study_inputs, forest, tmp_path / "forest")
    header, rows = q2_importance_rows(tmp_path / "forest" / "importance.tsv")
    assert header == ["feature", "random_forest"]
    values = [v[0] for v in rows.values()]
    assert np.all(np.diff(values) <= 0) and sum(values) == pytest.approx(1.0)
