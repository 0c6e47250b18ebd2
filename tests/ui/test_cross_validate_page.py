"""The cross-validate form and a cross_validate job's page over HTTP (TestClient): the form's
defaults, the API's problems shown by their field, the job as submitted; a running job's fold
progress; a finished job's models x metrics table with the best marked, AAM's differences with
their intervals, the plots (served with the session cookie), the out-of-fold predictions, the
depth warning only when flagged, the refitted model's link; and the jobs list's kind filter.
The finished jobs are rows with hand-made reports in the shape of aam_core.crossval.report."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from aam_core.plan.crossval import CV_MODELS
from aam_core.train.baselines import depth_confound
from app.api.deps import OPEN_OWNER
from app.api.schemas import Progress
from app.contracts import JobKind, JobState
from app.main import create_app
from app.settings import ApiKey, Settings
from app.store import Job, create_job
from app.ui.cv_view import fold_label
from tests.ui.test_pages import ALICE_KEY, Recorder, sign_in, study, token, upload

__all__ = ["study"]  # the module fixture shared with test_pages
# A 1x1 PNG: what the plot route serves is the stored blob, whatever it holds
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201a5d2e1b80000000049454e44ae426082"
)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(tmp_path: Path, recorder: Recorder) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings, dispatcher=recorder), follow_redirects=False) as c:
        yield c


def per_model(mae: float, rmse: float, r2: float, subject: float) -> dict[str, Any]:
    return {
        "per_sample": {"mae": mae, "rmse": rmse, "r2": r2},
        "subject_weighted": {"mae": subject, "rmse": rmse, "r2": r2},
        "sd": {"per_sample": {"mae": 0.5, "rmse": 0.25, "r2": 0.125},
               "subject_weighted": {"mae": 0.5, "rmse": 0.25, "r2": 0.125}},
        "pooled": [], "per_fold": [], "seconds": 12.0, "reads": "relative abundance",
    }  # fmt: skip


def regression_report(*, flagged: bool, refit: str | None) -> dict[str, Any]:
    """A regression's report.cross_validation; depth flagged by the product's own rule."""
    depth_r2, aam_r2 = (0.5, 0.375) if flagged else (0.0, 0.375)
    verdict = depth_confound({"r2": depth_r2}, {"r2": aam_r2}, "regression",
                             target="<age>", scope="cross-validated")  # fmt: skip
    assert verdict is not None and verdict["confounded"] is flagged
    return {
        "folds": 3, "repeats": 1, "first_seed": 0, "n_samples": 24, "n_groups": 8,
        "group_column": "<subject>", "target": {"column": "<age>", "task": "regression"},
        "classes": None, "samples_left_out": {"without a target value": 0,
                                              "below 1000 reads": 2},
        "primary_metric": "mae",
        "models": {
            "aam": per_model(3.25, 4.5, aam_r2, 3.375),
            "forest": per_model(4.125, 5.0, 0.25, 4.0),
            "constant": per_model(6.0, 7.5, -0.0625, 6.25),
            "depth": per_model(5.5, 6.75, depth_r2, 5.75),
        },
        "best": {"mae": "aam", "rmse": "aam", "r2": "depth" if flagged else "aam"},
        "best_baseline": "forest", "depth_free_baselines": ["forest", "constant"],
        "differences": {
            "aam-forest": {"metric": "mae", "mean": -0.875, "low": -1.5, "high": -0.25, "n": 3,
                           "better": "aam"},
            "aam-constant": {"metric": "mae", "mean": -2.75, "low": -3.5, "high": -2.0, "n": 3,
                             "better": "aam"},
            "aam-depth": {"metric": "mae", "mean": 0.125, "low": -0.5, "high": 0.75, "n": 3,
                          "better": "neither"},
        },
        "confounds": {"depth": {
            "metric": "r2", "value": depth_r2, "flagged": flagged,
            "message": verdict["message"], "reason": verdict["reason"],
        }},
        "fold_sizes": [],
        "estimate": {"seconds": 150.0, "per_fold": 50.0, "parts": {"aam": 40.0, "forest": 10.0},
                     "folds": 3, "note": "measured on the first fold"},
        "seconds": 42.0, "folds_reused": 0, "refit_model_id": refit,
    }  # fmt: skip


def finished_job(
    client: TestClient,
    report: dict[str, Any],
    *,
    owner: str = OPEN_OWNER,
    name: str = "cv",
    plots: tuple[str, ...] = ("fold_scores", "oof_predicted_vs_true"),
) -> str:
    """A succeeded cross_validate job's row, its plots stored as blobs."""
    services = client.app.state.services  # type: ignore[attr-defined]
    blob = services.storage.put_bytes(PNG)
    outputs = {"predictions": blob, "report": blob, **{f"plot_{p}": blob for p in plots}}
    spec = {"kind": "cross_validate", "dataset_id": "ds_0000000000000000",
            "target": report["target"], "cv": {"folds": report["folds"], "repeats": 1},
            "refit": report["refit_model_id"] is not None}  # fmt: skip
    with services.sessions() as session:
        job, _ = create_job(session, owner=owner, kind=JobKind.cross_validate, name=name,
                            spec=spec, dataset_id="ds_0000000000000000")  # fmt: skip
        row = session.get_one(Job, job.id)
        row.state, row.outputs = JobState.succeeded.value, outputs
        row.report = {"cross_validation": report}
        row.model_id = report["refit_model_id"]
        row.progress = {"fold": 3, "folds": 3, "fraction": 1.0, "eta_seconds": 0.0}
        session.commit()
        return job.id


def cell(html: str, model: str, metric: str) -> str:
    row = re.search(rf'<tr class="cv-row" id="cv-{model}">(.*?)</tr>', html, re.S)
    assert row, f"no row for {model}"
    found = re.search(rf'<td class="[^"]*" data-metric="{metric}">(.*?)</td>', row.group(1))
    assert found, f"no {metric} cell for {model}"
    return found.group(0)


def test_the_form_offers_every_model_ticked_and_the_api_defaults(
    client: TestClient, study: dict[str, Path]
) -> None:
    dataset = upload(client, study)
    listing = client.get("/ui/jobs").text
    assert 'href="/ui/jobs/cross-validate"' in listing  # beside New job
    html = client.get(f"/ui/jobs/cross-validate?dataset={dataset}").text
    assert 'action="/ui/jobs/cross-validate"' in html
    assert '<input type="hidden" name="kind" value="cross_validate">' in html
    for model in CV_MODELS:
        assert f'name="models" value="{model}" checked' in html
    assert 'name="folds" min="2" max="20" value="5"' in html
    assert 'name="repeats" min="1" max="10" value="1"' in html
    assert 'name="min_reads" min="0" value="1000"' in html
    assert f'<option value="{dataset}" selected>' in html
    assert '"age"' in html  # the columns job_new.js offers as target and group column
    assert 'name="pretrain" >' in html and 'name="refit" >' in html  # unticked
    assert 'name="config"' in html and 'name="group_column"' in html
    dataset_page = client.get(f"/ui/datasets/{dataset}").text
    assert f'href="/ui/jobs/cross-validate?dataset={dataset}"' in dataset_page


def test_problems_are_shown_by_field_and_a_good_form_submits_the_job(
    client: TestClient, recorder: Recorder, study: dict[str, Path]
) -> None:
    dataset = upload(client, study)
    form: dict[str, Any] = {
        "csrf_token": token(client.get("/ui/jobs/cross-validate").text), "dataset_id": dataset,
        "target_column": "age", "task": "regression", "folds": "3", "repeats": "1",
        "group_column": "", "min_reads": "0", "models": ["aam", "forest", "depth"],
        "config": '{"preset": "tiny", "epochs": 1}',
    }  # fmt: skip
    refused: dict[str, tuple[dict[str, Any], str]] = {
        "cv-folds": ({"folds": "1"}, "cv.folds"),
        "cv-models": ({"models": []}, "cv.models"),
        "cv-group_column": ({"group_column": "no_such_column"}, "no_such_column"),
        "config": ({"config": '{"validation_fraction": 0.2}'}, "config.validation_fraction"),
        "target": ({"target_column": "not_a_column"}, "not_a_column"),
    }
    for error, (change, says) in refused.items():
        answer = client.post("/ui/jobs/cross-validate", data={**form, **change})
        assert answer.status_code == 422, (error, answer.text)
        found = re.search(rf'<span class="field-error" id="error-{error}">([^<]*)</span>',
                          answer.text)  # fmt: skip
        assert found and says in found.group(1), (error, answer.text)
        assert 'action="/ui/jobs/cross-validate"' in answer.text  # the form again, as sent
    again = client.post("/ui/jobs/cross-validate", data={**form, "folds": "1"}).text
    assert 'name="models" value="aam" checked' in again
    assert 'name="models" value="linear" >' in again  # as it was sent: unticked
    assert 'value="1">' in again and "&#34;epochs&#34;: 1" in again
    assert recorder.sent == []

    answer = client.post("/ui/jobs/cross-validate", data={**form, "refit": "on"})
    assert answer.status_code == 303, answer.text
    job_id = answer.headers["location"].rsplit("/", 1)[1]
    assert recorder.sent == [(job_id, JobKind.cross_validate)]
    job = client.get(f"/jobs/{job_id}").json()
    assert job["kind"] == "cross_validate" and job["spec"]["refit"] is True
    assert job["spec"]["target"] == {"column": "age", "task": "regression"}
    cv = job["spec"]["cv"]
    assert (cv["folds"], cv["repeats"], cv["min_reads"]) == (3, 1, 0)
    assert cv["models"] == ["aam", "forest", "depth"] and cv["pretrain"] is False
    assert cv.get("group_column") is None
    page = client.get(answer.headers["location"]).text
    assert "queued" in page and 'id="cv-pending"' in page
    assert 'id="loss-curve"' not in page  # a cross-validation has no single training curve


def test_a_running_job_shows_its_fold_progress_and_eta(client: TestClient) -> None:
    report = regression_report(flagged=False, refit=None)
    job_id = finished_job(client, report)
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.sessions() as session:
        row = session.get_one(Job, job_id)
        row.state, row.report, row.outputs = JobState.running.value, None, {}
        row.progress = {"fold": 2, "folds": 3, "epoch": 1, "epochs": 2, "fraction": 0.4,
                        "eta_seconds": 125.0}  # fmt: skip
        session.commit()
    html = client.get(f"/ui/jobs/{job_id}").text
    assert '<span id="fold" class="progress-part">fold 2 of 3</span>' in html
    assert '<progress id="progress-bar" max="1" value="0.4">' in html
    assert '<span id="progress">40%</span>' in html
    assert '<span id="eta" class="progress-part">about 2 min left</span>' in html
    assert f'data-results="/ui/jobs/{job_id}/cross-validation"' in html
    assert 'id="cv-pending"' in html and 'id="cv-table"' not in html
    # after the folds, the refit on every sample
    assert fold_label(Progress(phase="refit", fold=3, folds=3)) == "refit on every sample"
    assert fold_label(Progress(phase="folds", fold=3, folds=4)) == "fold 3 of 4"
    assert fold_label(Progress()) == ""


def test_a_finished_job_shows_the_table_best_intervals_plots_and_refit(
    client: TestClient,
) -> None:
    report = regression_report(flagged=False, refit="mdl_00000000000000aa")
    job_id = finished_job(client, report, name="<b>cv</b>")
    html = client.get(f"/ui/jobs/{job_id}").text
    # per-sample mean ± sd, the subject-weighted mean below it; the best per metric marked
    aam_mae = cell(html, "aam", "mae")
    assert '<td class="best" data-metric="mae"><span class="per-sample">3.25</span>' in aam_mae
    assert "<small>± 0.5</small>" in aam_mae and 'title="best mae">best</span>' in aam_mae
    assert '<small class="subject-weighted">subject-weighted 3.375</small>' in aam_mae
    forest_mae = cell(html, "forest", "mae")
    assert '<td class="" data-metric="mae"><span class="per-sample">4.125</span>' in forest_mae
    assert "best" not in forest_mae
    assert ">-0.0625</span>" in cell(html, "constant", "r2")
    assert html.count('<span class="best-mark" title="best ') == 3
    assert "<th>mae<br><small>lower is better</small></th>" in html
    assert "<th>r2<br><small>higher is better</small></th>" in html
    # AAM's paired differences: the mean, the 95% interval and which side wins
    forest = re.search(r'<tr class="cv-difference" id="cv-difference-forest"[^>]*>(.*?)</tr>',
                       html)  # fmt: skip
    assert forest and "<td>Random forest</td><td>mae</td><td>-0.875</td>" in forest.group(1)
    assert '<td class="interval">[-1.5, -0.25]</td><td>3</td>' in forest.group(1)
    assert '<td class="verdict aam">AAM better</td>' in forest.group(1)
    assert "no clear winner: the interval spans 0" in html  # AAM against depth
    # the plots, out-of-fold predictions, duration and estimate, refit
    for plot in ("fold_scores", "oof_predicted_vs_true"):
        assert f'src="/jobs/{job_id}/plots/{plot}.png"' in html
    assert f'href="/jobs/{job_id}/predictions" download=' in html
    assert "42 s; estimated 2.5 min beforehand (50 s a fold)" in html
    assert '<a id="refit-model" href="/ui/models/mdl_00000000000000aa">' in html
    assert "2 below 1000 reads" in html and "Random forest" in html
    # no warning: the depth check's reason instead
    assert 'id="depth-warning"' not in html
    assert 'id="depth-check"' in html and "depth alone reaches R² 0" in html
    # everything from the user escaped
    assert "<b>cv</b>" not in html and "&lt;b&gt;cv&lt;/b&gt;" in html
    assert "<subject>" not in html and "<code>&lt;subject&gt;</code>" in html
    assert "<age>" not in html and "&lt;age&gt;" in html
    # the fragment job.js swaps in once the job has finished
    fragment = client.get(f"/ui/jobs/{job_id}/cross-validation").text
    assert 'id="cv-table"' in fragment and "<html" not in fragment


def test_the_depth_warning_shows_only_when_flagged(client: TestClient) -> None:
    report = regression_report(flagged=True, refit=None)
    job_id = finished_job(client, report)
    html = client.get(f"/ui/jobs/{job_id}").text
    message = str(escape(report["confounds"]["depth"]["message"]))
    assert f'<p class="warning" id="depth-warning" role="alert"><strong>Warning:</strong> ' \
        f"{message}.</p>" in html  # fmt: skip
    assert "cross-validated" in message and 'id="depth-check"' not in html
    assert 'title="best r2">best</span>' in cell(html, "depth", "r2")
    assert 'id="refit-model"' not in html  # no refit
    assert client.get(f"/ui/jobs/{job_id}/baselines").status_code == 200


def test_plots_are_served_with_the_session_cookie(tmp_path: Path) -> None:
    keys = [ApiKey(owner="alice", key=ALICE_KEY)]  # type: ignore[arg-type]
    settings = Settings(data_dir=tmp_path / "data", api_keys=keys)
    with TestClient(create_app(settings, dispatcher=Recorder()), follow_redirects=False) as c:
        job_id = finished_job(c, regression_report(flagged=False, refit=None), owner="alice")
        assert c.get(f"/jobs/{job_id}/plots/fold_scores.png").status_code == 401
        sign_in(c, ALICE_KEY)
        html = c.get(f"/ui/jobs/{job_id}").text
        for src in re.findall(r'<img id="plot-\w+" src="([^"]+)"', html):
            answer = c.get(src)
            assert answer.status_code == 200 and answer.content == PNG, src
            assert answer.headers["content-type"] == "image/png"


def test_the_jobs_list_filters_by_kind(client: TestClient) -> None:
    report = regression_report(flagged=False, refit=None)
    job_id = finished_job(client, report)
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.sessions() as session:
        other, _ = create_job(session, owner=OPEN_OWNER, kind=JobKind.pretrain, name="pre",
                              spec={}, dataset_id="ds_0000000000000000")  # fmt: skip
        session.commit()
    everything = client.get("/ui/jobs").text
    assert f'id="job-{job_id}"' in everything and f'id="job-{other.id}"' in everything
    assert '<td class="kind">cross-validate</td>' in everything
    assert '<option value="cross_validate" >cross-validate</option>' in everything
    only = client.get("/ui/jobs?kind=cross_validate").text
    assert f'id="job-{job_id}"' in only and f'id="job-{other.id}"' not in only
    assert '<option value="cross_validate" selected>' in only
    none = client.get("/ui/jobs?kind=predict").text
    assert "No predict jobs." in none
