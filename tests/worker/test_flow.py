"""The whole service through HTTP: a real uvicorn server (``python -m app``) and a real worker
process (``python -m worker``). Upload a generated study, pretrain, train from that encoder
with ``freeze_base``, check the registered model, compare ``POST /predict`` and a predict
job's output with ``aam predict`` on the downloaded checkpoint.

Here on the embedded broker with SQLite and file storage (what ``make serve`` runs), where the
API is also restarted while the train job runs; tests/worker/test_s3_flow.py runs the same flow
on Redis, PostgreSQL and s3:// storage (the multi-host deployment).
"""

from __future__ import annotations

import io
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from aam_core.cli import app as aam
from tests.services import free_port
from tests.worker.helpers import AGE, FAST, PRETRAIN_FAST, Process, Store, running, wait_for

KEY = "flow-test-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}
TERMINAL = ("succeeded", "failed", "cancelled")


def start_api(store: Store, port: int, log: Path) -> Process:
    env = store.env(AAM_PORT=port, AAM_API_KEYS=f"alice:{KEY}")
    process = Process("app", env, log)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.popen.poll() is not None:
            raise AssertionError(f"the API exited:\n{process.output()[-3000:]}")
        try:
            return httpx.get(f"{base}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("the API to answer /health", healthy, timeout=60, every=0.2)
    return process


@contextmanager
def service(store: Store, tmp_path: Path) -> Iterator[tuple[httpx.Client, Callable[[], None]]]:
    """The API and a worker on ``store``; yields a client and a function restarting the API."""
    port = free_port()
    api = [start_api(store, port, tmp_path / "api.log")]

    def restart_api() -> None:
        assert api[0].stop(signal.SIGTERM, timeout=30) in (0, -signal.SIGTERM)
        api[0] = start_api(store, port, tmp_path / "api.log")

    try:
        with (
            running("worker", store.env(), tmp_path / "worker.log"),
            httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=HEADERS, timeout=60) as c,
        ):
            yield c, restart_api
    finally:
        api[0].stop(signal.SIGTERM, timeout=30)


def wait_job(client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
        return job if job["state"] in TERMINAL else None

    job = wait_for(f"job {job_id} to finish", finished, timeout, every=0.2)
    assert job["state"] == "succeeded", job
    return job


def submit(client: httpx.Client, body: dict[str, Any]) -> str:
    answer = client.post("/jobs", json=body)
    assert answer.status_code == 202, answer.text
    job_id: str = answer.json()["id"]
    assert answer.headers["location"] == f"/jobs/{job_id}"
    return job_id


def aam_predict(checkpoint: Path, table: Path, out: Path) -> pd.DataFrame:
    result = CliRunner().invoke(
        aam, ["predict", "--model", str(checkpoint), "--table", str(table), "--out", str(out),
              "--device", "cpu"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return pd.read_csv(out, sep="\t")


def full_flow(
    client: httpx.Client,
    files: dict[str, Path],
    tmp_path: Path,
    during_training: Callable[[], None] | None = None,
    epochs: int = 8,
) -> dict[str, str]:
    """The flow, training the regressor for ``epochs``; the IDs of its dataset, encoder and
    regressor."""
    upload = {role: (path.name, path.read_bytes()) for role, path in files.items()}
    answer = client.post("/datasets", files=upload, data={"name": "flow study"})
    assert answer.status_code == 201, answer.text
    dataset = answer.json()["id"]

    pretrain = wait_job(client, submit(client, {
        "kind": "pretrain", "dataset_id": dataset,
        "config": {**PRETRAIN_FAST, "epochs": 2}}))  # fmt: skip
    encoder = client.get(f"/models/{pretrain['model_id']}").json()
    assert (encoder["kind"], encoder["job_id"]) == ("encoder", pretrain["id"])

    train_id = submit(client, {
        "kind": "train", "dataset_id": dataset, "target": AGE, "base_model_id": encoder["id"],
        "freeze_base": True, "config": {**FAST, "epochs": epochs, "baseline": True}})  # fmt: skip
    if during_training is not None:

        def step() -> int:
            return int(client.get(f"/jobs/{train_id}").json()["progress"]["step"] or 0)

        before = wait_for("training steps", lambda: step() if step() >= 3 else None, 60, 0.05)
        during_training()
        after = wait_for("progress after the restart", lambda: step() > before or None, 60)
        assert after
    train = wait_job(client, train_id)
    assert train["attempts"] == 1 and train["progress"]["fraction"] == 1.0
    # epoch 0 is the linear base alone, a candidate the network must beat
    assert train["best"]["metric"] == "mae" and 0 <= train["best"]["epoch"] <= epochs
    assert {"mae", "r2"} <= train["metrics"]["validation"].keys()
    assert {"mae", "r2"} <= train["metrics"]["baseline"].keys()  # the random forest
    assert train["report"]["base_checkpoint"]["model_id"] == encoder["id"]
    assert train["report"]["base_checkpoint"]["freeze_base"] is True
    history = client.get(f"/jobs/{train_id}/metrics").json()
    assert [(r["epoch"], r["split"]) for r in history] == [
        (e, s) for e in range(1, epochs + 1) for s in ("train", "validation")
    ]
    assert {"validation_predictions", "metrics", "split", "checkpoint"} <= set(train["outputs"])
    logs = [line["message"] for line in client.get(f"/jobs/{train_id}/logs").json()["lines"]]
    assert any("encoder frozen" in line for line in logs), logs

    model = client.get(f"/models/{train['model_id']}").json()
    assert (model["kind"], model["job_id"], model["dataset_id"]) == ("regressor", train_id, dataset)
    assert model["target"]["column"] == "age"
    for plot in ("loss", "predicted_vs_true"):
        png = client.get(f"/models/{model['id']}/plots/{plot}.png")
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(client.get(f"/models/{model['id']}/checkpoint").content)
    expected = aam_predict(checkpoint, files["table"], tmp_path / "aam_predictions.tsv")
    assert len(expected) == 48

    answer = client.post(
        "/predict",
        data={"model_id": model["id"]},
        files={"table": ("table.biom", files["table"].read_bytes())},
    )
    assert answer.status_code == 200, answer.text
    served = {p["sample_id"]: p["prediction"] for p in answer.json()["predictions"]}
    assert list(served) == expected["sample_id"].tolist()
    assert list(served.values()) == pytest.approx(expected["prediction"].tolist(), rel=1e-6)

    predict = wait_job(client, submit(client, {
        "kind": "predict", "dataset_id": dataset, "model_id": model["id"]}))  # fmt: skip
    assert predict["report"]["n_samples"] == 48 and predict["model_id"] == model["id"]
    tsv = client.get(f"/jobs/{predict['id']}/predictions")
    assert tsv.status_code == 200
    produced = pd.read_csv(io.StringIO(tsv.text), sep="\t")
    pd.testing.assert_frame_equal(produced, expected, check_exact=False, rtol=1e-6)
    return {"dataset": dataset, "encoder": encoder["id"], "model": model["id"]}


def test_full_flow_on_the_embedded_broker_with_an_api_restart(
    tmp_path: Path, study_files: dict[str, Path]
) -> None:
    with (
        Store.open(tmp_path / "data") as store,
        service(store, tmp_path) as (client, restart_api),
    ):
        full_flow(client, study_files, tmp_path, during_training=restart_api)
