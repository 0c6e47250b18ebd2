"""POST /predict: both body forms give the numbers aam_core's Predictor gives on the same
checkpoint; every bad request gets a pinned 4xx; a warm model is not loaded again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aam_core.data.synthetic import SyntheticSpec, SyntheticStudy, generate, write_study
from aam_core.io import read_table
from aam_core.predict import PredictionResult, Predictor
from app.api.deps import Services
from app.api.routes import predict as route
from app.api.routes.predict import PredictRequest, table_from_samples
from app.main import create_app
from app.services import predict as predicting
from tests.api.conftest import ALICE, BOB, MakeSettings, RecordingDispatcher
from tests.api.models import CLASSES, register_tiny

Study = tuple[SyntheticStudy, dict[str, Path]]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    generated = generate(SyntheticSpec(n_samples=12, n_asvs=40, asvs_per_sample=10, seed=3))
    return generated, write_study(generated, tmp_path_factory.mktemp("predict_study"))


def _services(client: TestClient) -> Services:
    services: Services = client.app.state.services
    return services


def _samples(generated: SyntheticStudy, n: int) -> list[dict[str, Any]]:
    table = generated.table
    return [{"id": table.sample_ids[i], "counts": table.row_counts(i)} for i in range(n)]


def _direct(
    services: Services, sha256: str, table_samples: list[dict[str, Any]], **kw: Any
) -> PredictionResult:
    table = table_from_samples(PredictRequest(model_id="x", samples=table_samples))
    predictor = Predictor.from_path(services.storage.path(sha256))
    return predictor.predict(table, table.feature_ids, **kw)


def test_json_regression_equals_the_library(
    client: TestClient, study: Study, tmp_path: Path
) -> None:
    services = _services(client)
    model = register_tiny(services, "regressor", "alice", tmp_path)
    samples = _samples(study[0], 5)
    response = client.post(
        "/predict", json={"model_id": model.id, "samples": samples}, headers=ALICE
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_id"] == model.id and body["device"] == "cpu"
    expected = _direct(services, model.checkpoint_sha256, samples)
    got = [p["prediction"] for p in body["predictions"]]
    want = [s.prediction[0] for s in expected.samples]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert [p["sample_id"] for p in body["predictions"]] == [s["id"] for s in samples]
    first = body["predictions"][0]
    assert first["n_features_used"] == expected.samples[0].n_features_used
    assert first["fraction_reads_used"] == pytest.approx(expected.samples[0].fraction_reads_used)
    assert "label" not in first or first["label"] is None
    # a second request is served by the warm model: no second checkpoint load
    client.post("/predict", json={"model_id": model.id, "samples": samples[:1]}, headers=ALICE)
    assert services.cache.loads == 1 and model.checkpoint_sha256 in services.cache


def test_blocking_work_runs_off_the_event_loop(
    client: TestClient, study: Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request's table, the model's row, the table's sequences and the prediction run in a
    worker thread: none of them holds up the event loop that serves every other request."""
    model = register_tiny(_services(client), "regressor", "alice", tmp_path)
    on_loop: dict[str, bool] = {}

    def watched(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
                on_loop[name] = True
            except RuntimeError:  # no event loop runs in this thread
                on_loop[name] = False
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(
        route, "table_from_samples", watched("table_from_samples", route.table_from_samples)
    )
    for name in ("model_checkpoint", "resolve_sequences"):
        monkeypatch.setattr(predicting, name, watched(name, getattr(predicting, name)))
    monkeypatch.setattr(Predictor, "predict", watched("predict", Predictor.predict))
    body = {"model_id": model.id, "samples": _samples(study[0], 2)}
    response = client.post("/predict", json=body, headers=ALICE)
    assert response.status_code == 200, response.text
    assert on_loop == {
        "table_from_samples": False,
        "model_checkpoint": False,
        "resolve_sequences": False,
        "predict": False,
    }


def test_multipart_table_classifier_equals_the_library(
    client: TestClient,
    study: Study,
    tmp_path: Path,
) -> None:
    services = _services(client)
    model = register_tiny(services, "classifier", "alice", tmp_path)
    path = study[1]["table"]
    with path.open("rb") as fh:
        response = client.post(
            "/predict",
            data={"model_id": model.id},
            files={"table": ("my table.biom", fh, "application/octet-stream")},
            headers=ALICE,
        )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    table = read_table(path)
    expected = Predictor.from_path(services.storage.path(model.checkpoint_sha256)).predict(
        table, table.feature_ids
    )
    assert len(predictions) == table.n_samples == 12
    for got, want in zip(predictions, expected.samples, strict=True):
        assert got["label"] == want.label and got["label"] in CLASSES
        assert sum(got["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        for name in CLASSES:
            assert got["probabilities"][name] == pytest.approx(want.probabilities[name], abs=1e-6)


def test_embeddings_of_an_encoder(client: TestClient, study: Study, tmp_path: Path) -> None:
    services = _services(client)
    model = register_tiny(services, "encoder", "alice", tmp_path)
    samples = _samples(study[0], 3)
    body = {"model_id": model.id, "samples": samples, "output": "embedding"}
    response = client.post("/predict", headers=ALICE, json=body)
    assert response.status_code == 200, response.text
    expected = _direct(services, model.checkpoint_sha256, samples, embeddings=True)
    for got, want in zip(response.json()["predictions"], expected.samples, strict=True):
        assert len(got["embedding"]) == len(want.embedding)
        np.testing.assert_allclose(got["embedding"], want.embedding, rtol=1e-5, atol=1e-6)
    # an encoder predicts no target
    response = client.post(
        "/predict", headers=ALICE, json={"model_id": model.id, "samples": samples}
    )
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "this model is a pretrained encoder: it predicts no target; ask for embeddings or use "
        "a regressor/classifier"
    )


def _problem(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail: str = response.json()["detail"]
    return detail


def test_bad_requests(client: TestClient, study: Study, tmp_path: Path) -> None:
    services = _services(client)
    model = register_tiny(services, "regressor", "alice", tmp_path)
    samples = _samples(study[0], 2)
    post = client.post

    assert _problem(post("/predict", json={"model_id": model.id, "samples": samples}), 401) == (
        "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    )
    missing = post("/predict", json={"model_id": "mdl_nope", "samples": samples}, headers=ALICE)
    assert _problem(missing, 404) == "model 'mdl_nope' does not exist"
    # bob cannot use alice's model: the same answer as a model that does not exist
    other = post("/predict", json={"model_id": model.id, "samples": samples}, headers=BOB)
    assert _problem(other, 404) == f"model {model.id!r} does not exist"

    twice = [samples[0], samples[0]]
    duplicate = post("/predict", json={"model_id": model.id, "samples": twice}, headers=ALICE)
    assert _problem(duplicate, 422) == (
        f"request body: sample IDs must be unique; 1 appear more than once ('{samples[0]['id']}')"
    )
    negative = [{"id": "s1", "counts": {"ACGT" * 30: -3}}]
    bad = post("/predict", json={"model_id": model.id, "samples": negative}, headers=ALICE)
    assert _problem(bad, 422) == (
        "request body: 1 samples have negative counts ('s1'); counts must be whole numbers of "
        "reads from 0 to 10^12"
    )
    not_dna = [{"id": "s1", "counts": {"d41d8cd98f00b204e9800998ecf8427e": 10}}]
    bad = post("/predict", json={"model_id": model.id, "samples": not_dna}, headers=ALICE)
    assert _problem(bad, 422).startswith(
        "request body: 1 of 1 feature IDs are not DNA sequences (e.g. "
        "'d41d8cd98f00b204e9800998ecf8427e'); QIIME 2 tables use hashes as IDs"
    )
    extra = post(
        "/predict", json={"model_id": model.id, "samples": samples, "limit": 3}, headers=ALICE
    )
    assert (
        _problem(extra, 422) == "invalid prediction request: limit: Extra inputs are not permitted"
    )
    empty = post("/predict", json={"model_id": model.id, "samples": []}, headers=ALICE)
    assert _problem(empty, 422) == (
        "invalid prediction request: samples: List should have at least 1 item after "
        "validation, not 0"
    )
    output = post(
        "/predict", json={"model_id": model.id, "samples": samples, "output": "x"}, headers=ALICE
    )
    assert _problem(output, 422) == (
        "invalid prediction request: output: Input should be 'prediction' or 'embedding'"
    )
    bf16 = {"model_id": model.id, "samples": samples, "precision": "bf16"}
    assert _problem(post("/predict", json=bf16, headers=ALICE), 422) == (
        "invalid prediction request: precision: Input should be 'fp32' or 'fp64'"
    )
    with study[1]["table"].open("rb") as fh:
        form = {"model_id": model.id, "precision": "float64"}
        fp = post("/predict", data=form, files={"table": ("t.biom", fh)}, headers=ALICE)
    assert _problem(fp, 422) == "precision must be 'fp32' or 'fp64' (exact), got 'float64'"
    with study[1]["table"].open("rb") as fh:
        form = {"model_id": model.id, "passes": "3"}
        extra = post("/predict", data=form, files={"table": ("t.biom", fh)}, headers=ALICE)
    assert _problem(extra, 422) == (
        "unknown form field(s) passes: expected model_id, output, precision, and files table "
        "and sequences"
    )
    text = post("/predict", content=b"hello", headers={**ALICE, "Content-Type": "text/plain"})
    assert _problem(text, 415) == (
        "POST /predict takes application/json (samples) or multipart/form-data (table)"
    )
    no_table = post(
        "/predict",
        data={"model_id": model.id},
        files={"sequences": ("s.fasta", b">a\nACGT\n")},
        headers=ALICE,
    )
    assert _problem(no_table, 422) == "the 'table' file is required (BIOM v2.1/v1 or .qza)"
    with study[1]["table"].open("rb") as fh:
        no_model = post("/predict", files={"table": ("t.biom", fh)}, headers=ALICE)
    assert _problem(no_model, 422) == "model_id is required (the model to apply)"
    junk = {"table": ("junk.biom", b"not a table at all")}
    garbage = post("/predict", data={"model_id": model.id}, files=junk, headers=ALICE)
    assert _problem(garbage, 422).startswith("junk.biom: ")
    assert services.cache.loads == 0  # no bad request loaded the model
    assert list(services.settings.uploads_dir.iterdir()) == []  # temporary uploads removed


def test_counts_and_ids_outside_the_rule_are_refused_by_name(
    client: TestClient, study: Study, tmp_path: Path
) -> None:
    """Issue 15's table: each was a 500, or a null prediction with 200."""
    model = register_tiny(_services(client), "regressor", "alice", tmp_path)
    good = _samples(study[0], 1)[0]
    asv = next(iter(good["counts"]))

    def predict(*samples: dict[str, Any]) -> str:
        body = {"model_id": model.id, "samples": [good, *samples]}
        return _problem(client.post("/predict", json=body, headers=ALICE), 422)

    assert predict({"id": "huge", "counts": {asv: 10**30}}) == (
        "request body: 1 samples have above 10^12 counts ('huge'); counts must be whole "
        "numbers of reads from 0 to 10^12"
    )
    assert predict({"id": "sum", "counts": {asv: 6 * 10**11, asv[::-1]: 6 * 10**11}}) == (
        "request body: 1 samples have more than 10^12 reads in all ('sum'); counts must be "
        "whole numbers of reads from 0 to 10^12"
    )
    no_reads = "1 samples have no reads ('{}'): nothing can be predicted from them; remove them"
    assert predict({"id": "nothing", "counts": {}}).startswith(no_reads.format("nothing"))
    assert predict({"id": "zeros", "counts": {asv: 0}}).startswith(no_reads.format("zeros"))
    for bad in ("a\tb", "a\nb"):
        assert predict({"id": bad, "counts": {asv: 3}}) == (
            "request body: 1 sample IDs are empty or hold a control character (tab, newline, "
            f"...): {bad!r}; an ID must be printable text"
        )
    # alone, an empty sample leaves the table without features: the same answer, not a 500
    alone = {"model_id": model.id, "samples": [{"id": "nothing", "counts": {}}]}
    response = client.post("/predict", json=alone, headers=ALICE)
    assert _problem(response, 422).startswith(no_reads.format("nothing"))
    huge = Path(__file__).resolve().parents[1] / "data" / "bad" / "huge_count.json.biom"
    table = {"table": ("huge.biom", huge.read_bytes())}
    response = client.post("/predict", data={"model_id": model.id}, files=table, headers=ALICE)
    assert _problem(response, 422) == (
        "huge.biom: 1 counts are above 10^12, in 1 samples ('S2'); counts must be whole "
        "numbers of reads from 0 to 10^12"
    )


def test_synchronous_limit_points_to_predict_jobs(
    make_settings: MakeSettings,
    dispatcher: RecordingDispatcher,
    study,
    tmp_path: Path,
) -> None:
    app = create_app(make_settings(sync_predict_limit=2), dispatcher=dispatcher)
    with TestClient(app) as client:
        model = register_tiny(_services(client), "regressor", "alice", tmp_path)
        body = {"model_id": model.id, "samples": _samples(study[0], 3)}
        response = client.post("/predict", json=body, headers=ALICE)
        assert _problem(response, 413) == (
            "3 samples is more than synchronous prediction serves (2, AAM_SYNC_PREDICT_LIMIT): "
            "upload the table as a dataset and submit a 'predict' job (POST /jobs)"
        )
        body["samples"] = body["samples"][:2]
        assert client.post("/predict", json=body, headers=ALICE).status_code == 200
