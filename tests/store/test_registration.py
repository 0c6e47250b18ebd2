"""app.registration: a checkpoint becomes a model row and stored blobs only when it is a usable
AAM checkpoint (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from aam_core import __version__
from aam_core.checkpoint import CheckpointError, checkpoint_from_model, save_checkpoint
from aam_core.model import AAMConfig, SequenceEncoder, SequenceRegressor, TargetConfig
from app.registration import describe_checkpoint, register_checkpoint
from app.store import LocalArtifactStore, Model, get_model

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
PRE = {"max_bp": 150, "token_limit": 64, "truncate": False, "rarefaction_depth": 500}
TARGET = {"column": "age", "task": "regression"}


def blobs(storage: LocalArtifactStore) -> set[str]:
    return {p.name for p in storage.root.glob("??/??/*")}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def storage(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def test_regressor_round_trip(
    session: Session,
    session_factory: sessionmaker[Session],
    storage: LocalArtifactStore,
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = SequenceRegressor(AAMConfig.tiny().with_target(TargetConfig(task="regression")))
    metrics = {"best": {"epoch": 3, "metric": "validation_mae", "value": 4.5}}
    path = save_checkpoint(
        checkpoint_from_model(model, preprocessing=PRE, target=TARGET, metrics=metrics),
        tmp_path / "age.pt",
    )
    plot = tmp_path / "loss.png"
    plot.write_bytes(b"\x89PNG\r\n\x1a\n loss curve")
    row = register_checkpoint(
        session,
        storage,
        path,
        owner="alice",
        name="age model",
        source="job",
        plots={"loss": plot},
        details={"epochs": 3},
    )
    session.commit()
    expected_parameters = sum(p.numel() for p in model.parameters())
    with session_factory() as fresh:  # what was committed, read back
        stored = get_model(fresh, row.id, "alice")
        assert stored is not None
        assert (stored.kind, stored.name, stored.source, stored.owner) == (
            "regressor",
            "age model",
            "job",
            "alice",
        )
        assert stored.target == TARGET
        assert stored.n_parameters == expected_parameters
        assert stored.checkpoint_sha256 == file_sha256(path)
        assert stored.config == {
            "model": model.config.to_dict(),
            "preprocessing": PRE,
            "freeze_base": False,
            "training": {},
        }
        assert stored.metrics == metrics
        assert stored.plots == {"loss": file_sha256(plot)}
        assert stored.details == {"library_version": __version__, "epochs": 3}
    assert storage.path(file_sha256(path)).read_bytes() == path.read_bytes()
    assert storage.path(file_sha256(plot)).read_bytes() == plot.read_bytes()
    assert blobs(storage) == {file_sha256(path), file_sha256(plot)}
    assert path.exists()  # the original is left alone (copied, not moved)


def test_encoder_round_trip_and_identical_files_stored_once(
    session: Session, storage: LocalArtifactStore, tmp_path: Path
) -> None:
    torch.manual_seed(1)
    encoder = SequenceEncoder(AAMConfig.tiny())
    path = save_checkpoint(checkpoint_from_model(encoder, preprocessing=PRE), tmp_path / "e.pt")
    checkpoint, n_parameters = describe_checkpoint(path, name="e.pt")
    assert (checkpoint.kind, n_parameters) == (
        "encoder",
        sum(p.numel() for p in encoder.parameters()),
    )
    rows = [
        register_checkpoint(session, storage, path, owner="bob", name=f"copy {i}", source="import")
        for i in range(2)
    ]
    session.commit()
    assert [(r.kind, r.target, r.n_parameters) for r in rows] == [
        ("encoder", None, n_parameters)
    ] * 2
    assert rows[0].checkpoint_sha256 == rows[1].checkpoint_sha256 == file_sha256(path)
    assert blobs(storage) == {file_sha256(path)}


@pytest.mark.parametrize(
    ("corpus_file", "message"),
    [
        (
            "garbage.pt",
            "upload.pt: not a readable checkpoint (truncated or corrupt file: not a PyTorch "
            "archive)",
        ),
        (
            "foreign.pt",
            "upload.pt: not an AAM checkpoint (a PyTorch file without the 'aam-checkpoint' "
            "header; only checkpoints written by aam can be used)",
        ),
        (
            "pickle_exploit.pt",
            "upload.pt: refused: the file holds Python objects that would run code when loaded "
            "(posix.system); AAM checkpoints hold only tensors and plain values",
        ),
    ],
)
def test_a_bad_checkpoint_stores_nothing(
    session: Session,
    storage: LocalArtifactStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    corpus_file: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # where the exploit would leave its marker
    with pytest.raises(CheckpointError) as info:
        register_checkpoint(
            session,
            storage,
            BAD / corpus_file,
            owner="alice",
            name="bad",
            source="import",
            file_name="upload.pt",  # the client's name, not the server's path
        )
    assert str(info.value) == message
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Model)) == 0
    assert blobs(storage) == set()
    assert list(tmp_path.glob("aam_pickle_exploit_ran")) == []


def test_weights_that_do_not_fit_their_config_store_nothing(
    session: Session, storage: LocalArtifactStore, tmp_path: Path
) -> None:
    encoder = SequenceEncoder(AAMConfig.tiny())
    checkpoint = checkpoint_from_model(encoder, preprocessing=PRE)
    first_key = next(iter(checkpoint.state_dict))
    damaged = checkpoint.__class__(
        **{
            **checkpoint.__dict__,
            "state_dict": {k: v for k, v in checkpoint.state_dict.items() if k != first_key},
        }
    )
    path = save_checkpoint(damaged, tmp_path / "damaged.pt")
    with pytest.raises(
        CheckpointError, match=r"^damaged\.pt: weights do not fit the stored config"
    ):
        register_checkpoint(session, storage, path, owner="alice", name="x", source="import")
    assert session.scalar(select(func.count()).select_from(Model)) == 0
    assert blobs(storage) == set()
