"""/docs and /redoc render in a real browser with every request to another host blocked (an
offline cluster): Swagger UI lists every operation, ReDoc every operation's section.

ReDoc's sidebar always asks cdn.redoc.ly for its attribution logo (unconditionally, in
redoc.standalone.js); blocked, only that 10-pixel logo is missing. Nothing else may leave."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Route

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


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
    blocked: list[str] = []

    def only_the_server(route: Route) -> None:
        if route.request.url.startswith(server):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context = browser.new_context()
    context.route("**/*", only_the_server)
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
