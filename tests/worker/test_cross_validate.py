"""A cross_validate job run by real worker processes (real Redis): its out-of-fold predictions,
figures, plots and refitted model; and a worker killed with SIGKILL in the middle of a fold,
after which a new worker keeps the finished folds, reruns only the rest and reports what an
uninterrupted run reports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error

from aam_core.checkpoint import load_checkpoint
from app.contracts import JobState
from app.store import get_model, request_cancel
from tests.worker.helpers import AGE, FAST, Store, alive, running, wait_for

RECIPE = {**FAST, "epochs": 4}
CV = {"folds": 3, "group_column": "subject", "models": ["aam", "forest", "constant", "depth"]}


def _stored(store: Store, digest: str) -> Path:
    return store.storage.path(digest)


def _check_folds(report: dict[str, Any], oof: pd.DataFrame, subjects: pd.Series) -> None:
    """Every sample once per repeat and model; no sample's subject among its fold's training
    samples (the other folds' test samples); each fold's MAE as recomputed from the rows."""
    for model, entry in report["models"].items():
        rows = oof[oof["model"] == model]
        assert sorted(rows["sample_id"]) == sorted(subjects.index)
        for record in entry["per_fold"]:
            test = rows[rows["fold"] == record["fold"]]
            train = rows[rows["fold"] != record["fold"]]
            assert not set(subjects[test["sample_id"]]) & set(subjects[train["sample_id"]])
            assert record["mae"] == pytest.approx(
                mean_absolute_error(test["true"], test["prediction"])
            )


def test_cross_validate_job_and_a_worker_killed_in_a_fold(
    tmp_path: Path, study_files: dict[str, Path], redis_url: str
) -> None:
    subjects = pd.read_csv(study_files["metadata"], sep="\t", index_col=0, comment="#")["subject"]
    spec = {"target": AGE, "config": RECIPE, "cv": CV}
    with Store.open(tmp_path / "data", broker_url=redis_url) as store:
        dataset = store.add_dataset(study_files)
        with running("worker", store.env(), tmp_path / "worker1.log") as first:
            whole = store.add_job("cross_validate", dataset, refit=True, **spec)
            done = store.wait(whole, JobState.succeeded, timeout=300)
            crashed = store.add_job("cross_validate", dataset, **spec)
            fold_file = store.settings.data_dir / "runs" / crashed / "folds" / "seed0-fold1.json"
            wait_for(
                "the second job's first fold to finish",
                lambda: (store.job(crashed).progress.get("fold") or 0) >= 2,
                timeout=180,
                every=0.05,
            )
            kept = fold_file.stat().st_mtime_ns
            killed = first.kill()  # kill -9: the worker and the job's process
            wait_for("the killed processes to end", lambda: not any(map(alive, killed)), 10)
        with running("worker", store.env(), tmp_path / "worker2.log"):
            resumed = store.wait(crashed, JobState.succeeded, timeout=300)
            # a cancelled job stops in its second fold, keeping the first
            cancelled = store.add_job("cross_validate", dataset, **spec)
            wait_for(
                "the third job's second fold",
                lambda: (store.job(cancelled).progress.get("fold") or 0) >= 2,
                timeout=180,
                every=0.05,
            )
            with store.sessions() as session:
                assert request_cancel(session, cancelled) == JobState.cancelling
            stopped = store.wait(cancelled, JobState.cancelled, timeout=60)

    report = done.report["cross_validation"]
    assert (report["folds"], report["repeats"], report["n_samples"]) == (3, 1, 48)
    assert report["n_groups"] == 12 and report["group_column"] == "subject"
    assert set(report["models"]) == {"aam", "forest", "constant", "depth"}
    assert set(report["differences"]) == {"aam-forest", "aam-constant", "aam-depth"}
    assert report["estimate"]["seconds"] > 0 and set(report["estimate"]["parts"]) == {
        "aam",
        "forest",
    }
    assert report["confounds"]["depth"]["metric"] == "r2"
    assert {"predictions", "report", "plot_fold_scores", "plot_oof_predicted_vs_true"} <= set(
        done.outputs
    )
    for name in ("plot_fold_scores", "plot_oof_predicted_vs_true"):
        assert _stored(store, done.outputs[name]).read_bytes()[:4] == b"\x89PNG"
    oof = pd.read_csv(_stored(store, done.outputs["predictions"]), sep="\t")
    assert list(oof.columns[:6]) == ["sample_id", "repeat", "fold", "model", "true", "prediction"]
    _check_folds(report, oof, subjects)
    # the refitted model: registered, trained on every sample, citing the figures
    assert report["refit_model_id"] == done.model_id is not None
    with store.sessions() as session:
        model = get_model(session, done.model_id, None)
        assert model is not None
        checkpoint = load_checkpoint(_stored(store, model.checkpoint_sha256))
    cited = checkpoint.training["cross_validation"]
    assert cited["folds"] == 3 and cited["models"]["aam"]["per_sample"] == pytest.approx(
        report["models"]["aam"]["per_sample"]
    )
    assert checkpoint.training["n_train"] + checkpoint.training["n_validation"] == 48

    # the killed job: fold 1 kept (its file untouched), the rest rerun, the same figures
    assert resumed.attempts == 2
    logs = store.logs(crashed)
    assert any(re.match(r"[12] of 3 folds were finished by an earlier run", m) for m in logs)
    assert fold_file.stat().st_mtime_ns == kept
    again = resumed.report["cross_validation"]
    assert again["folds_reused"] >= 1
    for model, entry in report["models"].items():
        for a, b in zip(entry["per_fold"], again["models"][model]["per_fold"], strict=True):
            assert b["mae"] == pytest.approx(a["mae"], rel=1e-4), (model, a, b)
    assert stopped.report is None and "predictions" not in (stopped.outputs or {})
    folds = store.settings.data_dir / "runs" / cancelled / "folds"
    assert [f.name for f in sorted(folds.glob("*.json"))] == ["seed0-fold1.json"]
    stored = json.loads(fold_file.read_text())
    assert set(stored["records"]) == set(report["models"])
    assert np.isfinite(again["models"]["aam"]["per_sample"]["mae"])
