"""POST/GET/DELETE /datasets on the real app (SQLite file database, local artifact storage)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import app.services.datasets as datasets_service
from app.contracts import JobKind
from app.store import Job, create_job
from tests.api.conftest import (
    ADMIN,
    ALICE,
    BOB,
    StudyFiles,
    services_of,
    stored_blobs,
    upload_leftovers,
)

DATA = Path(__file__).resolve().parents[1] / "data"
QZA_UUID = "0b9c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def post(client: TestClient, headers: dict[str, str], **files: Path | tuple[str, bytes]) -> Any:
    """POST /datasets with the given file fields (a path, or a (file name, bytes) pair)."""
    parts = {
        role: (f.name, f.read_bytes()) if isinstance(f, Path) else f for role, f in files.items()
    }
    return client.post("/datasets", headers=headers, files=parts)


def study_upload(study: StudyFiles) -> dict[str, Path]:
    return {"table": study.table, "tree": study.tree, "metadata": study.metadata}


def table_qza(biom: bytes) -> bytes:
    """A QIIME 2 FeatureTable[Frequency] archive around a BIOM file."""
    meta = f"uuid: {QZA_UUID}\ntype: FeatureTable[Frequency]\nformat: BIOMV210DirFmt\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{QZA_UUID}/VERSION", "QIIME 2\narchive: 5\nframework: 2024.2.0\n")
        zf.writestr(f"{QZA_UUID}/metadata.yaml", meta)
        zf.writestr(f"{QZA_UUID}/data/feature-table.biom", biom)
    return buffer.getvalue()


def expected_summary(study: StudyFiles) -> dict[str, Any]:
    """The summary computed here from the generated study, not by the code under test."""
    table, metadata = study.study.table, study.study.metadata
    depths = np.asarray(table.counts.sum(axis=1)).ravel()
    lengths = [len(f) for f in table.feature_ids]
    return {
        "n_samples": 12,
        "n_features": 30,
        "sequence_length": {"min": min(lengths), "max": max(lengths)},
        "sample_depth": {
            "min": int(depths.min()),
            "median": float(np.median(depths)),
            "max": int(depths.max()),
        },
        "has_tree": True,
        "features_missing_from_tree": 0,
        "metadata_columns": [
            {
                "name": "age",
                "kind": "numeric",
                "n_missing": 0,
                "n_classes": None,
                "n_distinct": metadata["age"].nunique(),
                "integer": bool((metadata["age"] % 1 == 0).all()),
            },
            {
                "name": "site",
                "kind": "categorical",
                "n_missing": 0,
                "n_classes": metadata["site"].nunique(),
            },
            {
                "name": "subject",
                "kind": "categorical",
                "n_missing": 0,
                "n_classes": metadata["subject"].nunique(),
            },
        ],
        "samples_missing_metadata": 0,
        "sha256": {role: sha256(path.read_bytes()) for role, path in study_upload(study).items()},
        "warnings": [],
    }


def test_upload_answers_the_summary_and_stores_the_files(
    client: TestClient, api_study: StudyFiles
) -> None:
    parts = {role: (path.name, path.read_bytes()) for role, path in study_upload(api_study).items()}
    response = client.post("/datasets", headers=ALICE, files=parts, data={"name": "gut study"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/datasets/{body['id']}"
    assert body["id"].startswith("ds_") and body["name"] == "gut study"
    assert {k: body[k] for k in expected_summary(api_study)} == expected_summary(api_study)
    assert body["files"] == {
        role: {"sha256": sha256(data), "name": name, "size": len(data)}
        for role, (name, data) in parts.items()
    }
    assert client.get(f"/datasets/{body['id']}", headers=ALICE).json() == body
    storage = services_of(client).storage
    for _, data in parts.values():  # each file is in storage, byte for byte, under its digest
        assert storage.path(sha256(data)).read_bytes() == data
    assert stored_blobs(client) == {sha256(data) for _, data in parts.values()}
    assert upload_leftovers(client) == []


def test_a_table_alone_gets_the_file_name_as_its_name(
    client: TestClient, api_study: StudyFiles
) -> None:
    body = post(client, ALICE, table=api_study.table).json()
    assert (body["name"], body["has_tree"], body["metadata_columns"]) == ("table.biom", False, [])
    assert body["sha256"] == {"table": sha256(api_study.table.read_bytes())}


def test_a_qiime_archive_reads_like_its_biom_table(
    client: TestClient, api_study: StudyFiles
) -> None:
    archive = table_qza(api_study.table.read_bytes())
    response = post(client, ALICE, table=("feature-table.qza", archive), tree=api_study.tree)
    assert response.status_code == 201, response.text
    body = response.json()
    expected = expected_summary(api_study)
    for key in ("n_samples", "n_features", "sequence_length", "sample_depth"):
        assert body[key] == expected[key]
    assert body["sha256"]["table"] == sha256(archive)


def test_hashed_feature_ids_take_their_sequences(client: TestClient) -> None:
    """QIIME 2 tables name features by MD5: the FASTA gives the sequences (12 to 16 bp)."""
    response = post(
        client,
        ALICE,
        table=DATA / "bad" / "non_dna_ids.biom",
        sequences=DATA / "io_hash_sequences.fasta",
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["n_samples"], body["n_features"], body["sequence_length"]) == (
        4,
        5,
        {"min": 12, "max": 16},
    )
    assert body["sample_depth"] == {"min": 10, "median": 13.0, "max": 21}
    assert set(body["files"]) == {"table", "sequences"}


def test_identical_files_are_stored_once_and_removed_with_their_last_dataset(
    client: TestClient, api_study: StudyFiles
) -> None:
    first = post(client, ALICE, **study_upload(api_study)).json()
    second = post(client, ALICE, table=api_study.table).json()
    table_sha = sha256(api_study.table.read_bytes())
    assert stored_blobs(client) == set(first["sha256"].values())  # the table blob is shared
    assert client.delete(f"/datasets/{first['id']}", headers=ALICE).status_code == 204
    assert stored_blobs(client) == {table_sha}  # tree and metadata went, the table stays
    assert client.get(f"/datasets/{second['id']}", headers=ALICE).status_code == 200
    response = client.delete(f"/datasets/{second['id']}", headers=ALICE)
    assert (response.status_code, response.content) == (204, b"")
    assert stored_blobs(client) == set()
    missing = client.get(f"/datasets/{second['id']}", headers=ALICE)
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"dataset {second['id']!r} does not exist"


@pytest.mark.parametrize(
    ("files", "fields", "status", "detail"),
    [
        ({"tree": ("tree.nwk", b"(a:1,b:1);")}, {"name": "x"}, 422, "the file 'table' is required"),
        (
            {"taxonomy": ("taxonomy.tsv", b"x")},
            {},
            422,
            "unexpected file field 'taxonomy'; expected distance_matrix, metadata, sequences, "
            "table, tree",
        ),
        (
            {"table": ("table.biom", b"{}")},
            {"colour": "blue"},
            422,
            "unexpected form field 'colour'; expected the text field(s) 'name' and the file(s) "
            "'table', 'tree', 'metadata', 'sequences', 'distance_matrix'",
        ),
        (
            {"tree": ("tree.nwk", b"(a:1,b:1);")},
            {"table": "not a file"},
            422,
            "'table' must be sent as a file (a form part with a filename), not as text",
        ),
        (
            {"table": ("table.biom", b"{}")},
            {"name": "n" * 201},
            422,
            "name: at most 200 characters, got 201",
        ),
        (
            {"table": ("table.qza", b'{"not": "a zip"}')},
            {},
            422,
            "table.qza: named like a QIIME 2 archive (.qza) but not a zip file; upload the .qza "
            "exactly as QIIME 2 wrote it",
        ),
    ],
    ids=["no-table", "unknown-file", "unknown-field", "table-as-text", "long-name", "fake-qza"],
)
def test_form_mistakes_are_named_and_store_nothing(
    client: TestClient,
    files: dict[str, tuple[str, bytes]],
    fields: dict[str, str],
    status: int,
    detail: str,
) -> None:
    response = client.post("/datasets", headers=ALICE, files=files, data=fields)
    assert (response.status_code, response.json()["detail"]) == (status, detail)
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/datasets", headers=ADMIN).json() == {"items": [], "next_cursor": None}
    assert stored_blobs(client) == set()
    assert upload_leftovers(client) == []


def test_metadata_must_be_text_not_an_archive(client: TestClient, api_study: StudyFiles) -> None:
    archive = table_qza(api_study.table.read_bytes())
    response = post(client, ALICE, table=api_study.table, metadata=("sample-metadata.qza", archive))
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "sample-metadata.qza: metadata must be a tab-separated text file, not a QIIME 2 archive "
        "(.qza); export it with `qiime tools export`"
    )
    assert stored_blobs(client) == set()


def test_a_json_body_is_refused(client: TestClient) -> None:
    response = client.post("/datasets", headers=ALICE, json={"table": "x"})
    assert response.status_code == 415
    assert response.json()["detail"] == "expected a multipart/form-data body (file uploads)"


def test_validation_runs_off_the_event_loop(
    client: TestClient, api_study: StudyFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation is CPU work: it must not run on the event loop's thread."""
    seen: list[bool] = []
    real = datasets_service.summarize_upload

    def spy(upload: Any) -> dict[str, Any]:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:  # no running loop: a worker thread
            seen.append(False)
        return real(upload)

    monkeypatch.setattr(datasets_service, "summarize_upload", spy)
    assert post(client, ALICE, table=api_study.table).status_code == 201
    assert seen == [False]


def test_listing_pages_newest_first(client: TestClient, api_study: StudyFiles) -> None:
    ids = [
        client.post(
            "/datasets",
            headers=ALICE,
            files={"table": ("t.biom", api_study.table.read_bytes())},
            data={"name": f"d{i}"},
        ).json()["id"]
        for i in range(3)
    ]
    first = client.get("/datasets?limit=2", headers=ALICE).json()
    assert [d["id"] for d in first["items"]] == ids[::-1][:2]
    second = client.get(
        "/datasets", headers=ALICE, params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert ([d["id"] for d in second["items"]], second["next_cursor"]) == ([ids[0]], None)
    assert [d["name"] for d in client.get("/datasets", headers=ALICE).json()["items"]] == [
        "d2",
        "d1",
        "d0",
    ]


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("limit=0", "query.limit: Input should be greater than or equal to 1"),
        ("limit=501", "query.limit: Input should be less than or equal to 500"),
        (
            "limit=ten",
            "query.limit: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "cursor=not-a-cursor",
            "query.cursor: not a cursor this server issued; pass a page's next_cursor unchanged",
        ),
    ],
)
def test_bad_paging_parameters(client: TestClient, query: str, detail: str) -> None:
    response = client.get(f"/datasets?{query}", headers=ALICE)
    assert (response.status_code, response.json()["detail"]) == (422, detail)


def test_owners_see_only_their_datasets(client: TestClient, api_study: StudyFiles) -> None:
    bobs = post(client, BOB, table=api_study.table).json()
    alices = post(client, ALICE, table=api_study.table).json()
    missing = client.get("/datasets/ds_0000000000000000", headers=ALICE).json()["detail"]
    assert missing == "dataset 'ds_0000000000000000' does not exist"
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/datasets/{bobs['id']}", headers=ALICE)
        assert response.status_code == 404
        assert response.json()["detail"] == f"dataset {bobs['id']!r} does not exist"
    assert [d["id"] for d in client.get("/datasets", headers=ALICE).json()["items"]] == [
        alices["id"]
    ]
    everyone = client.get("/datasets", headers=ADMIN).json()["items"]
    assert [d["id"] for d in everyone] == [alices["id"], bobs["id"]]
    assert client.get(f"/datasets/{bobs['id']}", headers=ADMIN).json() == bobs
    assert client.get("/datasets", headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 401


@pytest.mark.parametrize("state", ["queued", "running", "cancelling"])
def test_delete_is_refused_while_an_active_job_uses_the_dataset(
    client: TestClient, api_study: StudyFiles, state: str
) -> None:
    dataset = post(client, ALICE, **study_upload(api_study)).json()
    services = services_of(client)
    with services.sessions() as session:
        job, _ = create_job(
            session,
            owner="alice",
            kind=JobKind.pretrain,
            name="pretrain",
            spec={"kind": "pretrain", "dataset_id": dataset["id"]},
            dataset_id=dataset["id"],
        )
        job.state = state
        session.commit()
        job_id = job.id
    response = client.delete(f"/datasets/{dataset['id']}", headers=ALICE)
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"dataset {dataset['id']!r} is used by a queued or running job; cancel the job or wait "
        "until it ends, then delete the dataset"
    )
    assert client.get(f"/datasets/{dataset['id']}", headers=ALICE).json() == dataset
    assert stored_blobs(client) == set(dataset["sha256"].values())
    with services.sessions() as session:  # the job ends: the dataset may go, its id stays
        session.get_one(Job, job_id).state = "failed"
        session.commit()
    assert client.delete(f"/datasets/{dataset['id']}", headers=ALICE).status_code == 204
    assert stored_blobs(client) == set()


@pytest.mark.parametrize("backend", ["client", "pg_client"], ids=["sqlite", "postgresql"])
def test_concurrent_uploads_and_deletes_never_lose_a_referenced_file(
    request: pytest.FixtureRequest, backend: str, api_study: StudyFiles
) -> None:
    """Four clients upload the same table and delete their dataset, three times each: a blob
    shared by datasets must exist for as long as one of them does, and goes with the last."""
    client: TestClient = request.getfixturevalue(backend)
    storage = services_of(client).storage
    table = api_study.table.read_bytes()
    digest = sha256(table)
    lost: list[str] = []

    def cycle(worker: int) -> list[int]:
        statuses = []
        for round_ in range(3):
            files = {"table": (f"w{worker}-{round_}.biom", table)}
            created = client.post("/datasets", headers=ALICE, files=files)
            statuses.append(created.status_code)
            if not storage.exists(digest):  # our dataset exists: its table must too
                lost.append(created.json()["id"])
            statuses.append(
                client.delete(f"/datasets/{created.json()['id']}", headers=ALICE).status_code
            )
        return statuses

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(cycle, range(4)))
    assert results == [[201, 204] * 3] * 4
    assert lost == []
    assert client.get("/datasets", headers=ALICE).json() == {"items": [], "next_cursor": None}
    assert stored_blobs(client) == set()
