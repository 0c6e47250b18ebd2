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
