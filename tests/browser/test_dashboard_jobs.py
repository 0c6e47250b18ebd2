"""The dashboard's jobs pages in a real browser against ``python -m aam_service`` (the API and a
CPU worker): a tiny train job's page draws its loss and metric curves from the metrics history
as epochs arrive and shows the random forest and constant baselines, and the jobs list follows
the unfinished job to 100%, both without a reload. Screenshots go to
test-artifacts/screenshots/dashboard-job-curves.png and dashboard-jobs-live.png."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from playwright.sync_api import Browser, expect

from tests.browser.test_dashboard import FAST, serve, shot, study

__all__ = ["serve", "study"]  # module fixtures shared with test_dashboard
EPOCHS = 3
NUMBER = re.compile(r"^-?\d")


def test_a_train_job_draws_its_curves_and_baselines_without_a_reload(
    browser: Browser, serve: str, study: dict[str, Path]
) -> None:
    context = browser.new_context()
    page = context.new_page()
    # Through the API (the server is open): this test is about the jobs pages, not the upload
    files = {role: (path.name, path.read_bytes()) for role, path in study.items()}
    answer = httpx.post(f"{serve}/datasets", files=files, data={"name": "study"}, timeout=30)
    assert answer.status_code == 201, answer.text
    page.goto(f"{serve}/ui/jobs/new")
    page.select_option("select[name=kind]", "train")
    page.select_option("select[name=target_column]", "age")
    page.select_option("select[name=task]", "regression")
    config = {**FAST, "epochs": EPOCHS, "baseline": True}
    page.fill("textarea[name=config]", json.dumps(config))
    page.click("#job-form button[type=submit]")
    expect(page.locator("#job")).to_be_visible()
    page.evaluate("window.notReloaded = true")
    job_id = page.url.rsplit("/", 1)[1]

    listing = context.new_page()  # opened while the job is still queued or running
    listing.goto(f"{serve}/ui/jobs")
    row = listing.locator(f"#job-{job_id}")
    expect(row).to_have_attribute("data-events", f"/jobs/{job_id}/events")
    listing.evaluate("window.notReloaded = true")

    # One point per epoch and split, drawn from GET /jobs/{id}/metrics as events arrive
    for split in ("train", "validation"):
        points = page.locator(f"#loss-curve circle.point.{split}")
        expect(points).to_have_count(EPOCHS, timeout=60_000)
    expect(page.locator("#metric-name")).to_have_text("mae per epoch")
    expect(page.locator("#metric-curve circle.point.validation")).to_have_count(EPOCHS)
    expect(page.locator("#state")).to_have_text("succeeded", timeout=30_000)

    first = page.locator("#baseline-table .baseline-row").first
    expect(first.locator("td").nth(0)).to_have_text("mae")  # the monitored metric first
    for column in (1, 2, 3):  # model, random forest, constant: each a number
        expect(first.locator("td").nth(column)).to_have_text(NUMBER)
    assert page.evaluate("window.notReloaded") is True
    shot(page, "job-curves")

    expect(row.locator(".state")).to_have_text("succeeded", timeout=10_000)
    expect(row.locator(".percent")).to_have_text("100%")
    expect(row.locator(".model a")).to_have_count(1)
    assert listing.evaluate("window.notReloaded") is True
    shot(listing, "jobs-live")
    context.close()
