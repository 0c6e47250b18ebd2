"""GET /jobs/{id}/events: server-sent events for each change of state or progress, written by
"workers" (the store's job transitions, as a worker calls them) while the stream is open."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fastapi.routing
import pytest
from fastapi.testclient import TestClient

from app.contracts import JobKind, JobState
from app.store import claim_job, create_job, finish_job, update_progress
from tests.api.conftest import ALICE, BOB, services_of

pytestmark = pytest.mark.timeout(30)  # a stream that never ends fails instead of hanging


def queued_job(client: TestClient, owner: str = "alice") -> str:
    with services_of(client).sessions() as session:
        job, _ = create_job(
            session, owner=owner, kind=JobKind.train, name="age", spec={}, dataset_id="ds_1"
        )
        session.commit()
        return job.id


def parse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The events (and comment blocks) of an SSE stream as they arrive: fields by name,
    ``data`` parsed as JSON, comment lines under ``comments``."""
    event: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if event:
                yield event
            event = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            event.setdefault("comments", []).append(value)
        else:
            event[name] = json.loads(value) if name == "data" else value
    assert event == {}, f"the stream ended inside an event: {event}"


def test_events_follow_a_job_from_queued_to_succeeded(client: TestClient) -> None:
    services = services_of(client)
    job_id = queued_job(client)
    with client.stream("GET", f"/jobs/{job_id}/events", headers=ALICE) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        events = parse_events(response.iter_lines())

        first = next(events)
        assert (first["event"], first["id"], first["data"]["state"]) == ("state", "1", "queued")
        assert first["data"]["id"] == job_id
        # between polls the stream holds no database connection
        assert services.engine.pool.checkedout() == 0  # type: ignore[attr-defined]

        with services.sessions() as session:
            assert claim_job(session, job_id, worker="w1", device="cpu")
        running = next(events)
        assert (running["event"], running["id"]) == ("state", "2")
        assert (running["data"]["state"], running["data"]["worker"]) == ("running", "w1")

        progress = {"epoch": 1, "epochs": 4, "step": 5, "steps": 20, "fraction": 0.25,
                    "eta_seconds": 12.5}  # fmt: skip
        metrics = {"train": {"loss": 0.5}, "validation": {"mae": 3.25}, "baseline": {}}
        with services.sessions() as session:
            assert update_progress(session, job_id, progress=progress, metrics=metrics)
        moved = next(events)
        assert (moved["event"], moved["id"], moved["data"]["state"]) == ("progress", "3", "running")
        assert moved["data"]["progress"] == {"phase": None, "fold": None, "folds": None, **progress}
        assert moved["data"]["metrics"] == metrics

        with services.sessions() as session:
            assert finish_job(session, job_id, state=JobState.succeeded, worker="w1")
        done = next(events)
        assert (done["event"], done["id"], done["data"]["state"]) == ("state", "4", "succeeded")
        assert done["data"]["finished_at"] is not None
        assert list(events) == []  # the stream ends after the terminal state


def test_a_quiet_stream_sends_heartbeats_and_ends_on_cancel(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FastAPI's keep-alive comment comes after 15 s of silence; 0.2 s here
    monkeypatch.setattr(fastapi.routing, "_PING_INTERVAL", 0.2)
    job_id = queued_job(client)
    with client.stream("GET", f"/jobs/{job_id}/events", headers=ALICE) as response:
        events = parse_events(response.iter_lines())
        assert next(events)["data"]["state"] == "queued"
        assert next(events) == {"comments": ["ping"]}
        assert next(events) == {"comments": ["ping"]}
        cancel = client.post(f"/jobs/{job_id}/cancel", headers=ALICE)
        assert cancel.status_code == 202
        rest = list(events)
        ended = [e for e in rest if "event" in e]  # pings may come before the poll sees it
        assert [(e["event"], e["data"]["state"]) for e in ended] == [("state", "cancelled")]
        assert rest[-1] == ended[-1]  # and the stream ends with it


def test_a_finished_job_gives_one_event(client: TestClient) -> None:
    services = services_of(client)
    job_id = queued_job(client)
    with services.sessions() as session:
        claim_job(session, job_id, worker="w1", device="cpu")
        error = {"type": "InputError", "detail": "table.biom: no samples"}
        finish_job(session, job_id, state=JobState.failed, worker="w1", error=error)
    response = client.get(f"/jobs/{job_id}/events", headers=ALICE)
    assert response.status_code == 200
    events = parse_events(iter(response.text.splitlines()))
    event = next(events)
    assert (event["event"], event["data"]["state"]) == ("state", "failed")
    assert event["data"]["error"] == {**error, "field": None}
    assert list(events) == []


def test_another_owner_s_job_has_no_events(client: TestClient) -> None:
    job_id = queued_job(client)
    for url, headers in ((f"/jobs/{job_id}/events", BOB), ("/jobs/job_missing/events", ALICE)):
        response = client.get(url, headers=headers)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == f"job {url.split('/')[2]!r} does not exist"
    assert client.get(f"/jobs/{job_id}/events").status_code == 401
