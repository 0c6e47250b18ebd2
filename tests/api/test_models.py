"""/models on the real app: import (POST), list, read, download, plots and delete."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest
from fastapi.testclient import TestClient

from aam_core.checkpoint import FORMAT_VERSION, build_model, load_checkpoint, save_checkpoint
from aam_core.predict import Predictor
from app.contracts import JobKind
from app.registration import register_checkpoint
from app.store import Job, create_job
from tests.api.conftest import (
    ADMIN,
    ALICE,
    BOB,
    services_of,
    stored_blobs,
    upload_leftovers,
)
from tests.api.models import confounded_metrics, tiny_checkpoint


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(client: TestClient, headers: dict[str, str], path: Path, name: str | None = None) -> Any:
    data = {"name": name} if name is not None else {}
    files = {"checkpoint": (path.name, path.read_bytes())}
    return client.post("/models", headers=headers, files=files, data=data)


def png(path: Path, value: float) -> Path:
    matplotlib.image.imsave(path, np.full((4, 6), value), vmin=0, vmax=1)
    return path


def test_import_round_trip(client: TestClient, tmp_path: Path) -> None:
    path = tiny_checkpoint("classifier", tmp_path / "site-model.pt")
    response = upload(client, ALICE, path, name="site classifier")
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/models/{body['id']}"
    rebuilt = build_model(load_checkpoint(path))
    assert {k: body[k] for k in ("name", "kind", "job_id", "dataset_id", "source", "plots")} == {
        "name": "site classifier",
        "kind": "classifier",
        "job_id": None,
        "dataset_id": None,
        "source": "import",
        "plots": [],
    }
    assert body["target"] == {
        "column": "site",
        "task": "classification",
        "classes": ["gut", "oral", "skin"],
    }
    assert body["n_parameters"] == sum(p.numel() for p in rebuilt.parameters())
    assert body["checkpoint_sha256"] == sha256(path.read_bytes())
    assert body["config"]["model"] == rebuilt.config.to_dict()
    assert body["config"]["preprocessing"]["token_limit"] == 64
    assert client.get(f"/models/{body['id']}", headers=ALICE).json() == body
    assert stored_blobs(client) == {body["checkpoint_sha256"]}
    assert upload_leftovers(client) == []


def test_download_is_the_uploaded_file_with_its_digest_as_etag(
    client: TestClient, tmp_path: Path
) -> None:
    path = tiny_checkpoint("regressor", tmp_path / "age.pt")
    model = upload(client, ALICE, path).json()
    assert model["name"] == "age.pt"  # no name given: the file's
    response = client.get(f"/models/{model['id']}/checkpoint", headers=ALICE)
    assert response.status_code == 200
    assert response.content == path.read_bytes()
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == f'attachment; filename="{model["id"]}.pt"'
    etag = f'"{sha256(path.read_bytes())}"'
    assert response.headers["etag"] == etag
    cached = client.get(
        f"/models/{model['id']}/checkpoint", headers={**ALICE, "If-None-Match": etag}
    )
    assert (cached.status_code, cached.content, cached.headers["etag"]) == (304, b"", etag)
    stale = client.get(
        f"/models/{model['id']}/checkpoint", headers={**ALICE, "If-None-Match": '"0000"'}
    )
    assert stale.status_code == 200 and stale.content == path.read_bytes()


def test_future_version_checkpoint_is_refused(client: TestClient, tmp_path: Path) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint("encoder", tmp_path / "e.pt"))
    future = save_checkpoint(
        checkpoint.__class__(**{**checkpoint.__dict__, "format_version": FORMAT_VERSION + 1}),
        tmp_path / "from-the-future.pt",
    )
    response = upload(client, ALICE, future)
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"from-the-future.pt: checkpoint format version {FORMAT_VERSION + 1} is newer than this "
        f"aam supports ({FORMAT_VERSION}); it was written by aam {checkpoint.library_version}, "
        f"this is aam {checkpoint.library_version}: upgrade aam"
    )
    assert client.get("/models", headers=ADMIN).json()["items"] == []
    assert stored_blobs(client) == set()
    assert upload_leftovers(client) == []


@pytest.mark.parametrize(
    ("files", "fields", "detail"),
    [
        (
            {"weights": ("w.pt", b"x")},
            {},
            "unexpected file field 'weights'; expected checkpoint",
        ),
        (
            {"checkpoint": ("m.pt", b"x")},
            {"kind": "encoder"},
            "unexpected form field 'kind'; "
            "expected the text field(s) 'name' and the file(s) 'checkpoint'",
        ),
        (
            {"checkpoint": ("m.pt", b"x")},
            {"name": " " * 3 + "n" * 201},
            "name: at most 200 characters, got 201",
        ),
    ],
    ids=["unknown-file", "unknown-field", "long-name"],
)
def test_form_mistakes(
    client: TestClient, files: dict[str, Any], fields: dict[str, str], detail: str
) -> None:
    response = client.post("/models", headers=ALICE, files=files, data=fields)
    assert (response.status_code, response.json()["detail"]) == (422, detail)
    assert stored_blobs(client) == set()


def test_listing_filters_by_kind_and_pages(client: TestClient, tmp_path: Path) -> None:
    ids = {
        kind: upload(client, ALICE, tiny_checkpoint(kind, tmp_path / f"{kind}.pt")).json()["id"]
        for kind in ("encoder", "regressor", "classifier")
    }
    listed = client.get("/models", headers=ALICE).json()
    assert [m["id"] for m in listed["items"]] == [
        ids["classifier"],
        ids["regressor"],
        ids["encoder"],
    ]
    for kind, model_id in ids.items():
        only = client.get("/models", headers=ALICE, params={"kind": kind}).json()["items"]
        assert [m["id"] for m in only] == [model_id]
    page = client.get("/models?limit=2", headers=ALICE).json()
    rest = client.get("/models", headers=ALICE, params={"cursor": page["next_cursor"]}).json()
    assert [m["id"] for m in page["items"] + rest["items"]] == [m["id"] for m in listed["items"]]
    assert rest["next_cursor"] is None
    bad = client.get("/models?kind=forest", headers=ALICE)
    assert (bad.status_code, bad.json()["detail"]) == (
        422,
        "query.kind: Input should be 'encoder', 'regressor' or 'classifier'",
    )


def test_owners_see_only_their_models(client: TestClient, tmp_path: Path) -> None:
    bobs = upload(client, BOB, tiny_checkpoint("encoder", tmp_path / "b.pt")).json()
    alices = upload(client, ALICE, tiny_checkpoint("regressor", tmp_path / "a.pt")).json()
    not_found = f"model {bobs['id']!r} does not exist"
    assert client.get("/models/mdl_0000000000000000", headers=ALICE).json()["detail"] == (
        "model 'mdl_0000000000000000' does not exist"
    )
    for method, path in [
        ("GET", ""),
        ("GET", "/checkpoint"),
        ("GET", "/plots/loss.png"),
        ("DELETE", ""),
    ]:
        response = client.request(method, f"/models/{bobs['id']}{path}", headers=ALICE)
        assert (response.status_code, response.json()["detail"]) == (404, not_found)
    assert [m["id"] for m in client.get("/models", headers=ALICE).json()["items"]] == [alices["id"]]
    everyone = client.get("/models", headers=ADMIN).json()["items"]
    assert [m["id"] for m in everyone] == [alices["id"], bobs["id"]]
    download = client.get(f"/models/{bobs['id']}/checkpoint", headers=ADMIN)
    assert download.content == (tmp_path / "b.pt").read_bytes()


def test_plots_are_served_by_name(client: TestClient, tmp_path: Path) -> None:
    services = services_of(client)
    plots = {"loss": png(tmp_path / "l.png", 0.2), "predicted_vs_true": png(tmp_path / "p.png", 1)}
    with services.sessions() as session:
        row = register_checkpoint(
            session,
            services.storage,
            tiny_checkpoint("regressor", tmp_path / "r.pt"),
            owner="alice",
            name="age",
            source="job",
            plots=plots,
        )
        session.commit()
    model = client.get(f"/models/{row.id}", headers=ALICE).json()
    assert model["plots"] == ["loss", "predicted_vs_true"]
    for name, path in plots.items():
        response = client.get(f"/models/{row.id}/plots/{name}.png", headers=ALICE)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.content == path.read_bytes()
        assert response.headers["etag"] == f'"{sha256(path.read_bytes())}"'
    missing = client.get(f"/models/{row.id}/plots/confusion.png", headers=ALICE)
    assert (missing.status_code, missing.json()["detail"]) == (
        404,
        f"model {row.id!r} has no plot 'confusion'; its plots are loss, predicted_vs_true",
    )
    imported = upload(client, ALICE, tiny_checkpoint("encoder", tmp_path / "e.pt")).json()
    none = client.get(f"/models/{imported['id']}/plots/loss.png", headers=ALICE)
    assert none.json()["detail"] == f"model {imported['id']!r} has no plot 'loss'; it has no plots"
    assert client.delete(f"/models/{row.id}", headers=ALICE).status_code == 204
    assert stored_blobs(client) == {imported["checkpoint_sha256"]}  # plots went with it


@pytest.mark.parametrize("backend", ["client", "pg_client"], ids=["sqlite", "postgresql"])
def test_delete_evicts_the_model_and_keeps_a_shared_checkpoint(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    client: TestClient = request.getfixturevalue(backend)
    path = tiny_checkpoint("regressor", tmp_path / "age.pt")
    first, second = (upload(client, ALICE, path, name=n).json() for n in ("one", "two"))
    sha = first["checkpoint_sha256"]
    assert second["checkpoint_sha256"] == sha and stored_blobs(client) == {sha}
    services = services_of(client)
    for precision in ("fp32", "fp64"):  # the service keeps one entry per precision asked
        services.cache.get(
            (sha, precision),
            lambda p=precision: Predictor.from_path(services.storage.path(sha), precision=p),
        )
    assert sha in services.cache and len(services.cache) == 2
    response = client.delete(f"/models/{first['id']}", headers=ALICE)
    assert (response.status_code, response.content) == (204, b"")
    assert sha not in services.cache and len(services.cache) == 0
    assert client.get(f"/models/{first['id']}", headers=ALICE).status_code == 404
    assert stored_blobs(client) == {sha}  # the second model still uses the file
    download = client.get(f"/models/{second['id']}/checkpoint", headers=ALICE)
    assert download.content == path.read_bytes()
    assert client.delete(f"/models/{second['id']}", headers=ALICE).status_code == 204
    assert stored_blobs(client) == set()


@pytest.mark.parametrize("role", ["model_id", "base_model_id"])
def test_delete_is_refused_while_an_active_job_uses_the_model(
    client: TestClient, tmp_path: Path, role: str
) -> None:
    model = upload(client, ALICE, tiny_checkpoint("encoder", tmp_path / "e.pt")).json()
    services = services_of(client)
    with services.sessions() as session:
        job, _ = create_job(
            session,
            owner="alice",
            kind=JobKind.predict if role == "model_id" else JobKind.train,
            name="uses the model",
            spec={},
            dataset_id="ds_0000000000000000",
            **{role: model["id"]},
        )
        session.commit()
        job_id = job.id
    response = client.delete(f"/models/{model['id']}", headers=ALICE)
    assert (response.status_code, response.json()["detail"]) == (
        409,
        f"model {model['id']!r} is used by a queued or running job; cancel the job or wait "
        "until it ends, then delete the model",
    )
    assert client.get(f"/models/{model['id']}", headers=ALICE).json() == model
    assert stored_blobs(client) == {model["checkpoint_sha256"]}
    with services.sessions() as session:
        session.get_one(Job, job_id).state = "succeeded"
        session.commit()
    assert client.delete(f"/models/{model['id']}", headers=ALICE).status_code == 204
    assert stored_blobs(client) == set()


def test_a_checkpoint_missing_from_storage_is_reported(client: TestClient, tmp_path: Path) -> None:
    model = upload(client, ALICE, tiny_checkpoint("encoder", tmp_path / "e.pt")).json()
    sha = model["checkpoint_sha256"]
    services_of(client).storage.delete(sha)  # e.g. an operator cleaned the volume by hand
    response = client.get(f"/models/{model['id']}/checkpoint", headers=ALICE)
    assert (response.status_code, response.json()["detail"]) == (
        500,
        f"the checkpoint of model {model['id']!r} is missing from artifact storage "
        f"(sha256 {sha}); tell the operator",
    )


def test_a_model_whose_labels_follow_depth_says_so(client: TestClient, tmp_path: Path) -> None:
    metrics = confounded_metrics()
    path = tiny_checkpoint("classifier", tmp_path / "site.pt", metrics=metrics)
    model_id = upload(client, ALICE, path).json()["id"]
    body = client.get(f"/models/{model_id}", headers=ALICE).json()
    verdict = body["metrics"]["depth_confound"]
    assert body["metrics"]["baselines"]["depth"]["validation"]["roc_auc"] == 0.9375
    assert verdict == metrics["depth_confound"] and verdict["confounded"] is True
    assert verdict["message"] == (
        "sequencing depth alone predicts 'site': a model of log(reads per sample) alone "
        "reaches validation ROC AUC 0.94 (this model 0.62); the labels follow sequencing depth "
        "(a batch effect), so validation figures may not carry over to samples sequenced "
        "otherwise"
    )
    card = client.get(f"/models/{model_id}/card?format=json", headers=ALICE).json()
    assert card["metrics"]["depth_confound"] == verdict
    assert card["metrics"]["baselines"]["depth"]["roc_auc"] == 0.9375
    markdown = client.get(f"/models/{model_id}/card", headers=ALICE).text
    assert f"**Warning:** {verdict['message']}." in markdown
    assert "| roc_auc | 0.625 | 0.5 | 0.9375 |" in markdown  # model, constant, depth alone


def test_routes_are_documented_with_their_errors(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    expected = {
        ("/datasets", "post"): {"201", "400", "401", "413", "415", "422", "507"},
        ("/datasets", "get"): {"200", "401", "422"},
        ("/datasets/{dataset_id}", "get"): {"200", "401", "404", "422"},
        ("/datasets/{dataset_id}", "delete"): {"204", "401", "404", "409", "422", "507"},
        ("/models", "post"): {"201", "400", "401", "413", "415", "422", "507"},
        ("/models", "get"): {"200", "401", "422"},
        ("/models/{model_id}", "get"): {"200", "401", "404", "422"},
        ("/models/{model_id}", "delete"): {"204", "401", "404", "409", "422", "507"},
        ("/models/{model_id}/checkpoint", "get"): {"200", "401", "404", "422"},
        ("/models/{model_id}/plots/{plot}.png", "get"): {"200", "401", "404", "422"},
    }
    for (path, method), statuses in expected.items():
        operation = paths[path][method]
        assert set(operation["responses"]) == statuses, (path, method)
        for status in statuses - {"200", "201", "204"}:  # 422s too: every error is a problem
            assert set(operation["responses"][status]["content"]) == {"application/problem+json"}
    upload_schema = paths["/datasets"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload_schema["schema"]["required"] == ["table"]
    ok = paths["/datasets/{dataset_id}"]["get"]["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/DatasetOut"}
    listed = paths["/models"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"] == {"$ref": "#/components/schemas/Page_ModelOut_"}
