"""A finished training job stores its model's card (``card_markdown``, ``card_json``) among its
outputs: the very card ``GET /models/{id}/card`` serves. The job runs in this process (the
order from the store, the child's ``execute``, the worker's finish) on a real SQLite store."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aam_core.train.callbacks import Callback
from app.contracts import JobSpec
from app.main import create_app
from app.store import LocalArtifactStore, claim_job
from tests.worker.helpers import AGE, FAST, Store
from worker import finish
from worker.devices import Placement
from worker.inputs import build_order
from worker.reporting import JobReporter
from worker.runner import execute

WORKER = "celery@test:1"


def test_a_train_job_stores_the_card_the_api_serves(
    store: Store, study_files: dict[str, Path], tmp_path: Path
) -> None:
    dataset = store.add_dataset(study_files)
    job_id = store.add_job("train", dataset, send=False, target=AGE, config={**FAST, "epochs": 1})
    with store.sessions() as session:
        assert claim_job(session, job_id, worker=WORKER, device="cpu")
        job = store.job(job_id)
        spec = JobSpec.model_validate(job.spec)
        order = build_order(session, store.storage, job, spec, Placement("cpu", 1, "cpu"), tmp_path)
        summary = execute(order, Callback())
        reporter = JobReporter(session, job_id, WORKER)
        assert finish.finish_training(
            session, store.storage, job, spec, order, summary, reporter, worker=WORKER
        )
    job = store.job(job_id)
    assert job.state == "succeeded" and job.model_id is not None
    markdown = store.storage.path(job.outputs["card_markdown"]).read_text()
    card = json.loads(store.storage.path(job.outputs["card_json"]).read_text())
    assert card["data"]["sha256"] == {
        role: hashlib.sha256(path.read_bytes()).hexdigest() for role, path in study_files.items()
    }
    assert card["training"]["seed"] == 0 and card["training"]["config"]["epochs"] == 1
    with TestClient(create_app(store.settings)) as client:  # open: loopback, no keys
        served = client.get(f"/models/{job.model_id}/card", headers={"Accept": "application/json"})
        assert served.json() == card
        assert (
            card["model"]["checkpoint_sha256"]
            == client.get(f"/models/{job.model_id}").json()["checkpoint_sha256"]
        )
        assert client.get(f"/models/{job.model_id}/card").text == markdown
        # the depth-only model and its verdict: in the job's report and the model's metrics
        report = client.get(f"/jobs/{job_id}").json()["report"]
        metrics = client.get(f"/models/{job.model_id}").json()["metrics"]
        assert (
            report["depth_confound"]
            == metrics["depth_confound"]
            == card["metrics"]["depth_confound"]
        )
        assert report["depth_baseline"]["metrics"] == metrics["baselines"]["depth"]["validation"]
        assert report["depth_confound"]["depth"] == report["depth_baseline"]["metrics"]["r2"]


def test_a_card_that_cannot_be_written_is_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "best.pt"
    broken.write_bytes(b"not a checkpoint")
    storage = LocalArtifactStore(tmp_path / "artifacts")
    with caplog.at_level(logging.ERROR, logger="aam.worker"):
        assert finish.store_card(storage, broken, tmp_path) == {}
    assert f"the model card of {broken} could not be written" in caplog.text
