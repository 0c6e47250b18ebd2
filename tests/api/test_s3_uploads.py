"""Uploads on s3:// storage (a real S3 server process, moto's server mode, behind a relay the
test can cut): the store stopping mid-upload answers 503 and keeps nothing; back again, the
same upload succeeds; /ready says whether the bucket answers."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.api.conftest import (
    ALICE,
    MakeSettings,
    RecordingDispatcher,
    StudyFiles,
    services_of,
    upload_leftovers,
)
from tests.s3 import BUCKET, CREDENTIALS, MotoServer, Relay, moto_server, object_keys, open_uploads


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    with moto_server() as running:
        running.make_bucket()
        yield running


@pytest.fixture
def relay(server: MotoServer) -> Iterator[Relay]:
    opened = Relay(server.port)
    opened.open()
    yield opened
    opened.close()


@pytest.fixture
def s3_client(
    make_settings: MakeSettings, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    settings = make_settings(storage_url=f"s3://{BUCKET}/uploads", s3_endpoint_url=relay.endpoint)
    with TestClient(create_app(settings, dispatcher=RecordingDispatcher())) as client:
        yield client


def test_the_store_stopping_mid_upload_answers_503_and_keeps_nothing(
    s3_client: TestClient, relay: Relay, server: MotoServer, api_study: StudyFiles
) -> None:
    files = {
        "table": ("table.biom", api_study.table.read_bytes()),
        "tree": ("tree.nwk", api_study.tree.read_bytes()),
        "metadata": ("metadata.tsv", api_study.metadata.read_bytes()),
    }
    before = set(object_keys(server))
    relay.cut_during_put(after=300)  # inside the first object's PUT
    answer = s3_client.post("/datasets", headers=ALICE, files=files)
    assert relay.cut.is_set()
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "30"
    problem = answer.json()
    assert problem["type"] == "/problems/storage-unavailable"
    assert problem["detail"].startswith(
        f"artifact storage is unavailable: object store s3://{BUCKET}/uploads at "
        f"{relay.endpoint} failed while "
    )
    assert problem["detail"].endswith("nothing of this request was kept, send it again later")
    assert s3_client.get("/datasets", headers=ALICE).json()["items"] == []
    assert set(object_keys(server)) == before  # no object, whole or partial
    assert [k for k in open_uploads(server) if k.startswith("uploads/")] == []
    assert upload_leftovers(s3_client) == []
    cache = services_of(s3_client).settings.cache_dir
    assert os.listdir(cache / "tmp") == []
    ready = s3_client.get("/ready")
    assert ready.status_code == 503 and not ready.json()["storage"]["ok"]

    relay.open()  # started again: the same upload succeeds
    answer = s3_client.post("/datasets", headers=ALICE, files=files)
    assert answer.status_code == 201, answer.text
    stored = {f["sha256"] for f in answer.json()["files"].values()}
    keys = set(object_keys(server)) - before
    assert {k.rsplit("/", 1)[1] for k in keys} == stored and len(stored) == 3
    assert s3_client.get("/ready").json()["storage"]["ok"]
