"""Content-addressed artifact storage."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from app.store.artifacts import ArtifactStore, DigestMismatch, LocalArtifactStore, check_sha256

DATA = b"ACGT" * 1000 + b"\x00\xff"
DATA_SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_it_is_an_artifact_store(store: LocalArtifactStore) -> None:
    typed: ArtifactStore = store
    assert typed.ping()[0] is True


def test_put_bytes_stores_by_sha256(store: LocalArtifactStore) -> None:
    sha = store.put_bytes(DATA)
    assert sha == DATA_SHA
    expected = store.root / DATA_SHA[:2] / DATA_SHA[2:4] / DATA_SHA
    assert store.path(sha) == expected
    assert expected.read_bytes() == DATA
    assert store.exists(sha) and store.exists(sha.upper())
    with store.open(sha) as handle:
        assert handle.read() == DATA
    assert _files(store.root) == [expected.relative_to(store.root)]  # nothing left in tmp/


def test_identical_content_is_stored_once(store: LocalArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "table.biom"
    source.write_bytes(DATA)
    assert store.put_file(source) == (DATA_SHA, len(DATA))
    assert source.read_bytes() == DATA  # put_file copies
    assert store.put_bytes(DATA) == DATA_SHA
    temp = store.new_temp_path()
    temp.write_bytes(DATA)
    assert store.ingest(temp) == (DATA_SHA, len(DATA))
    assert not temp.exists()  # the duplicate upload is dropped
    assert len(_files(store.root)) == 1


def test_ingest_moves_a_streamed_upload_into_place(store: LocalArtifactStore) -> None:
    temp = store.new_temp_path()
    assert temp.parent == store.root / "tmp" and not temp.exists()
    with temp.open("wb") as handle:
        for _ in range(3):
            handle.write(DATA)
    sha, size = store.ingest(temp, sha256=hashlib.sha256(DATA * 3).hexdigest())
    assert (sha, size) == (hashlib.sha256(DATA * 3).hexdigest(), 3 * len(DATA))
    assert not temp.exists()
    assert store.path(sha).read_bytes() == DATA * 3


def test_ingest_refuses_a_wrong_digest_and_keeps_nothing(store: LocalArtifactStore) -> None:
    temp = store.new_temp_path()
    temp.write_bytes(DATA)
    with pytest.raises(DigestMismatch, match=f"expected {'0' * 64}, file has {DATA_SHA}"):
        store.ingest(temp, sha256="0" * 64)
    assert not temp.exists()
    assert not store.exists(DATA_SHA)


def test_a_crash_before_the_rename_leaves_only_a_temp_file(
    store: LocalArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = store.new_temp_path()
    temp.write_bytes(DATA)

    def crash(src: object, dst: object) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk vanished"):
        store.ingest(temp)
    assert not store.exists(DATA_SHA)
    assert _files(store.root) == [temp.relative_to(store.root)]


@pytest.mark.parametrize(
    "bad",
    ["", "abc", "g" * 64, "a" * 63, "a" * 65, "../" + "a" * 61, "a" * 64 + "\n", "/etc/passwd"],
)
def test_invalid_digests_are_rejected(store: LocalArtifactStore, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid SHA-256"):
        check_sha256(bad)
    for method in (store.path, store.exists, store.delete, store.open):
        with pytest.raises(ValueError, match="invalid SHA-256"):
            method(bad)


def test_missing_blob_and_delete(store: LocalArtifactStore) -> None:
    with pytest.raises(KeyError):
        store.path(DATA_SHA)
    assert store.exists(DATA_SHA) is False
    sha = store.put_bytes(DATA)
    assert store.delete(sha) is True
    assert store.delete(sha) is False
    with pytest.raises(KeyError):
        store.open(sha)


def test_sweep_temp_removes_only_old_files(store: LocalArtifactStore) -> None:
    old, fresh = store.new_temp_path(), store.new_temp_path()
    old.write_bytes(b"partial")
    fresh.write_bytes(b"uploading")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    assert store.sweep_temp(timedelta(minutes=30)) == 1
    assert not old.exists() and fresh.exists()
    assert store.sweep_temp(timedelta(minutes=30)) == 0
