"""/docs and /redoc render in a real browser with every request to another host blocked (an
offline cluster): Swagger UI lists every operation, ReDoc every operation's section.

ReDoc's sidebar always asks cdn.redoc.ly for its attribution logo (unconditionally, in
redoc.standalone.js); blocked, only that 10-pixel logo is missing. Nothing else may leave."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Route

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def offline_context(browser: Browser, server: str) -> tuple[BrowserContext, list[str]]:
    """A browser context that reaches only ``server``; the other URLs asked for are aborted
    and listed."""
    blocked: list[str] = []

    def only_the_server(route: Route) -> None:
        if route.request.url.startswith(server):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context = browser.new_context()
    context.route("**/*", only_the_server)
    return context, blocked


def operations(base: str) -> list[tuple[str, str]]:
    paths = httpx.get(f"{base}/openapi.json").json()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


@pytest.mark.parametrize(
    ("page_path", "selector", "tolerated"),
    [("/docs", ".opblock", []), ("/redoc", "[id^='operation/']", [REDOC_LOGO])],
)
def test_documentation_renders_with_the_network_blocked(
    browser: Browser, server: str, page_path: str, selector: str, tolerated: list[str]
) -> None:
    context, blocked = offline_context(browser, server)
    page = context.new_page()
    page.goto(f"{server}{page_path}")
    expected = operations(server)
    page.wait_for_function(
        f"document.querySelectorAll({selector!r}).length >= {len(expected)}", timeout=30_000
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{page_path.strip('/')}.png"))
    assert page.locator(selector).count() >= len(expected)
    assert [url for url in blocked if url not in tolerated] == []
    context.close()


UI_PAGES = ["/ui/", "/ui/jobs", "/ui/jobs/new", "/ui/datasets", "/ui/models", "/ui/predict"]


def test_the_dashboard_loads_nothing_from_other_hosts(browser: Browser, server: str) -> None:
    """Every page of an open loopback server's dashboard, with requests beyond it blocked."""
    context, left = offline_context(browser, server)
    page = context.new_page()
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    for path in UI_PAGES:
        response = page.goto(f"{server}{path}")
        assert response is not None and response.status == 200, path
        page.wait_for_load_state("load")
        assert page.locator("nav a", has_text="Datasets").count() == 1, path
    assert left == []
    assert failed == []  # every stylesheet and script the pages ask for is served
    context.close()
