"""The model page (card, metrics beside baselines, lineage) and the dataset page's depth
histogram, over HTTP (TestClient, open mode), plus the numbers they show."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from app.api.deps import OPEN_OWNER
from app.api.schemas import DepthHistogram
from app.contracts import JobKind, JobState
from app.main import create_app
from app.settings import Settings
from app.store import Dataset, Job, create_job
from app.ui.datasets import histogram_svg
from app.ui.model_view import card_html, headline, metric_rows
from tests.api.models import confounded_metrics, register_tiny

METRICS = {  # a regressor's row metrics as a training run records them (values made up)
    "best": {"epoch": 3, "monitor": "mae", "validation": {"mae": 4.5, "r2": 0.5}},
    "baselines": {
        "random_forest": {"validation": {"mae": 5.25, "r2": 0.25}},
        "constant": {"validation": {"mae": 9.0, "r2": 0.0}},
    },
}


def test_headline_is_the_monitored_metric_beside_the_forest() -> None:
    h = headline(METRICS)
    assert h is not None and (h.name, h.model, h.forest) == ("mae", 4.5, 5.25)
    assert headline({}) is None
    blended = {**METRICS, "ensemble": {"validation": {"ensemble": {"mae": 4.0}}}}
    assert headline(blended).model == 4.0  # type: ignore[union-attr]


def test_metric_rows_put_the_model_beside_the_baselines() -> None:
    card = {"metrics": {"model": {"mae": 4.5}, "baselines": {
        "random_forest": {"mae": 5.25, "r2": 0.25}, "constant": {"mae": 9.0},
        "depth": {"mae": 8.5, "r2": 0.125}}}}  # fmt: skip
    assert metric_rows(card) == [("mae", 4.5, 5.25, 9.0, 8.5), ("r2", None, 0.25, None, 0.125)]
    assert metric_rows({}) == []


def test_histogram_geometry_on_a_log_axis() -> None:
    svg = histogram_svg(DepthHistogram(edges=[10, 100, 1000], counts=[1, 2], zero=0), 100)
    assert svg is not None and svg.max_count == 2
    inner = 640 - 36 - 16
    assert svg.mark == pytest.approx(36 + inner / 2)  # 100 is half way from 10 to 1000
    assert [round(b.height, 1) for b in svg.bars] == [86.0, 172.0]  # (220 - 30 - 18) per 2
    assert [label for _x, label in svg.ticks] == ["10", "100", "1,000"]
    assert histogram_svg(None, 5) is None


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings), follow_redirects=False) as c:
        yield c


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_the_dataset_page_shows_the_histogram_and_default_depth(
    client: TestClient, tmp_path: Path
) -> None:
    spec = SyntheticSpec(n_samples=12, n_asvs=30, asvs_per_sample=8, depth_range=(500, 2000),
                         seed=3)  # fmt: skip
    study = write_study(generate(spec), tmp_path / "study")
    page = client.get("/ui/datasets")
    files = {role: (p.name, p.read_bytes()) for role, p in study.items()}
    answer = client.post("/ui/datasets", files=files, data={"csrf_token": _token(page.text)})
    assert answer.status_code == 303, answer.text
    html = client.get(answer.headers["location"]).text
    # every depth is below 5000, so the default is lowered to keep 90% of the 12 samples
    found = re.search(r"rarefies to <strong>([\d,]+)</strong> reads, keeping (\d+) of 12", html)
    assert found and int(found.group(2)) >= 11
    assert html.count('class="bar"') == 20 and 'id="depth-mark"' in html
    services = client.app.state.services  # type: ignore[attr-defined]
    with services.sessions() as session:  # a dataset uploaded before the histogram existed
        row = session.get(Dataset, answer.headers["location"].rsplit("/", 1)[1])
        row.summary = {k: v for k, v in row.summary.items()
                       if k not in ("depth_histogram", "default_rarefaction")}  # fmt: skip
        session.commit()
    old = client.get(answer.headers["location"]).text
    assert "Depth histogram: not recorded" in old and "depth: not recorded" in old


def test_the_card_is_rendered_with_user_text_escaped() -> None:
    html = str(card_html("# Model `<b>`\n\nname <script>alert(1)</script> & co\n"))
    assert html.startswith("<h3>Model <code>&lt;b&gt;</code></h3>")  # under the page's h2
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html and "<script>" not in html


def test_the_model_page_shows_card_lineage_and_links(client: TestClient, tmp_path: Path) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    model = register_tiny(services, "regressor", OPEN_OWNER, tmp_path)
    listing = client.get("/ui/models").text
    assert f'href="/ui/models/{model.id}"' in listing and "not recorded" in listing
    page = client.get(f"/ui/models/{model.id}")
    assert page.status_code == 200
    html = page.text
    # the card's Markdown as HTML: headings and tables, not the Markdown text
    assert '<div class="card-text" id="card"><h3>' in html and "<table>" in html
    assert "none: imported checkpoint" in html
    assert f"/models/{model.id}/card?format=json" in html
    assert f"/models/{model.id}/checkpoint" in html
    assert client.get("/ui/models/no-such-model").status_code == 404


def test_model_and_job_pages_warn_when_the_labels_follow_depth(
    client: TestClient, tmp_path: Path
) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    metrics = confounded_metrics()
    message = str(escape(metrics["depth_confound"]["message"]))  # as the template escapes it
    model = register_tiny(services, "classifier", OPEN_OWNER, tmp_path, metrics=metrics)
    html = client.get(f"/ui/models/{model.id}").text
    assert f'<p class="warning" id="depth-warning" role="alert"><strong>Warning:</strong> ' \
        f"{message}.</p>" in html  # fmt: skip
    assert "<th>Sequencing depth alone</th>" in html
    assert "<td>roc_auc</td><td>0.625</td><td>—</td><td>0.5</td><td>0.9375</td>" in html
    with services.sessions() as session:  # the train job that made it, finished
        job, _ = create_job(session, owner=OPEN_OWNER, kind=JobKind.train, name="site",
                            spec={}, dataset_id="ds_0000000000000000", model_id=None)  # fmt: skip
        row = session.get_one(Job, job.id)
        row.state, row.model_id = JobState.succeeded.value, model.id
        session.commit()
    for page in (f"/ui/jobs/{job.id}", f"/ui/jobs/{job.id}/baselines"):
        html = client.get(page).text
        assert 'id="depth-warning"' in html and message in html, page
        assert "<td>0.9375</td></tr>" in html  # the depth column of the roc_auc row

    quiet = register_tiny(services, "regressor", OPEN_OWNER, tmp_path)  # before the check
    assert 'id="depth-warning"' not in client.get(f"/ui/models/{quiet.id}").text
