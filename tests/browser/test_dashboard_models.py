"""The dashboard's model, dataset and predict pages in a real browser (open ``python -m app``):
a dataset uploaded through the form's XMLHttpRequest shows its depth histogram with the
default rarefaction depth marked; an imported tiny regressor's page shows its card and
lineage; predicting by upload lists one row per sample of the table, and the downloaded TSV
holds exactly those samples. Screenshots go to test-artifacts/screenshots/dashboard-*.png."""

from __future__ import annotations

import csv
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.io import read_table
from tests.api.models import tiny_checkpoint

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec = SyntheticSpec(n_samples=16, n_asvs=30, asvs_per_sample=8, depth_range=(800, 9000),
                         seed=5)  # fmt: skip
    return write_study(generate(spec), tmp_path_factory.mktemp("models-study"))


def test_dataset_histogram_model_page_and_predict_by_upload(
    browser: Browser, server: str, study: dict[str, Path], tmp_path: Path
) -> None:
    checkpoint = tiny_checkpoint("regressor", tmp_path / "tiny-age.pt")
    with checkpoint.open("rb") as f:
        answer = httpx.post(f"{server}/models", files={"checkpoint": ("tiny-age.pt", f)},
                            data={"name": "tiny age"}, timeout=60)  # fmt: skip
    assert answer.status_code == 201, answer.text
    model_id = answer.json()["id"]

    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(f"{server}/ui/datasets")
    page.fill("#upload-form input[name=name]", "depths")
    for role in ("table", "tree", "metadata"):
        page.set_input_files(f"#upload-form input[name={role}]", str(study[role]))
    with page.expect_request(
        lambda r: r.method == "POST" and r.url.endswith("/ui/datasets")
    ) as sent:
        page.click("#upload-form button[type=submit]")
    assert sent.value.resource_type == "xhr"  # posted by datasets.js, with upload progress
    expect(page.locator("#n-samples")).to_have_text("16")
    expect(page.locator("#depth-histogram svg rect.bar")).to_have_count(20)
    expect(page.locator("#depth-mark")).to_have_count(1)
    expect(page.locator("#default-depth")).to_contain_text("of 16 samples")
    shot(page, "dataset-histogram")

    page.goto(f"{server}/ui/models")
    page.click(f"#{model_id} a[href$='/ui/models/{model_id}']")
    expect(page.locator("h1")).to_have_text("tiny age")
    expect(page.locator("#lineage")).to_contain_text("imported checkpoint")
    expect(page.locator("#card")).to_contain_text("regressor")
    card = page.locator("#card-json").get_attribute("href")
    assert card is not None and httpx.get(f"{server}{card}").json()["model"]["kind"] == "regressor"
    shot(page, "model")

    page.click("a[href$='/ui/predict?model=" + model_id + "']")
    page.set_input_files("#predict-form input[name=table]", str(study["table"]))
    page.click("#predict-form button[type=submit]")
    samples = list(read_table(study["table"]).sample_ids)
    expect(page.locator("#predictions tbody tr")).to_have_count(len(samples))
    with page.expect_download() as download:
        page.click("#download-tsv")
    saved = tmp_path / "predictions.tsv"
    download.value.save_as(saved)
    with saved.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert sorted(r["sample_id"] for r in rows) == sorted(samples)
    assert all(r["prediction"] for r in rows)
    shot(page, "predict-result")
    context.close()
