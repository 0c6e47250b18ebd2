"""``python -m app.copy_store``: a file:// store made through the real API (an uploaded dataset,
an imported model, a model with a plot, a finished predict job's outputs, an orphan blob) is
copied into a bucket on a real S3 server (moto's server mode on loopback), checked, copied
again (nothing to do), then served by the app switched to s3:// storage with an empty data
directory. Corrupt and missing objects are named, and the exit status says so."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from aam_core.data.synthetic import SyntheticSpec, generate, write_study
from app.contracts import JobKind, JobState
from app.copy_store import main
from app.main import create_app
from app.registration import register_checkpoint
from app.settings import Settings
from app.store import claim_job, create_job, finish_job
from app.store.artifacts import LocalArtifactStore
from tests.api.conftest import ALICE, KEYS, RecordingDispatcher
from tests.api.models import tiny_checkpoint
from tests.s3 import BUCKET, MotoServer, bucket_server, object_keys
from tests.store.factories import SHA_A, SHA_B, make_dataset, make_job, make_model

ROOT = Path(__file__).resolve().parents[2]
PLOT = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # served as it is stored
PREDICTIONS = b"sample_id\tprediction\nS1\t41.5\nS2\t38.25\n"
Q2_PREDICTIONS = b"id\tprediction\nS1\t41.5\nS2\t38.25\n"
ORPHAN = b"a blob no row references (left by an interrupted upload)"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Lab:
    """A data directory (SQLite database, file:// artifacts) filled through the API."""

    data_dir: Path
    dataset: dict[str, object]  # the POST /datasets answer
    files: dict[str, bytes]  # role -> uploaded bytes
    imported: str  # model id (POST /models)
    checkpoint: bytes
    plotted: str  # model id (registered with a plot)
    job: str  # a succeeded predict job with two outputs
    blobs: dict[str, int]  # every digest in the store -> its size

    @property
    def artifacts(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.data_dir / 'aam.db'}"


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    with bucket_server() as running:
        yield running


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("lab")
    spec = SyntheticSpec(n_samples=12, n_asvs=30, asvs_per_sample=8, depth_range=(500, 2000))
    study = write_study(generate(spec), root / "study")
    files = {role: path.read_bytes() for role, path in study.items()}
    regressor = tiny_checkpoint("regressor", root / "regressor.pt")
    encoder = tiny_checkpoint("encoder", root / "encoder.pt", seed=1)
    (root / "loss.png").write_bytes(PLOT)
    settings = Settings(data_dir=root / "data", api_keys=KEYS)
    with TestClient(create_app(settings, dispatcher=RecordingDispatcher())) as client:
        parts = {role: (path.name, path.read_bytes()) for role, path in study.items()}
        dataset = client.post("/datasets", headers=ALICE, files=parts).json()
        checkpoint = {"checkpoint": ("regressor.pt", regressor.read_bytes())}
        imported = client.post("/models", headers=ALICE, files=checkpoint).json()["id"]
        services = client.app.state.services  # type: ignore[attr-defined]
        with services.sessions() as session:
            plotted = register_checkpoint(
                session, services.storage, encoder, owner="alice", name="encoder",
                source="import", plots={"loss": root / "loss.png"},
            ).id  # fmt: skip
            session.commit()
            job, _ = create_job(
                session, owner="alice", kind=JobKind.predict, name="predict",
                spec={"kind": "predict", "dataset_id": dataset["id"], "model_id": imported},
                dataset_id=dataset["id"], model_id=imported,
            )  # fmt: skip
            session.commit()
            outputs = {
                "predictions": services.storage.put_bytes(PREDICTIONS),
                "q2_predictions": services.storage.put_bytes(Q2_PREDICTIONS),
            }
            services.storage.put_bytes(ORPHAN)
            assert claim_job(session, job.id, worker="w@lab", device="cpu")
            assert finish_job(
                session, job.id, state=JobState.succeeded, worker="w@lab", outputs=outputs
            )
    store = LocalArtifactStore(root / "data" / "artifacts")
    digests = store.keys()
    blobs = {digest: store.path(digest).stat().st_size for digest in digests}
    everything = [*files.values(), regressor.read_bytes(), encoder.read_bytes(), PLOT]
    everything += [PREDICTIONS, Q2_PREDICTIONS, ORPHAN]
    assert set(blobs) == {sha(data) for data in everything}  # nine distinct blobs
    return Lab(
        data_dir=root / "data", dataset=dataset, files=files, imported=imported,
        checkpoint=regressor.read_bytes(), plotted=plotted, job=job.id, blobs=blobs,
    )  # fmt: skip


@pytest.fixture
def bucket_url() -> str:
    return f"s3://{BUCKET}/t-{uuid.uuid4().hex[:8]}/aam"


@pytest.fixture
def lab_env(lab: Lab, server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The main host's settings, as the operator's shell would hold them."""
    for name in ("AAM_STORAGE_URL", "AAM_DATABASE_URL", "AAM_CACHE_BYTES"):
        monkeypatch.delenv(name, raising=False)
    env = {"AAM_DATA_DIR": str(lab.data_dir), "AAM_S3_ENDPOINT_URL": server.endpoint}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def summary(copied: int, present: int, verified: int, copied_bytes: int, verified_bytes: int,
            problems: int = 0) -> str:  # fmt: skip
    return (
        f"copy_store: 9 objects: {copied} copied ({copied_bytes} bytes), {present} already "
        f"present, {verified} verified ({verified_bytes} bytes), {problems} problems"
    )


def test_copy_check_copy_again_and_serve_from_the_bucket(
    lab: Lab,
    lab_env: dict[str, str],
    server: MotoServer,
    bucket_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(lab.artifacts)
    total = sum(lab.blobs.values())
    assert main(["--to", bucket_url]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert err == ""
    assert lines[0] == f"copy_store: from {lab.artifacts.resolve().as_uri()} to {bucket_url}"
    progress = [f"copied, verified {d} ({n} bytes)" for d, n in sorted(lab.blobs.items())]
    assert lines[1:10] == [f"[{i}/9] {line}" for i, line in enumerate(progress, start=1)]
    assert lines[10:] == [
        summary(9, 0, 9, total, total),
        f"copy_store: the target holds every object; set AAM_STORAGE_URL={bucket_url}",
    ]
    prefix = bucket_url.removeprefix(f"s3://{BUCKET}/")
    assert [k for k in object_keys(server) if k.startswith(prefix)] == [
        f"{prefix}/{d[:2]}/{d[2:4]}/{d}" for d in sorted(lab.blobs)
    ]
    assert snapshot(lab.artifacts) == before  # the source is only read

    # Again, as the operator runs it: a process, the source named; nothing left to copy.
    again = subprocess.run(
        [sys.executable, "-m", "app.copy_store", "--from", lab.artifacts.as_uri(), "--to",
         bucket_url],
        env={**os.environ, **lab_env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout.splitlines()[1].startswith("[1/9] already present, verified ")
    assert summary(0, 9, 9, 0, total) in again.stdout.splitlines()
    assert snapshot(lab.artifacts) == before

    # The service switched to the bucket, on the same database, with an empty data directory.
    settings = Settings(
        data_dir=tmp_path / "new-host", database_url=lab.database_url, storage_url=bucket_url,
        s3_endpoint_url=server.endpoint, api_keys=KEYS,
    )  # fmt: skip
    with TestClient(create_app(settings, dispatcher=RecordingDispatcher())) as client:
        dataset = client.get(f"/datasets/{lab.dataset['id']}", headers=ALICE)
        assert (dataset.status_code, dataset.json()) == (200, lab.dataset)
        storage = client.app.state.services.storage  # type: ignore[attr-defined]
        for data in lab.files.values():  # downloaded into this host's cache, checked
            path = storage.path(sha(data))
            assert (path.parent, path.read_bytes()) == (tmp_path / "new-host" / "cache", data)
        checkpoint = client.get(f"/models/{lab.imported}/checkpoint", headers=ALICE)
        assert (checkpoint.status_code, checkpoint.content) == (200, lab.checkpoint)
        assert checkpoint.headers["etag"] == f'"{sha(lab.checkpoint)}"'
        card = client.get(f"/models/{lab.imported}/card?format=json", headers=ALICE).json()
        assert card["model"]["checkpoint_sha256"] == sha(lab.checkpoint)
        plot = client.get(f"/models/{lab.plotted}/plots/loss.png", headers=ALICE)
        assert (plot.status_code, plot.content) == (200, PLOT)
        predictions = client.get(f"/jobs/{lab.job}/predictions", headers=ALICE)
        assert (predictions.status_code, predictions.content) == (200, PREDICTIONS)
        q2 = client.get(f"/jobs/{lab.job}/predictions?layout=q2-predictions", headers=ALICE)
        assert (q2.status_code, q2.content) == (200, Q2_PREDICTIONS)
    assert snapshot(lab.artifacts) == before


def test_a_corrupt_object_in_the_target_is_named_and_a_missing_one_copied_again(
    lab: Lab,
    lab_env: dict[str, str],
    server: MotoServer,
    bucket_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--to", bucket_url]) == 0
    capsys.readouterr()
    bucket, _, prefix = bucket_url.removeprefix("s3://").partition("/")
    checkpoint, plot = sha(lab.checkpoint), sha(PLOT)
    key = f"{prefix}/{checkpoint[:2]}/{checkpoint[2:4]}/{checkpoint}"
    server.client().put_object(Bucket=bucket, Key=key, Body=b"bit rot")
    server.client().delete_object(Bucket=bucket, Key=f"{prefix}/{plot[:2]}/{plot[2:4]}/{plot}")

    assert main(["--to", bucket_url]) == 1
    out, err = capsys.readouterr()
    total = sum(lab.blobs.values())
    rotten = lab.blobs[checkpoint]
    assert summary(1, 7, 8, len(PLOT), total - rotten, problems=1) in out.splitlines()
    problem = (
        f"corrupt in the target: s3://{bucket}/{key} has SHA-256 {sha(b'bit rot')} "
        f"(referenced by model {lab.imported!r} checkpoint); remove it from the target and "
        "run again"
    )
    assert err.splitlines() == [
        "error: the target is incomplete: 1 of 9 objects missing or corrupt (keep "
        "AAM_STORAGE_URL on the source until it is fixed):",
        f"  {problem}",
    ]
    assert f"copied, verified {plot} ({len(PLOT)} bytes)" in out

    # The remedy the message gives: remove the object, run again.
    server.client().delete_object(Bucket=bucket, Key=key)
    assert main(["--to", bucket_url]) == 0
    out, err = capsys.readouterr()
    assert err == "" and summary(1, 8, 9, rotten, total) in out.splitlines()


def test_from_a_bucket_back_into_a_directory(
    lab: Lab,
    lab_env: dict[str, str],
    bucket_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--to", bucket_url]) == 0
    back = tmp_path / "back"
    assert main(["--from", bucket_url, "--to", back.as_uri()]) == 0
    out, err = capsys.readouterr()
    total = sum(lab.blobs.values())
    assert err == "" and summary(9, 0, 9, total, total) in out.splitlines()
    store = LocalArtifactStore(back)
    held = store.keys()
    assert {d: store.path(d).stat().st_size for d in held} == lab.blobs
    assert all(sha(store.path(d).read_bytes()) == d for d in held)
    assert list((back / "tmp").iterdir()) == []  # every download went into place


def test_missing_and_corrupt_sources_are_named(
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """file:// to file://, on SQLite and PostgreSQL (JSON and JSONB references)."""
    source = LocalArtifactStore(tmp_path / "source")
    good = source.put_bytes(b"checkpoint bytes")
    bad = sha(b"the original table")
    path = tmp_path / "source" / bad[:2] / bad[2:4] / bad
    path.parent.mkdir(parents=True)
    path.write_bytes(b"changed on disk")
    with session_factory() as session:
        dataset = make_dataset(session, files={
            "table": {"sha256": bad, "name": "table.biom", "size": 18},
            "tree": {"sha256": SHA_A, "name": "tree.nwk", "size": 5},
        })  # fmt: skip
        model = make_model(session, checkpoint_sha256=good, plots={"loss": SHA_B})
        job = make_job(session, dataset=dataset)
        job.outputs = {"checkpoint": good, "report": SHA_A}
        session.commit()
    engine = session_factory.kw["bind"]
    monkeypatch.setenv("AAM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("AAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("AAM_STORAGE_URL", raising=False)
    before = snapshot(tmp_path / "source")

    target = (tmp_path / "target").as_uri()
    assert main(["--from", (tmp_path / "source").as_uri(), "--to", target]) == 1
    out, err = capsys.readouterr()
    assert (
        "copy_store: 4 objects: 1 copied (16 bytes), 0 already present, 1 verified (16 bytes), "
        "3 problems"
    ) in out.splitlines()
    assert f"copied, verified {good} (16 bytes)" in out
    problems = {
        SHA_A: f"missing from the target and the source: {SHA_A} (referenced by dataset "
        f"{dataset.id!r} file 'tree' (tree.nwk), job {job.id!r} output 'report')",
        SHA_B: f"missing from the target and the source: {SHA_B} (referenced by model "
        f"{model.id!r} plot 'loss')",
        bad: f"corrupt in the source: {path} has SHA-256 {sha(b'changed on disk')} (referenced "
        f"by dataset {dataset.id!r} file 'table' (table.biom)); not copied",
    }
    assert err.splitlines() == [
        "error: the target is incomplete: 3 of 4 objects missing or corrupt (keep "
        "AAM_STORAGE_URL on the source until it is fixed):",
        *(f"  {problems[digest]}" for digest in sorted(problems)),
    ]
    assert LocalArtifactStore(tmp_path / "target").keys() == [good]
    assert snapshot(tmp_path / "source") == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--to", "gs://bucket"], "error: --to: storage URL 'gs://bucket': expected "
         "file:///path or s3://bucket/prefix"),
        (["--from", "file:///nonexistent/aam", "--to", "s3://b/p"],
         "error: the source file:///nonexistent/aam is not a directory"),
        (["--to", "SOURCE"], "error: the source and the target are the same store (SOURCE)"),
    ],
    ids=["unknown-scheme", "no-source", "same-store"],
)  # fmt: skip
def test_usage_errors(
    argv: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AAM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("AAM_STORAGE_URL", raising=False)
    (tmp_path / "artifacts").mkdir()
    same = (tmp_path / "artifacts").as_uri()
    argv = [same if a == "SOURCE" else a for a in argv]
    assert main(argv) == 2
    assert capsys.readouterr().err == message.replace("SOURCE", same) + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts"]  # nothing made
