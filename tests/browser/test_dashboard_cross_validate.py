"""The cross-validate form and a cross_validate job's page in a real browser against
``python -m aam_service`` (the API and a CPU worker): the form's 422 shown by its field, then a
tiny two-fold run with a refit whose results (models x metrics with the best marked, AAM's
differences, the plots, the refitted model's link) appear on the job's page without a reload.
The synthetic study's depths are drawn apart from its ages, so no depth warning is shown.
Screenshot: test-artifacts/screenshots/dashboard-cross-validate.png."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.browser.test_dashboard import serve, shot, study

__all__ = ["serve", "study"]  # module fixtures shared with test_dashboard
TINY = {"preset": "tiny", "epochs": 2, "rarefaction_depth": 500, "token_limit": 32}
MODELS = ["aam", "forest", "constant", "depth"]
NUMBER = re.compile(r"^-?\d")
FOLD = re.compile(r"^(fold \d of \d|refit on every sample)$")  # the last progress event's


def test_a_cross_validation_submitted_from_the_form_shows_its_results(
    browser: Browser, serve: str, study: dict[str, Path]
) -> None:
    files = {role: (path.name, path.read_bytes()) for role, path in study.items()}
    answer = httpx.post(f"{serve}/datasets", files=files, data={"name": "study"}, timeout=30)
    assert answer.status_code == 201, answer.text
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{serve}/ui/jobs")
    page.click("#cross-validate")  # beside New job
    expect(page.locator("h1")).to_have_text("Cross-validate")
    boxes = page.locator("#cv-models input[name=models]")
    expect(boxes).to_have_count(5)
    for k in range(5):
        expect(boxes.nth(k)).to_be_checked()
        boxes.nth(k).uncheck()
    page.select_option("select[name=target_column]", "age")
    expect(page.locator("select[name=task]")).to_have_value("regression")
    page.select_option("select[name=group_column]", "subject")
    page.fill("input[name=folds]", "2")
    page.fill("textarea[name=config]", json.dumps(TINY))
    page.click("#cv-form button[type=submit]")
    expect(page.locator("#error-cv-models")).to_contain_text("cv.models")  # the API's 422

    for model in MODELS:  # the form came back as sent: folds, group column and config kept
        page.check(f"#cv-models input[value={model}]")
    expect(page.locator("input[name=folds]")).to_have_value("2")
    expect(page.locator("select[name=group_column]")).to_have_value("subject")
    page.check("input[name=refit]")
    page.click("#cv-form button[type=submit]")
    expect(page.locator("#job")).to_be_visible()
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#cv-pending")).to_be_visible()

    expect(page.locator("#state")).to_have_text("succeeded", timeout=75_000)
    table = page.locator("#cv-table")
    expect(table.locator(".cv-row")).to_have_count(len(MODELS))  # swapped in by job.js
    expect(page.locator("#progress")).to_have_text("100%")
    expect(page.locator("#fold")).to_have_text(FOLD)
    for metric in ("mae", "rmse", "r2"):
        expect(table.locator(f"td.best[data-metric={metric}]")).to_have_count(1)
        expect(table.locator(f"#cv-aam td[data-metric={metric}] .per-sample")).to_have_text(NUMBER)
    expect(table.locator("#cv-aam .subject-weighted").first).to_contain_text("subject-weighted")
    differences = page.locator("#cv-differences .cv-difference")
    expect(differences).to_have_count(len(MODELS) - 1)
    expect(differences.first.locator(".interval")).to_have_text(re.compile(r"^\[-?\d.*, -?\d.*\]$"))
    expect(differences.first.locator(".verdict")).to_have_text(
        re.compile(r"^(AAM better|.+ better|no clear winner: the interval spans 0)$")
    )
    expect(page.locator("#cv-design")).to_contain_text("2 folds")
    expect(page.locator("#cv-design")).to_contain_text("subject")
    for plot in ("fold_scores", "oof_predicted_vs_true"):
        image = page.locator(f"#plot-{plot}")
        expect(image).to_be_visible()
        page.wait_for_function(
            "id => { const i = document.getElementById(id); return i.complete && "
            "i.naturalWidth > 0; }",
            arg=f"plot-{plot}", timeout=10_000,
        )  # fmt: skip
    expect(page.locator("#depth-warning")).to_have_count(0)  # depth is drawn apart from age
    expect(page.locator("#depth-check")).to_contain_text("depth alone reaches")
    predictions = page.locator("#cv-predictions").get_attribute("href")
    assert predictions is not None
    tsv = httpx.get(f"{serve}{predictions}", timeout=30)
    assert tsv.status_code == 200 and tsv.text.startswith("sample_id\t")
    assert page.evaluate("window.notReloaded") is True
    shot(page, "cross-validate")

    page.click("#refit-model")
    expect(page.locator("#model-facts")).to_contain_text("regressor")
    page.goto(f"{serve}/ui/jobs?kind=cross_validate")
    expect(page.locator(".job-row .kind")).to_have_text(["cross-validate"])
    context.close()
