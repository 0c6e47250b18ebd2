"""Browser fixtures: Debian's Chromium driven by Playwright, and the API as a real process
(``python -m app``, open on loopback, SQLite and the embedded broker in a temporary data dir)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.services import free_port, unavailable, wait_healthy


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Per module: Playwright's sync API runs an event loop in this thread while it is open,
    and later tests that call asyncio.run() (tests/api/test_thread_pool.py) must not see it."""
    chromium = shutil.which("chromium")
    if chromium is None:
        unavailable("Debian's chromium is not installed (scripts/services.sh installs it as root)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m app`` on a free loopback port; its base URL."""
    root = tmp_path_factory.mktemp("browser")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AAM_")}
    env.update(AAM_DATA_DIR=str(root / "data"), AAM_PORT=str(port), AAM_LOG_LEVEL="WARNING")
    log = (root / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "app"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(base, process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {Path(log.name).read_text()[-2000:]}") from None
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
