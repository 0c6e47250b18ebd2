"""API fixtures: the real app on a real database (SQLite file, or the local PostgreSQL) with
three callers (alice, bob, and an admin), driven over HTTP with FastAPI's TestClient (httpx).

The dispatcher records the messages it would send (a unit-test double of the broker); the
Redis-backed dispatcher and a real worker are exercised in tests/worker and tests/api/test_server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aam_core.data.synthetic import SyntheticSpec, SyntheticStudy, generate, write_study
from app.api.deps import Services
from app.contracts import JobKind
from app.dispatch import BrokerUnavailable
from app.main import create_app
from app.settings import ApiKey, Settings
from tests.services import scratch_postgres

ALICE_KEY = "alice-key-0123456789abcdef"
BOB_KEY = "bob-key-0123456789abcdef00"
ADMIN_KEY = "admin-key-0123456789abcdef"
ALICE = {"Authorization": f"Bearer {ALICE_KEY}"}
BOB = {"X-API-Key": BOB_KEY}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
KEYS = [
    ApiKey(owner="alice", key=ALICE_KEY),  # type: ignore[arg-type]
    ApiKey(owner="bob", key=BOB_KEY),  # type: ignore[arg-type]
    ApiKey(owner="ops", key=ADMIN_KEY, admin=True),  # type: ignore[arg-type]
]


@dataclass
class RecordingDispatcher:
    """Records sent jobs; ``down = True`` makes it refuse like an unreachable broker."""

    sent: list[tuple[str, JobKind]] = field(default_factory=list)
    down: bool = False

    def send_job(self, job_id: str, kind: JobKind) -> None:
        if self.down:
            raise BrokerUnavailable("the job queue is unavailable (ConnectionRefusedError)")
        self.sent.append((job_id, kind))

    def ping(self) -> tuple[bool, str]:
        return (False, "unreachable (test)") if self.down else (True, "reachable (test)")


MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(tmp_path: Path) -> MakeSettings:
    def factory(**values: object) -> Settings:
        base: dict[str, object] = {"data_dir": tmp_path / "data", "api_keys": KEYS}
        return Settings(**{**base, **values})  # type: ignore[arg-type]

    return factory


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings()


@pytest.fixture
def client(settings: Settings, dispatcher: RecordingDispatcher) -> Iterator[TestClient]:
    with TestClient(create_app(settings, dispatcher=dispatcher)) as test_client:
        yield test_client


@dataclass(frozen=True)
class StudyFiles:
    """A generated study (aam_core.data.synthetic) and its files on disk."""

    study: SyntheticStudy
    table: Path
    tree: Path
    metadata: Path


@pytest.fixture(scope="session")
def api_study(tmp_path_factory: pytest.TempPathFactory) -> StudyFiles:
    """12 samples x 30 ASVs: small enough that an upload validates in milliseconds."""
    spec = SyntheticSpec(
        n_samples=12, n_asvs=30, asvs_per_sample=8, depth_range=(500, 2000), seed=3
    )
    study = generate(spec)
    paths = write_study(study, tmp_path_factory.mktemp("api-study"))
    return StudyFiles(study, paths["table"], paths["tree"], paths["metadata"])


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def stored_blobs(client: TestClient) -> set[str]:
    """The digests artifact storage holds (its temporary area must be empty between requests)."""
    root = services_of(client).settings.artifacts_dir
    assert [p.name for p in (root / "tmp").iterdir()] == []
    return {p.name for p in root.glob("??/??/*") if p.is_file()}


def upload_leftovers(client: TestClient) -> list[str]:
    """Temporary upload files still on disk (none once a request has answered)."""
    uploads = services_of(client).settings.uploads_dir
    return sorted(p.name for p in uploads.iterdir()) if uploads.exists() else []


# -- jobs: datasets and models made directly through the store (tests/api/test_job*.py) --------


@dataclass(frozen=True)
class JobStudy:
    """A generated study for job submissions (24 samples, 40 ASVs of up to 150 bp, 536-1862
    reads) and its files by role. The metadata adds three columns to the generated
    ``age``/``site``/``subject``: ``visits`` (integer codes 1-3), ``batch`` (7 for every
    sample) and ``bmi`` (no values)."""

    study: SyntheticStudy
    files: dict[str, Path]  # table, tree, metadata, distance_matrix


CHECKPOINT_PREPROCESSING = {
    "max_bp": 150,
    "token_limit": 64,
    "truncate": False,
    "rarefaction_depth": 400,
}


@pytest.fixture(scope="session")
def job_study(tmp_path_factory: pytest.TempPathFactory) -> JobStudy:
    from skbio import DistanceMatrix

    from aam_core.data.unifrac import UniFracEngine, index_branches

    spec = SyntheticSpec(n_samples=24, n_asvs=40, asvs_per_sample=10, depth_range=(500, 2000))
    study = generate(spec)
    directory = tmp_path_factory.mktemp("job-study")
    files = dict(write_study(study, directory))
    metadata = study.metadata.copy()
    metadata["visits"] = [1 + i % 3 for i in range(len(metadata))]
    metadata["batch"] = 7
    metadata["bmi"] = None  # no sample has a value
    metadata.to_csv(files["metadata"], sep="\t", index_label="sample_id")
    engine = UniFracEngine(index_branches(study.tree, study.table.feature_ids))
    distances = engine.unweighted(study.table.counts).numpy()
    files["distance_matrix"] = directory / "unifrac.tsv"
    DistanceMatrix(distances, ids=list(study.table.sample_ids)).write(
        str(files["distance_matrix"]), format="lsmat"
    )
    return JobStudy(study=study, files=files)


AddDataset = Callable[..., str]


@pytest.fixture(scope="session")
def add_dataset(job_study: JobStudy) -> AddDataset:
    """``add_dataset(client, owner, roles=("table", "tree", "metadata"))``: a dataset row with
    the summary POST /datasets would store, its files in the app's artifact storage."""
    from aam_core.io import load_inputs, sha256_file, summarize
    from app.store import create_dataset

    def factory(
        client: TestClient,
        owner: str,
        roles: tuple[str, ...] = ("table", "tree", "metadata"),
        name: str = "study",
    ) -> str:
        paths = {role: job_study.files[role] for role in roles}
        inputs = load_inputs(
            paths["table"],
            tree=paths.get("tree"),
            metadata=paths.get("metadata"),
            distance_matrix=paths.get("distance_matrix"),
        )
        summary = summarize(
            inputs.table,
            inputs.sequences,
            tree=inputs.tree,
            metadata=inputs.metadata,
            sha256={role: sha256_file(path) for role, path in paths.items()},
        )
        services = services_of(client)
        files = {}
        for role, path in paths.items():
            digest, size = services.storage.put_file(path)
            files[role] = {"sha256": digest, "name": path.name, "size": size}
        with services.sessions() as session:
            dataset = create_dataset(session, owner=owner, name=name, files=files, summary=summary)
            session.commit()
            return dataset.id

    return factory


@pytest.fixture(scope="session")
def checkpoint_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny-preset encoder, regressor (``age``) and classifier (``site``) checkpoints."""
    from aam_core.checkpoint import checkpoint_from_model, save_checkpoint
    from aam_core.model import AAMConfig, SequenceEncoder, SequenceRegressor, TargetConfig

    directory = tmp_path_factory.mktemp("checkpoints")
    encoder = SequenceEncoder(AAMConfig.tiny())
    regressor = SequenceRegressor(AAMConfig.tiny().with_target(TargetConfig()))
    classifier = SequenceRegressor(
        AAMConfig.tiny().with_target(TargetConfig(task="classification", out_dim=3))
    )
    targets = {
        "encoder": None,
        "regressor": {"column": "age", "task": "regression"},
        "classifier": {
            "column": "site",
            "task": "classification",
            "classes": ["site_A", "site_B", "site_C"],
        },
    }
    paths = {}
    for kind, model in (("encoder", encoder), ("regressor", regressor), ("classifier", classifier)):
        checkpoint = checkpoint_from_model(
            model, preprocessing=dict(CHECKPOINT_PREPROCESSING), target=targets[kind]
        )
        paths[kind] = save_checkpoint(checkpoint, directory / f"{kind}.pt")
    return paths


AddModel = Callable[..., str]


@pytest.fixture(scope="session")
def add_model(checkpoint_files: dict[str, Path]) -> AddModel:
    """``add_model(client, owner, kind)``: a model registered from a tiny checkpoint."""
    from app.registration import register_checkpoint

    def factory(client: TestClient, owner: str, kind: str, name: str | None = None) -> str:
        services = services_of(client)
        with services.sessions() as session:
            model = register_checkpoint(
                session,
                services.storage,
                checkpoint_files[kind],
                owner=owner,
                name=name or f"tiny {kind}",
                source="import",
            )
            session.commit()
            return model.id

    return factory


# -- PostgreSQL: the app on a scratch database of the local server ------------------------------


@pytest.fixture
def pg_client(make_settings: MakeSettings, dispatcher: RecordingDispatcher) -> Iterator[TestClient]:
    """The app on its own PostgreSQL database (``aam_test_<random>``, dropped afterwards).
    An unreachable server skips, except under CI=true, where it fails."""
    with (
        scratch_postgres() as url,
        TestClient(create_app(make_settings(database_url=url), dispatcher=dispatcher)) as client,
    ):
        yield client
