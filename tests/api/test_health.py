from __future__ import annotations

from fastapi.testclient import TestClient

from aam_core import __version__
from app.main import create_app
from tests.api.conftest import ALICE, MakeSettings, RecordingDispatcher


def test_health_needs_no_key_and_names_the_version(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}
    assert len(response.headers["x-request-id"]) == 32


LINKS = {
    "docs": "/docs",
    "openapi": "/openapi.json",
    "health": "/health",
    "ready": "/ready",
    "metrics": "/metrics",
    "datasets": "/datasets",
    "jobs": "/jobs",
    "models": "/models",
    "predict": "/predict",
}


def test_the_front_page_names_the_service_and_where_to_go(client: TestClient) -> None:
    """GET / (the URL make serve prints) needs no key and answers JSON with links that work."""
    response = client.get("/")
    assert response.status_code == 200
    assert response.json() == {
        "name": "AAM service",
        "version": __version__,
        "summary": "Train Attention All Microbes models on 16S tables and predict host properties.",
        "auth": "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' (/, /health, /ready "
        "and /metrics need none)",
        "links": LINKS,
    }
    for name in ("docs", "openapi", "health", "metrics"):
        assert client.get(LINKS[name]).status_code == 200, name
    assert client.get(LINKS["jobs"], headers=ALICE).status_code == 200
    assert client.get(LINKS["ready"]).status_code == 503  # no worker here; the route exists


def test_the_front_page_is_html_for_a_browser(
    make_settings: MakeSettings, dispatcher: RecordingDispatcher
) -> None:
    app = create_app(make_settings(api_keys=[]), dispatcher=dispatcher)  # open, on loopback
    with TestClient(app) as client:
        accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        response = client.get("/", headers={"Accept": accept})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        page = response.text
        assert f"<h1>AAM service {__version__}</h1>" in page
        assert (
            "Authentication: open: this server has no API keys and listens on loopback only."
            in page
        )
        assert page.count("<a href=") == len(LINKS)
        assert '<li><a href="/docs">/docs</a> (docs)</li>' in page


def test_the_front_page_is_in_the_openapi_document(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/"]["get"]
    content = operation["responses"]["200"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/ServiceIndex"}
    assert "text/html" in content
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["ServiceIndex"]["required"] == ["name", "version", "summary", "auth", "links"]
    assert sorted(schemas["IndexLinks"]["properties"]) == sorted(LINKS)


def test_ready_reports_each_dependency(client: TestClient, dispatcher: RecordingDispatcher) -> None:
    body = client.get("/ready").json()
    assert body["database"] == {"ok": True, "detail": "sqlite: schema at revision 0002"}
    assert body["broker"] == {"ok": True, "detail": "reachable (test)"}
    assert body["storage"]["ok"] is True and "writable" in body["storage"]["detail"]
    # no worker has registered: not ready, and the detail says what that means
    assert body["workers"]["ok"] is False
    assert body["workers"]["detail"].startswith("no worker seen in the last 120 s")
    assert client.get("/ready").status_code == 503
    dispatcher.down = True
    assert client.get("/ready").json()["broker"] == {"ok": False, "detail": "unreachable (test)"}


def test_ready_is_200_with_a_live_worker(client: TestClient) -> None:
    from app.store import worker_seen

    services = client.app.state.services  # type: ignore[attr-defined]
    with services.sessions() as session:
        worker_seen(session, "w1@test", device="cpu", queues=["gpu"])
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["workers"] == {"ok": True, "detail": "1 alive: w1@test (cpu)"}


def test_metrics_count_requests_and_jobs(client: TestClient) -> None:
    client.get("/health")
    client.get("/health")
    text = client.get("/metrics").text
    assert 'aam_http_requests_total{method="GET",route="/health",status="200"} 2.0' in text
    assert 'aam_jobs{state="queued"} 0.0' in text
    assert "aam_loaded_models 0.0" in text


def test_cors_allow_list(make_settings: MakeSettings, dispatcher: RecordingDispatcher) -> None:
    app = create_app(make_settings(cors_origins="https://lab.example.org"), dispatcher=dispatcher)
    with TestClient(app) as client:
        allowed = client.get("/health", headers={"Origin": "https://lab.example.org", **ALICE})
        assert allowed.headers["access-control-allow-origin"] == "https://lab.example.org"
        other = client.get("/health", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers


def test_access_log_is_json_with_the_request_id(client: TestClient) -> None:
    import io
    import json
    import logging

    from app.api.observability import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("aam.access")
    access.addHandler(handler)
    previous = access.level
    access.setLevel(logging.INFO)
    try:
        client.get("/datasets", headers={**ALICE, "X-Request-ID": "req-123"})
    finally:
        access.removeHandler(handler)
        access.setLevel(previous)
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["request_id"] == "req-123"
    assert (entry["method"], entry["path"], entry["route"], entry["status"]) == (
        "GET", "/datasets", "/datasets", 200,
    )  # fmt: skip
    assert entry["owner"] == "alice" and entry["duration_ms"] >= 0
