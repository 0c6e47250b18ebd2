"""The dashboard (/ui) in a real browser against real processes: sign in with a key (a wrong
one refused with a message), upload a study, another owner's dataset not shown, and a tiny
pretrain job submitted from the form whose progress reaches 100% on its page without a reload
(``python -m aam_service``: the API and a CPU worker on the embedded broker). Each page's
screenshot goes to test-artifacts/screenshots/dashboard-*.png."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from aam_core.plan.config import run_settings
from tests.services import free_port

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
ALICE_KEY = "alice-browser-key-0123456789"
BOB_KEY = "bob-browser-key-01234567890a"
# Small enough that a tiny-preset epoch takes a second on two CPU cores (tests/worker/helpers)
FAST = {"preset": "tiny", "epochs": 1, "batch_size": 8, "lr": 3e-3, "rarefaction_depth": 1000,
        "token_limit": 32, "patience": 0, "baseline": False}  # fmt: skip
# A pretrain job takes only the settings that apply to pretraining (no baseline: no target).
PRETRAIN_FAST = {k: v for k, v in FAST.items() if k in run_settings("pretrain")}


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"dashboard-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spec = SyntheticSpec(
        n_samples=24, n_asvs=40, asvs_per_sample=10, depth_range=(1500, 4000), seed=3
    )
    return write_study(generate(spec), tmp_path_factory.mktemp("dashboard-study"))


def start(root: Path, module: str, ready: str, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m MODULE`` on a free loopback port, once ``ready`` (a path or a log line)
    answers; the process and its base URL."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AAM_")}
    environ.update(AAM_DATA_DIR=str(root / "data"), AAM_PORT=str(port), AAM_LOG_LEVEL="WARNING",
                   OMP_NUM_THREADS="1")  # fmt: skip
    environ.update(env)
    log_path = root / f"{module}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", module], env=environ, stdout=log,
                                   stderr=log, stdin=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{module} exited: {log_path.read_text()[-2000:]}")
        try:
            if ready.startswith("/"):
                if httpx.get(f"{base}{ready}", timeout=1).status_code == 200:
                    return process, base
            elif ready in log_path.read_text(errors="replace"):
                return process, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{module} was not ready within 90 s")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m app`` with API keys for alice and bob."""
    process, base = start(
        tmp_path_factory.mktemp("keyed"), "app", "/health",
        AAM_API_KEYS=f"alice:{ALICE_KEY},bob:{BOB_KEY}",
    )  # fmt: skip
    yield base
    stop(process)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m aam_service`` (open, on loopback): the API and one CPU worker."""
    process, base = start(
        tmp_path_factory.mktemp("serve"), "aam_service", "aam serve: AAM service at",
        AAM_DEVICE="cpu", AAM_HEARTBEAT_TIMEOUT_SECONDS="4",
    )  # fmt: skip
    yield base
    stop(process)


def sign_in(page: Page, base: str, key: str) -> None:
    page.goto(f"{base}/ui/jobs")
    expect(page).to_have_url(f"{base}/ui/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")


def upload(page: Page, base: str, study: dict[str, Path], name: str) -> str:
    page.goto(f"{base}/ui/datasets")
    page.fill("#upload-form input[name=name]", name)
    for role in ("table", "tree", "metadata"):
        page.set_input_files(f"#upload-form input[name={role}]", str(study[role]))
    page.click("#upload-form button[type=submit]")
    expect(page.locator("#n-samples")).to_be_visible()
    return page.url.rsplit("/", 1)[1]


def test_sign_in_and_out_and_a_wrong_key(browser: Browser, keyed_server: str) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, keyed_server, "not-the-right-key-0000")
    expect(page.locator(".message")).to_have_text("invalid API key")
    shot(page, "login-refused")
    page.fill("input[name=key]", ALICE_KEY)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{keyed_server}/ui/jobs")
    expect(page.locator(".who")).to_contain_text("alice")
    shot(page, "jobs-empty")
    page.click("#sign-out")
    expect(page).to_have_url(f"{keyed_server}/ui/login")
    page.goto(f"{keyed_server}/ui/datasets")
    expect(page).to_have_url(f"{keyed_server}/ui/login")
    context.close()


def test_an_upload_is_not_shown_to_another_owner(
    browser: Browser, keyed_server: str, study: dict[str, Path]
) -> None:
    alice = browser.new_context()
    page = alice.new_page()
    sign_in(page, keyed_server, ALICE_KEY)
    dataset = upload(page, keyed_server, study, "alice's study")
    expect(page.locator("#n-samples")).to_have_text("24")
    expect(page.locator("#columns")).to_contain_text("age")
    shot(page, "dataset")
    page.goto(f"{keyed_server}/ui/datasets")
    expect(page.locator(".dataset-row")).to_have_count(1)
    shot(page, "datasets")
    alice.close()

    bob = browser.new_context()
    page = bob.new_page()
    sign_in(page, keyed_server, BOB_KEY)
    page.goto(f"{keyed_server}/ui/datasets")
    expect(page.locator(".who")).to_contain_text("bob")
    expect(page.locator(".dataset-row")).to_have_count(0)
    assert page.goto(f"{keyed_server}/ui/datasets/{dataset}").status == 404  # type: ignore[union-attr]
    bob.close()


def test_a_pretrain_job_reaches_100_percent_without_a_reload(
    browser: Browser, serve: str, study: dict[str, Path]
) -> None:
    context = browser.new_context()
    page = context.new_page()
    upload(page, serve, study, "study")
    page.goto(f"{serve}/ui/jobs/new")
    page.select_option("select[name=kind]", "train")
    expect(page.locator("select[name=target_column] option")).not_to_have_count(0)
    page.select_option("select[name=kind]", "pretrain")
    page.fill("textarea[name=config]", json.dumps({**PRETRAIN_FAST, "epochs": 0}))
    page.click("#job-form button[type=submit]")
    expect(page.locator("#error-config")).to_contain_text("config.epochs")  # a 422, by its field
    shot(page, "job-new-problem")
    page.fill("textarea[name=config]", json.dumps(PRETRAIN_FAST))
    page.click("#job-form button[type=submit]")
    expect(page.locator("#job")).to_be_visible()
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#progress")).to_have_text("100%", timeout=60_000)
    expect(page.locator("#state")).to_have_text("succeeded")
    expect(page.locator("#model a")).to_have_count(1)
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("#log").inner_text().strip() != ""
    shot(page, "job")
    page.goto(f"{serve}/ui/jobs?state=succeeded")
    expect(page.locator(".job-row")).to_have_count(1)
    shot(page, "jobs")
    page.goto(f"{serve}/ui/models")
    expect(page.locator(".model-row")).to_have_count(1)
    href = page.locator(".model-row a", has_text="Download").get_attribute("href")
    assert href is not None and href.endswith("/checkpoint")
    shot(page, "models")
    page.goto(f"{serve}/ui/predict")
    shot(page, "predict")
    context.close()
