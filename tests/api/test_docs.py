"""/docs and /redoc work offline: every script, style and image they load is served by the API
itself (fastapi-offline ships Swagger UI and ReDoc), none comes from a CDN."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

ASSET = re.compile(r"""(?:src|href|url)\s*[:=]\s*["']([^"']+)["']""")


@pytest.mark.parametrize(
    ("page", "script"),
    [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")],
)
def test_documentation_pages_load_only_from_the_server(
    client: TestClient, page: str, script: str
) -> None:
    html = client.get(page)
    assert html.status_code == 200
    assets = ASSET.findall(html.text)
    assert any(a.endswith(script) for a in assets), assets
    assert [a for a in assets if not a.startswith("/")] == []  # no other host
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > (100_000 if asset.endswith(".js") else 100), asset


def test_swagger_ui_asks_no_validator_on_the_internet(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text


def test_every_reference_of_the_openapi_document_resolves(client: TestClient) -> None:
    # a pydantic schema's "#/$defs/..." inside the document pointed nowhere: ReDoc refused to
    # render at all ("Invalid reference token: $defs")
    document = client.get("/openapi.json").json()
    refs: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert refs, "the document has references"
    for ref in set(refs):
        target: object = document
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict) and part in target, ref
            target = target[part]
