"""The job page's baseline table rows and monitored metric, from a job document and its
model's checkpoint metrics (no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aam_core.train.baselines import depth_confound
from app.api.schemas import JobOut
from app.ui.jobs import baseline_rows, monitor_of
from app.ui.model_view import depth_warning


def job(**fields: Any) -> JobOut:
    document: dict[str, Any] = {
        "id": "job_1", "kind": "train", "name": "n", "state": "succeeded",
        "created_at": datetime(2025, 1, 1, tzinfo=UTC), "started_at": None, "finished_at": None,
        "dataset_id": "ds_1", "base_model_id": None, "model_id": "mdl_1", "progress": {},
        "metrics": {}, "best": {}, "attempts": 1, "device": None, "worker": None, "error": None,
        "report": None, "spec": {"target": {"column": "age", "task": "regression"}},
        "cancel_requested": False, "outputs": [],
    }  # fmt: skip
    return JobOut.model_validate({**document, **fields})


def test_rows_set_the_best_epoch_beside_both_baselines_monitored_metric_first() -> None:
    document = job(
        metrics={"validation": {"mae": 9.0, "r2": 0.0},
                 "baseline": {"metrics": {"r2": 0.25, "mae": 4.5}}},
    )  # fmt: skip
    model = {
        "best": {"validation": {"loss": 1.0, "mae": 3.5, "r2": 0.5}},
        "baselines": {
            "constant": {"validation": {"mae": 6.0, "r2": -0.125}},
            "depth": {"validation": {"mae": 5.5, "r2": 0.0625}},
        },
    }
    assert baseline_rows(document, model) == [
        {"metric": "mae", "model": 3.5, "random_forest": 4.5, "constant": 6.0, "depth": 5.5},
        {"metric": "r2", "model": 0.5, "random_forest": 0.25, "constant": -0.125,
         "depth": 0.0625},
    ]  # fmt: skip
    # Before a model exists: the latest epoch's numbers, the forest's only, no constant
    assert baseline_rows(document, None)[0] == {
        "metric": "mae",
        "model": 9.0,
        "random_forest": 4.5,
        "constant": None,
        "depth": None,
    }
    # A job whose model is gone still has the depth model's figures in its report
    reported = job(metrics=document.metrics.model_dump(),
                   report={"depth_baseline": {"metrics": {"mae": 5.5, "r2": 0.0625}}})  # fmt: skip
    assert baseline_rows(reported, None)[1]["depth"] == 0.0625


def test_the_monitored_metric_is_the_jobs_own_else_the_regression_default() -> None:
    assert monitor_of(job()) == "mae"
    assert monitor_of(job(best={"metric": "r2"})) == "r2"
    assert monitor_of(job(report={"monitor": "loss"})) == ""  # the loss curve already shows it
    classify = {"target": {"column": "sex", "task": "classification"}}
    assert monitor_of(job(spec=classify)) == ""
    assert monitor_of(job(spec={**classify, "config": {"monitor": "roc_auc"}})) == "roc_auc"


def test_the_depth_warning_is_the_model_s_verdict_else_the_report_s() -> None:
    flagged = depth_confound({"roc_auc": 0.875}, {"roc_auc": 0.625}, "classification")
    clear = depth_confound({"roc_auc": 0.5}, {"roc_auc": 0.875}, "classification")
    assert flagged is not None and clear is not None
    assert depth_warning({"depth_confound": flagged}, None) == flagged["message"]
    assert depth_warning(None, {"depth_confound": flagged}) == flagged["message"]
    assert depth_warning({"depth_confound": clear}, {"depth_confound": flagged}) is None
    assert depth_warning({"best": {}}, None) is None  # a model trained before the check
