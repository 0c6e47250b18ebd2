"""A full disk under the API: the data directory (SQLite file, uploads, artifact storage) is a
real size-limited filesystem (tmpfs, mounted as root). A request that does not fit answers
507, and keeps nothing: no row, no blob, no temporary file; reads keep working; once space is
freed the same request succeeds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from app.main import create_app
from app.settings import Settings
from app.store import LocalArtifactStore
from tests.api.conftest import (
    ALICE,
    KEYS,
    RecordingDispatcher,
    StudyFiles,
    stored_blobs,
    upload_leftovers,
)
from tests.api.models import tiny_checkpoint
from tests.services import fill, small_disk

FULL = {
    "type": "/problems/storage-full",
    "title": "Insufficient storage",
    "status": 507,
    "detail": "the server's storage is full: nothing of this request was kept; "
    "ask the operator to free space, then send it again",
    "errors": [],
}


class FillingStore(LocalArtifactStore):
    """Real local storage that fills its disk right after moving a file in, when armed: the
    upload fits, and the database write that follows finds no room."""

    armed = False
    filler: Path | None = None

    def ingest(self, temp_path: Path, sha256: str | None = None) -> tuple[str, int]:
        stored = super().ingest(temp_path, sha256)
        if self.armed:
            self.filler = fill(self.root, leave=0)
        return stored


@dataclass
class Disk:
    client: TestClient
    root: Path
    storage: FillingStore

    def state(self) -> tuple[list[str], set[str], list[str]]:
        """Dataset ids, stored blobs, and temporary files left by uploads."""
        ids = [d["id"] for d in self.client.get("/datasets", headers=ALICE).json()["items"]]
        return ids, stored_blobs(self.client), upload_leftovers(self.client)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    with small_disk(tmp_path / "disk", "4m") as root:
        settings = Settings(data_dir=root / "data", api_keys=KEYS)  # type: ignore[call-arg]
        storage = FillingStore(settings.artifacts_dir)
        app = create_app(settings, dispatcher=RecordingDispatcher(), storage=storage)
        with TestClient(app) as client:
            yield Disk(client, root, storage)


@pytest.fixture(scope="module")
def big_study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """About 1.2 MB of table and tree: more than a full disk's last 200 kB."""
    spec = SyntheticSpec(n_samples=400, n_asvs=2000, asvs_per_sample=200, seed=4)
    return write_study(generate(spec), tmp_path_factory.mktemp("big"))


def parts(paths: dict[str, Path]) -> dict[str, Any]:
    return {role: (paths[role].name, paths[role].read_bytes()) for role in ("table", "tree")}


def small(api_study: StudyFiles) -> dict[str, Path]:
    return {"table": api_study.table, "tree": api_study.tree}


def test_an_upload_that_does_not_fit_is_refused_and_leaves_nothing(
    disk: Disk, api_study: StudyFiles, big_study: dict[str, Path]
) -> None:
    first = disk.client.post("/datasets", files=parts(small(api_study)), headers=ALICE)
    assert first.status_code == 201, first.text
    before = disk.state()
    filler = fill(disk.root, leave=200_000)

    refused = disk.client.post("/datasets", files=parts(big_study), headers=ALICE)
    assert (refused.status_code, refused.json()) == (507, FULL)
    assert refused.headers["content-type"] == "application/problem+json"
    assert disk.state() == before
    # reads go on while the disk is full
    assert disk.client.get(f"/datasets/{first.json()['id']}", headers=ALICE).json() == first.json()
    assert disk.client.get("/health").status_code == 200

    filler.unlink()
    again = disk.client.post("/datasets", files=parts(big_study), headers=ALICE)
    assert again.status_code == 201, again.text
    assert disk.state()[0] == [again.json()["id"], first.json()["id"]]


def test_a_database_write_that_does_not_fit_releases_the_stored_files(
    disk: Disk, api_study: StudyFiles
) -> None:
    before = disk.state()
    disk.storage.armed = True
    refused = disk.client.post("/datasets", files=parts(small(api_study)), headers=ALICE)
    disk.storage.armed = False
    assert (refused.status_code, refused.json()) == (507, FULL)
    assert disk.state() == before  # the row was rolled back, the blobs it would hold removed

    assert disk.storage.filler is not None
    disk.storage.filler.unlink()
    assert (
        disk.client.post("/datasets", files=parts(small(api_study)), headers=ALICE).status_code
        == 201
    )


def test_model_imports_predictions_and_jobs_answer_507_on_a_full_disk(
    disk: Disk, api_study: StudyFiles, tmp_path: Path
) -> None:
    dataset = disk.client.post("/datasets", files=parts(small(api_study)), headers=ALICE).json()
    checkpoint = tiny_checkpoint("regressor", tmp_path / "regressor.pt")
    model = disk.client.post(
        "/models", files={"checkpoint": ("r.pt", checkpoint.read_bytes())}, headers=ALICE
    ).json()
    before = disk.state()
    filler = fill(disk.root, leave=0)

    imported = disk.client.post(
        "/models", files={"checkpoint": ("r.pt", checkpoint.read_bytes())}, headers=ALICE
    )
    table = {"table": ("t.biom", api_study.table.read_bytes())}
    predicted = disk.client.post(
        "/predict", data={"model_id": model["id"]}, files=table, headers=ALICE
    )
    spec = {"kind": "pretrain", "dataset_id": dataset["id"], "config": {"preset": "tiny"}}
    submitted = disk.client.post("/jobs", json=spec, headers=ALICE)
    for response in (imported, predicted, submitted):
        assert (response.status_code, response.json()) == (507, FULL)
    assert disk.state() == before
    assert disk.client.get("/jobs", headers=ALICE).json()["items"] == []
    assert [m["id"] for m in disk.client.get("/models", headers=ALICE).json()["items"]] == [
        model["id"]
    ]
    # a JSON prediction writes nothing: it goes on
    counts = {"id": "s1", "counts": {"ACGTACGTAC": 600}}
    json_prediction = disk.client.post(
        "/predict", json={"model_id": model["id"], "samples": [counts]}, headers=ALICE
    )
    assert json_prediction.status_code == 200, json_prediction.text
    filler.unlink()
