"""The job resource: submission (SQLite and PostgreSQL, a recording dispatcher, the real Redis),
idempotency, listing, cancelling, metrics, logs, predictions and ownership.

Workers are played by the store's job transitions (claim, progress, finish), as a worker calls
them; the predictions file is what a worker writes: aam_core's PredictionResult.to_frame of a
real (tiny) model applied to the generated study, as TSV.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select

from aam_core.checkpoint import load_checkpoint
from aam_core.io import load_inputs
from aam_core.predict import Predictor
from app.contracts import JobKind, JobState
from app.dispatch import CeleryDispatcher
from app.main import create_app
from app.store import (
    Dataset,
    Job,
    add_metrics,
    append_logs,
    claim_job,
    finish_job,
)
from tests.api.conftest import (
    ADMIN,
    ALICE,
    BOB,
    AddDataset,
    AddModel,
    JobStudy,
    MakeSettings,
    RecordingDispatcher,
    services_of,
)
from tests.services import unavailable

REDIS_URL = os.environ.get("AAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def job_rows(client: TestClient) -> int:
    with services_of(client).sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def train_body(dataset_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "kind": "train",
        "dataset_id": dataset_id,
        "target": {"column": "age", "task": "regression"},
        **changes,
    }


def claim(client: TestClient, job_id: str) -> None:
    with services_of(client).sessions() as session:
        assert claim_job(session, job_id, worker="w1@host", device="cpu")


def finish(client: TestClient, job_id: str, state: JobState, **values: Any) -> None:
    with services_of(client).sessions() as session:
        assert finish_job(session, job_id, state=state, worker="w1@host", **values)


# -- submission --------------------------------------------------------------------------------


def test_submit_answers_202_with_the_job_and_its_location(
    client: TestClient, dispatcher: RecordingDispatcher, add_dataset: AddDataset
) -> None:
    dataset_id = add_dataset(client, "alice", name="oral study")
    body = train_body(dataset_id, config={"epochs": 3, "loss_weights": {"target": 1.0}})
    response = client.post("/jobs", json=body, headers=ALICE)
    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert job["id"].startswith("job_")
    assert (job["kind"], job["state"], job["name"]) == (
        "train", "queued", "train age (regression) on oral study",
    )  # fmt: skip
    assert (job["dataset_id"], job["base_model_id"], job["model_id"]) == (dataset_id, None, None)
    assert job["progress"] == {
        "phase": None, "fold": None, "folds": None, "epoch": None, "epochs": None,
        "step": None, "steps": None, "fraction": 0.0, "eta_seconds": None,
    }  # fmt: skip
    assert (job["attempts"], job["error"], job["started_at"], job["cancel_requested"]) == (
        0, None, None, False,
    )  # fmt: skip
    # the stored spec is the request, normalised (defaults filled, unset overrides left out)
    assert job["spec"] == {**body, "freeze_base": False}
    assert dispatcher.sent == [(job["id"], JobKind.train)]
    assert client.get(job["id"].join(("/jobs/", "")), headers=ALICE).json() == job


def test_a_submission_inserts_only_while_its_dataset_exists(
    client: TestClient, dispatcher: RecordingDispatcher, add_dataset: AddDataset
) -> None:
    """Another owner's dataset reads as a missing one; a dataset deleted behind this API
    process's back (another process) gives the same 422, and no job is stored or sent."""
    dataset_id = add_dataset(client, "alice")
    first = client.post("/jobs", json=train_body(dataset_id), headers=ALICE)
    assert first.status_code == 202
    assert client.post("/jobs", json=train_body(dataset_id), headers=BOB).json()["detail"] == (
        f"dataset_id: dataset {dataset_id!r} does not exist"
    )
    with services_of(client).sessions() as session:
        session.execute(delete(Dataset).where(Dataset.id == dataset_id))
        session.commit()
    gone = client.post("/jobs", json=train_body(dataset_id), headers=ALICE)
    assert (gone.status_code, gone.json()["detail"]) == (
        422, f"dataset_id: dataset {dataset_id!r} does not exist",
    )  # fmt: skip
    assert job_rows(client) == 1 and len(dispatcher.sent) == 1


def test_a_given_name_is_kept_and_predict_jobs_name_their_model(
    client: TestClient, add_dataset: AddDataset, add_model: AddModel
) -> None:
    dataset_id = add_dataset(client, "alice", name="gut")
    model_id = add_model(client, "alice", "regressor", name="age model")
    named = client.post(
        "/jobs", json={"kind": "pretrain", "dataset_id": dataset_id, "name": "run 7"},
        headers=ALICE,
    )  # fmt: skip
    assert named.json()["name"] == "run 7"
    body = {"kind": "predict", "dataset_id": dataset_id, "model_id": model_id}
    predict = client.post("/jobs", json=body, headers=ALICE).json()
    assert (predict["name"], predict["model_id"]) == ("predict with age model on gut", model_id)
    pretrain = client.post("/jobs", json={"kind": "pretrain", "dataset_id": dataset_id},
                           headers=ALICE).json()  # fmt: skip
    assert pretrain["name"] == "pretrain on gut"


def test_an_idempotent_retry_returns_the_first_job(
    client: TestClient, dispatcher: RecordingDispatcher, add_dataset: AddDataset
) -> None:
    dataset_id = add_dataset(client, "alice")
    body = train_body(dataset_id)
    key = {"Idempotency-Key": "upload-42"}
    first = client.post("/jobs", json=body, headers={**ALICE, **key})
    again = client.post("/jobs", json=body, headers={**ALICE, **key})
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["location"] == first.headers["location"]
    assert dispatcher.sent == [(first.json()["id"], JobKind.train)]  # one message only
    # the same key with another body is a mistake, not a retry
    other = client.post("/jobs", json={**body, "name": "other"}, headers={**ALICE, **key})
    assert other.status_code == 422
    assert other.json()["detail"] == (
        f"Idempotency-Key 'upload-42' was already used for job '{first.json()['id']}' with a "
        "different request body; use a new key for a new job"
    )
    # keys are per owner: bob's 'upload-42' is his own
    bob_dataset = add_dataset(client, "bob")
    bob = client.post("/jobs", json=train_body(bob_dataset), headers={**BOB, **key})
    assert bob.status_code == 202 and bob.json()["id"] != first.json()["id"]
    assert job_rows(client) == 2
    too_long = client.post("/jobs", json=body, headers={**ALICE, "Idempotency-Key": "k" * 201})
    assert too_long.status_code == 422
    assert too_long.json()["detail"] == (
        "header.idempotency-key: String should have at most 200 characters"
    )


def test_a_body_that_is_not_text_is_a_400_that_says_what_to_send(client: TestClient) -> None:
    # found by the contract fuzzing: FastAPI's own 400 said only "error parsing the body"
    headers = {**ALICE, "Content-Type": "application/json"}
    response = client.post("/jobs", content=b"\x17\xffC\xfet\x00", headers=headers)
    assert (response.status_code, response.json()["detail"]) == (
        400, "the request body could not be read: send UTF-8 JSON (Content-Type: application/json)",
    )  # fmt: skip
    assert job_rows(client) == 0


def test_a_broker_that_refuses_leaves_no_job(
    client: TestClient, dispatcher: RecordingDispatcher, add_dataset: AddDataset
) -> None:
    dataset_id = add_dataset(client, "alice")
    headers = {**ALICE, "Idempotency-Key": "retry-me"}
    dispatcher.down = True
    response = client.post("/jobs", json=train_body(dataset_id), headers=headers)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.json()["detail"] == (
        "the job queue is unavailable (ConnectionRefusedError); the job was not created: "
        "submit it again later"
    )
    assert job_rows(client) == 0
    # the key was not spent: the retry, once the broker is back, queues the job
    dispatcher.down = False
    retry = client.post("/jobs", json=train_body(dataset_id), headers=headers)
    assert retry.status_code == 202
    assert dispatcher.sent == [(retry.json()["id"], JobKind.train)]


# -- reading, listing, cancelling ----------------------------------------------------------------


def test_list_filters_and_pages(
    client: TestClient, add_dataset: AddDataset, add_model: AddModel
) -> None:
    dataset_id = add_dataset(client, "alice")
    model_id = add_model(client, "alice", "regressor")
    bodies = [
        {"kind": "pretrain", "dataset_id": dataset_id},
        train_body(dataset_id),
        {"kind": "predict", "dataset_id": dataset_id, "model_id": model_id},
    ]
    ids = [client.post("/jobs", json=b, headers=ALICE).json()["id"] for b in bodies]
    bob_dataset = add_dataset(client, "bob")
    bob_job = client.post("/jobs", json=train_body(bob_dataset), headers=BOB).json()["id"]
    assert client.post(f"/jobs/{ids[0]}/cancel", headers=ALICE).status_code == 202

    def listed(query: str, headers: dict[str, str] = ALICE) -> list[str]:
        response = client.get(f"/jobs{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [job["id"] for job in response.json()["items"]]

    newest_first = ids[::-1]
    assert listed("") == newest_first
    assert listed("?state=cancelled") == [ids[0]]
    assert listed("?state=queued&kind=predict") == [ids[2]]
    assert listed("?kind=train", BOB) == [bob_job]
    assert listed("", ADMIN) == [bob_job, *newest_first]
    first_page = client.get("/jobs?limit=2", headers=ALICE).json()
    assert [j["id"] for j in first_page["items"]] == newest_first[:2]
    second_page = client.get(f"/jobs?limit=2&cursor={first_page['next_cursor']}", headers=ALICE)
    assert [j["id"] for j in second_page.json()["items"]] == newest_first[2:]
    assert second_page.json()["next_cursor"] is None
    for query, detail in (
        ("?state=done", "query.state: Input should be 'queued', 'running', 'cancelling', "
                        "'succeeded', 'failed' or 'cancelled'"),
        ("?kind=fit", "query.kind: Input should be 'pretrain', 'train', 'predict' or "
                      "'cross_validate'"),
        ("?limit=501", "query.limit: Input should be less than or equal to 500"),
        ("?cursor=abc", "query.cursor: not a cursor this server issued; pass a page's "
                        "next_cursor unchanged"),
    ):  # fmt: skip
        response = client.get(f"/jobs{query}", headers=ALICE)
        assert (response.status_code, response.json()["detail"]) == (422, detail)


def test_cancel_a_queued_a_running_and_a_finished_job(
    client: TestClient, add_dataset: AddDataset
) -> None:
    dataset_id = add_dataset(client, "alice")
    queued, running, done = (
        client.post("/jobs", json=train_body(dataset_id), headers=ALICE).json()["id"]
        for _ in range(3)
    )
    response = client.post(f"/jobs/{queued}/cancel", headers=ALICE)
    assert response.status_code == 202
    body = response.json()
    assert (body["state"], body["cancel_requested"]) == ("cancelled", True)
    assert body["finished_at"] is not None

    claim(client, running)
    response = client.post(f"/jobs/{running}/cancel", headers=ALICE)
    assert response.status_code == 202
    assert (response.json()["state"], response.json()["finished_at"]) == ("cancelling", None)
    again = client.post(f"/jobs/{running}/cancel", headers=ALICE)  # asking twice is harmless
    assert (again.status_code, again.json()["state"]) == (202, "cancelling")

    claim(client, done)
    finish(client, done, JobState.succeeded)
    for job_id, state in ((done, "succeeded"), (queued, "cancelled")):
        refused = client.post(f"/jobs/{job_id}/cancel", headers=ALICE)
        assert refused.status_code == 409
        assert refused.json()["detail"] == (
            f"job '{job_id}' has finished ({state}); only a queued or running job can be cancelled"
        )
    assert client.get(f"/jobs/{done}", headers=ALICE).json()["state"] == "succeeded"


def test_metrics_history_and_logs_since(client: TestClient, add_dataset: AddDataset) -> None:
    dataset_id = add_dataset(client, "alice")
    job_id = client.post("/jobs", json=train_body(dataset_id), headers=ALICE).json()["id"]
    assert client.get(f"/jobs/{job_id}/metrics", headers=ALICE).json() == []
    records = [
        {"epoch": 0, "split": "train", "loss": 1.5, "mae": 9.25},
        {"epoch": 0, "split": "validation", "loss": 1.75, "mae": 10.5, "r2": 0.125},
        {"epoch": 1, "split": "train", "loss": 0.75, "mae": 6.0},
    ]
    messages = ["epoch 1/2: loss 1.5", "epoch 2/2: loss 0.75", "saved best.pt"]
    with services_of(client).sessions() as session:
        add_metrics(session, job_id, records[::-1])
        append_logs(session, job_id, messages)
    assert client.get(f"/jobs/{job_id}/metrics", headers=ALICE).json() == records

    logs = client.get(f"/jobs/{job_id}/logs", headers=ALICE).json()
    assert (logs["job_id"], logs["next_since"]) == (job_id, 3)
    assert [(line["line"], line["message"]) for line in logs["lines"]] == [
        (1, messages[0]), (2, messages[1]), (3, messages[2]),
    ]  # fmt: skip
    after = client.get(f"/jobs/{job_id}/logs?since=2", headers=ALICE).json()
    assert ([line["message"] for line in after["lines"]], after["next_since"]) == (messages[2:], 3)
    caught_up = client.get(f"/jobs/{job_id}/logs?since=3", headers=ALICE).json()
    assert (caught_up["lines"], caught_up["next_since"]) == ([], 3)
    limited = client.get(f"/jobs/{job_id}/logs?since=0&limit=1", headers=ALICE).json()
    assert ([line["line"] for line in limited["lines"]], limited["next_since"]) == ([1], 1)
    negative = client.get(f"/jobs/{job_id}/logs?since=-1", headers=ALICE)
    assert (negative.status_code, negative.json()["detail"]) == (
        422, "query.since: Input should be greater than or equal to 0",
    )  # fmt: skip
    # beyond the line column's 32 bits: a 422, not the database's overflow as a 500
    huge = client.get(f"/jobs/{job_id}/logs?since={2**63}", headers=ALICE)
    assert (huge.status_code, huge.json()["detail"]) == (
        422, "query.since: Input should be less than or equal to 2147483647",
    )  # fmt: skip


# -- predictions ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prediction_frames(job_study: JobStudy, checkpoint_files: dict[str, Any]) -> dict[str, Any]:
    """What a predict job's worker writes: PredictionResult.to_frame of each tiny model."""
    inputs = load_inputs(job_study.files["table"])
    return {
        kind: Predictor(load_checkpoint(checkpoint_files[kind]))
        .predict(inputs.table, inputs.sequences)
        .to_frame()
        for kind in ("regressor", "classifier")
    }


def predict_job(client: TestClient, dataset_id: str, model_id: str, frame: pd.DataFrame) -> str:
    body = {"kind": "predict", "dataset_id": dataset_id, "model_id": model_id}
    job_id: str = client.post("/jobs", json=body, headers=ALICE).json()["id"]
    claim(client, job_id)
    digest = services_of(client).storage.put_bytes(
        frame.to_csv(sep="\t", index=False).encode("utf-8")
    )
    finish(client, job_id, JobState.succeeded, outputs={"predictions": digest})
    return job_id


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: v.item() if hasattr(v, "item") else v for k, v in row.items()}
            for row in frame.to_dict("records")]  # fmt: skip


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_predictions_as_tsv_and_as_json(
    client: TestClient,
    add_dataset: AddDataset,
    add_model: AddModel,
    prediction_frames: dict[str, pd.DataFrame],
    kind: str,
) -> None:
    frame = prediction_frames[kind]
    dataset_id = add_dataset(client, "alice")
    model_id = add_model(client, "alice", kind)
    job_id = predict_job(client, dataset_id, model_id, frame)

    tsv = client.get(f"/jobs/{job_id}/predictions", headers=ALICE)
    assert tsv.status_code == 200
    assert tsv.headers["content-type"] == "text/tab-separated-values; charset=utf-8"
    assert tsv.headers["content-disposition"] == (
        f'attachment; filename="{job_id}_predictions.tsv"'
    )
    assert tsv.text == frame.to_csv(sep="\t", index=False)

    answer = client.get(
        f"/jobs/{job_id}/predictions", headers={**ALICE, "Accept": "application/json"}
    )
    assert answer.headers["content-type"] == "application/json"
    document = answer.json()
    assert (document["job_id"], document["model_id"]) == (job_id, model_id)
    assert document["predictions"] == records(frame)  # typed values, exactly the worker's
    assert len(document["predictions"]) == 24
    expected = {"regressor": "prediction", "classifier": "prob_site_C"}[kind]
    assert expected in document["predictions"][0]
    # TSV wins a tie, and a client that ranks it higher gets it
    for accept in ("*/*", "application/json;q=0.5, text/tab-separated-values"):
        again = client.get(f"/jobs/{job_id}/predictions", headers={**ALICE, "Accept": accept})
        assert again.headers["content-type"].startswith("text/tab-separated-values")


def test_predictions_only_of_a_succeeded_predict_job(
    client: TestClient,
    add_dataset: AddDataset,
    add_model: AddModel,
    prediction_frames: dict[str, pd.DataFrame],
) -> None:
    dataset_id = add_dataset(client, "alice")
    model_id = add_model(client, "alice", "regressor")
    body = {"kind": "predict", "dataset_id": dataset_id, "model_id": model_id}
    queued = client.post("/jobs", json=body, headers=ALICE).json()["id"]
    response = client.get(f"/jobs/{queued}/predictions", headers=ALICE)
    assert (response.status_code, response.json()["detail"]) == (
        409, f"job '{queued}' is queued; its predictions exist once it has succeeded",
    )  # fmt: skip
    training = client.post("/jobs", json=train_body(dataset_id), headers=ALICE).json()["id"]
    response = client.get(f"/jobs/{training}/predictions", headers=ALICE)
    assert (response.status_code, response.json()["detail"]) == (
        404,
        f"job '{training}' is a train job; only predict and cross_validate jobs have "
        "predictions",
    )  # fmt: skip
    job_id = predict_job(client, dataset_id, model_id, prediction_frames["regressor"])
    with services_of(client).sessions() as session:
        digest = session.get_one(Job, job_id).outputs["predictions"]
    services_of(client).storage.delete(digest)
    response = client.get(f"/jobs/{job_id}/predictions", headers=ALICE)
    assert (response.status_code, response.json()["detail"]) == (
        404, f"the predictions file of job '{job_id}' is missing from artifact storage",
    )  # fmt: skip


# -- ownership -----------------------------------------------------------------------------------


def test_bob_cannot_see_or_touch_alice_s_jobs(
    client: TestClient,
    add_dataset: AddDataset,
    add_model: AddModel,
    prediction_frames: dict[str, pd.DataFrame],
) -> None:
    dataset_id = add_dataset(client, "alice")
    model_id = add_model(client, "alice", "regressor")
    job_id = predict_job(client, dataset_id, model_id, prediction_frames["regressor"])
    missing = "job_0000000000000000"
    routes = [("GET", ""), ("POST", "/cancel"), ("GET", "/metrics"), ("GET", "/logs"),
              ("GET", "/predictions"), ("GET", "/events")]  # fmt: skip
    for method, suffix in routes:
        for identifier in (job_id, missing):
            response = client.request(method, f"/jobs/{identifier}{suffix}", headers=BOB)
            assert response.status_code == 404, (method, suffix)
            assert response.json()["detail"] == f"job '{identifier}' does not exist"
    assert client.get("/jobs", headers=BOB).json()["items"] == []
    # the admin sees everything, and may cancel anyone's job
    assert client.get(f"/jobs/{job_id}", headers=ADMIN).json()["id"] == job_id
    assert client.get(f"/jobs/{job_id}/predictions", headers=ADMIN).status_code == 200
    queued = client.post("/jobs", json=train_body(dataset_id), headers=ALICE).json()["id"]
    assert client.post(f"/jobs/{queued}/cancel", headers=ADMIN).json()["state"] == "cancelled"
    assert client.get("/jobs").status_code == 401


# -- PostgreSQL (conftest's pg_client: the app on a scratch database) -----------------------------


def test_postgres_submission_idempotency_and_refusal(
    pg_client: TestClient, dispatcher: RecordingDispatcher, add_dataset: AddDataset
) -> None:
    client = pg_client
    dataset_id = add_dataset(client, "alice")
    key = {**ALICE, "Idempotency-Key": "pg-1"}
    first = client.post("/jobs", json=train_body(dataset_id), headers=key)
    again = client.post("/jobs", json=train_body(dataset_id), headers=key)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    other = client.post("/jobs", json={**train_body(dataset_id), "name": "x"}, headers=key)
    assert other.status_code == 422
    dispatcher.down = True
    down = client.post("/jobs", json=train_body(dataset_id), headers=ALICE)
    assert down.status_code == 503
    assert job_rows(client) == 1
    assert dispatcher.sent == [(first.json()["id"], JobKind.train)]
    with services_of(client).sessions() as session:
        stored = session.get_one(Job, first.json()["id"])
        assert (stored.owner, stored.idempotency_key, stored.spec) == (
            "alice", "pg-1", {**train_body(dataset_id), "freeze_base": False, "config": {}},
        )  # fmt: skip


def test_concurrent_submissions_with_one_key_make_one_job(
    pg_client: TestClient, dispatcher: RecordingDispatcher, add_dataset: AddDataset
) -> None:
    dataset_id = add_dataset(pg_client, "alice")
    threads = 8
    barrier = threading.Barrier(threads)
    headers = {**ALICE, "Idempotency-Key": "double-click"}

    def submit(_: int) -> tuple[int, str]:
        barrier.wait()
        response = pg_client.post("/jobs", json=train_body(dataset_id), headers=headers)
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(submit, range(threads)))
    assert {status for status, _ in answers} == {202}
    job_ids = {job_id for _, job_id in answers}
    assert len(job_ids) == 1
    assert job_rows(pg_client) == 1
    assert dispatcher.sent == [(job_ids.pop(), JobKind.train)]


# -- the real broker -----------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[tuple[Any, str]]:
    """A Redis client and a key prefix of this test's own; its keys are deleted afterwards (the
    shared server is never flushed)."""
    import redis

    connection = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        connection.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL} is unreachable: {exc}")
    prefix = f"aam-test-{secrets.token_hex(6)}:"
    try:
        yield connection, prefix
    finally:
        for key in connection.scan_iter(match=f"{prefix}*"):
            connection.delete(key)
        connection.close()


def test_a_submitted_job_lands_in_redis_as_aam_run_job(
    make_settings: MakeSettings, add_dataset: AddDataset, redis_prefix: tuple[Any, str]
) -> None:
    connection, prefix = redis_prefix
    dispatcher = CeleryDispatcher(REDIS_URL)
    options = dispatcher.client.conf.broker_transport_options
    dispatcher.client.conf.broker_transport_options = {**options, "global_keyprefix": prefix}
    with TestClient(create_app(make_settings(), dispatcher=dispatcher)) as client:
        dataset_id = add_dataset(client, "alice")
        response = client.post("/jobs", json=train_body(dataset_id), headers=ALICE)
        assert response.status_code == 202
        job_id = response.json()["id"]
    assert connection.llen(f"{prefix}gpu") == 1  # the workers' queue
    message = json.loads(connection.lpop(f"{prefix}gpu"))
    assert message["headers"]["task"] == "aam.run_job"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([job_id], {})
    assert message["properties"]["delivery_info"]["routing_key"] == "gpu"


def test_an_unreachable_broker_gives_503_and_no_job(
    make_settings: MakeSettings, add_dataset: AddDataset
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dispatcher = CeleryDispatcher(f"redis://127.0.0.1:{port}/0")
    with TestClient(create_app(make_settings(), dispatcher=dispatcher)) as client:
        dataset_id = add_dataset(client, "alice")
        response = client.post("/jobs", json=train_body(dataset_id), headers=ALICE)
        assert response.status_code == 503
        assert response.json()["detail"] == (
            "the job queue is unavailable (OperationalError); the job was not created: submit "
            "it again later"
        )
        assert job_rows(client) == 0


def test_predictions_in_q2_sample_classifier_layouts(
    client: TestClient, add_dataset: AddDataset, add_model: AddModel
) -> None:
    """The worker stores q2-sample-classifier's files beside the AAM TSV; the route serves them
    by ``layout``, and says which is absent."""
    from aam_core.io.predictions import PredictionResult, SamplePrediction, q2_tables

    samples = [
        SamplePrediction("S1", label="C", probabilities={"C": 0.25, "D": 0.75}),
        SamplePrediction("S2", label="D", probabilities={"C": 0.5, "D": 0.5}),
    ]
    tables = q2_tables(PredictionResult("classifier", None, samples))
    storage = services_of(client).storage
    dataset_id, model_id = add_dataset(client, "alice"), add_model(client, "alice", "classifier")
    body = {"kind": "predict", "dataset_id": dataset_id, "model_id": model_id}
    job_id: str = client.post("/jobs", json=body, headers=ALICE).json()["id"]
    claim(client, job_id)
    outputs = {
        "predictions": storage.put_bytes(b"sample_id\tlabel\n"),
        "q2_predictions": storage.put_bytes(tables["predictions.tsv"].encode()),
    }
    finish(client, job_id, JobState.succeeded, outputs=outputs)
    url = f"/jobs/{job_id}/predictions"
    q2 = client.get(url, params={"layout": "q2-predictions"}, headers=ALICE)
    assert q2.status_code == 200
    assert q2.text == "id\tprediction\nS1\tC\nS2\tD\n"
    assert q2.headers["content-disposition"] == f'attachment; filename="{job_id}_predictions.tsv"'
    missing = client.get(url, params={"layout": "q2-probabilities"}, headers=ALICE)
    assert missing.status_code == 404
    assert missing.json()["detail"] == (
        f"job {job_id!r} has no class_probabilities.tsv in q2-sample-classifier's layout (class "
        "probabilities exist for classifiers only; a regressor with several outputs and jobs "
        "from before this layout have none)"
    )
    assert client.get(url, headers=ALICE).text == "sample_id\tlabel\n"
