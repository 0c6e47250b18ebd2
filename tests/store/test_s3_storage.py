"""s3:// artifact storage against a real S3 server process (moto's server mode on loopback):
objects by digest, multipart uploads, the host cache's limit and checks, corrupt objects, and
the store going away mid-upload."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.settings import Settings
from app.store.artifacts import DigestMismatch, LocalArtifactStore
from app.store.blob_cache import BlobCache, CacheTooSmall
from app.store.objects import CorruptArtifact, S3ArtifactStore, StorageUnavailable
from app.store.storage import open_store
from tests.s3 import BUCKET, MotoServer, Relay, bucket_server, object_keys, open_uploads

MIB = 1024**2


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    with bucket_server() as running:
        yield running


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def make_store(
    endpoint: str, prefix: str, cache_dir: Path, limit: int = 64 * MIB, **options: int
) -> S3ArtifactStore:
    return S3ArtifactStore(
        f"s3://{BUCKET}/{prefix}",
        cache=BlobCache(cache_dir, limit),
        endpoint_url=endpoint,
        **options,
    )


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_objects_by_digest_read_on_another_host_through_its_cache(
    server: MotoServer, prefix: str, tmp_path: Path
) -> None:
    api = make_store(server.endpoint, prefix, tmp_path / "api-cache")
    data = os.urandom(70_000)
    temp = write(api.new_temp_path(), data)
    assert api.ingest(temp, sha(data).upper()) == (sha(data), len(data))
    assert not temp.exists()  # consumed: it became the API host's cached copy
    key = f"{prefix}/{sha(data)[:2]}/{sha(data)[2:4]}/{sha(data)}"
    assert object_keys(server) == sorted([*object_keys(server)]) and key in object_keys(server)
    head = server.client().head_object(Bucket=BUCKET, Key=key)
    assert head["Metadata"] == {"sha256": sha(data)} and head["ContentLength"] == len(data)
    assert api.cache.get(sha(data)) is not None

    worker = make_store(server.endpoint, prefix, tmp_path / "worker-cache")
    assert worker.exists(sha(data)) and worker.cache.get(sha(data)) is None
    path = worker.path(sha(data))
    assert path.read_bytes() == data and path.parent == tmp_path / "worker-cache"
    assert worker.path(sha(data)) == path  # the second use is the cached file
    with worker.open(sha(data)) as body:  # a download streams from the store
        assert body.size == len(data) and body.read() == data

    # identical content is stored once; put_file leaves the original alone
    again = write(tmp_path / "again.bin", data)
    assert worker.put_file(again) == (sha(data), len(data)) and again.exists()
    assert worker.put_bytes(b"plot") == sha(b"plot")
    assert sorted(worker.keys()) == sorted([sha(data), sha(b"plot")])

    assert worker.delete(sha(data)) and not worker.delete(sha(data))
    assert not api.exists(sha(data)) and worker.cache.get(sha(data)) is None
    with pytest.raises(KeyError):
        api.open(sha(data))
    with pytest.raises(KeyError):
        make_store(server.endpoint, prefix, tmp_path / "third").path(sha(data))


def test_a_wrong_digest_uploads_nothing(server: MotoServer, prefix: str, tmp_path: Path) -> None:
    store = make_store(server.endpoint, prefix, tmp_path / "cache")
    temp = write(store.new_temp_path(), b"table bytes")
    with pytest.raises(
        DigestMismatch, match=f"expected {'0' * 64}, file has {sha(b'table bytes')}"
    ):
        store.ingest(temp, "0" * 64)
    assert not temp.exists() and store.keys() == []


def test_large_files_go_up_in_parts_and_come_back_whole(
    server: MotoServer, prefix: str, tmp_path: Path
) -> None:
    store = make_store(server.endpoint, prefix, tmp_path / "cache", part_bytes=5 * MIB)
    data = os.urandom(11 * MIB + 123)
    digest, size = store.put_file(write(tmp_path / "big.pt", data))
    head = server.client().head_object(Bucket=BUCKET, Key=store.key(digest))
    assert size == len(data) and head["ETag"].strip('"').endswith("-3")  # three parts
    fresh = make_store(server.endpoint, prefix, tmp_path / "fresh")
    assert hashlib.sha256(fresh.path(digest).read_bytes()).hexdigest() == digest


def test_a_corrupt_object_is_named_and_never_cached(
    server: MotoServer, prefix: str, tmp_path: Path
) -> None:
    store = make_store(server.endpoint, prefix, tmp_path / "writer")
    good, other = b"the real table" * 1000, b"something else" * 1000
    digest = store.put_bytes(good)
    keep = store.put_bytes(other)
    server.client().put_object(Bucket=BUCKET, Key=store.key(digest), Body=b"bit rot" * 2000)

    reader = make_store(server.endpoint, prefix, tmp_path / "reader")
    url = f"s3://{BUCKET}/{store.key(digest)}"
    expected = f"object {url} is corrupt: its content has SHA-256 {sha(b'bit rot' * 2000)}, "
    with pytest.raises(CorruptArtifact, match=expected + f"expected {digest}"):
        reader.path(digest)
    assert reader.cache.get(digest) is None and list(reader.cache.temp_dir.iterdir()) == []
    assert reader.path(keep).read_bytes() == other  # nothing else is lost


def test_a_cached_file_changed_on_disk_is_checked_and_fetched_again(
    server: MotoServer, prefix: str, tmp_path: Path
) -> None:
    data = os.urandom(5000)
    digest = make_store(server.endpoint, prefix, tmp_path / "w").put_bytes(data)
    first = make_store(server.endpoint, prefix, tmp_path / "cache")
    path = first.path(digest)
    path.write_bytes(b"edited by hand")
    # a new process (a new cache object on the same directory) checks the file on first use
    second = make_store(server.endpoint, prefix, tmp_path / "cache")
    assert second.path(digest).read_bytes() == data


def test_the_cache_stays_under_its_limit_as_twenty_datasets_pass(
    server: MotoServer, prefix: str, tmp_path: Path
) -> None:
    writer = make_store(server.endpoint, prefix, tmp_path / "writer")
    blobs = [os.urandom(3000 + 100 * i) for i in range(20)]
    digests = [writer.put_bytes(b) for b in blobs]
    limit = 16_000
    host = make_store(server.endpoint, prefix, tmp_path / "host", limit=limit)
    for i, (digest, blob) in enumerate(zip(digests, blobs, strict=True)):
        assert host.path(digest).read_bytes() == blob
        if i >= 1:
            host.path(digests[0])  # the first dataset stays in use: recently used, kept
        assert host.cache.usage() <= limit, (i, host.cache.usage())
    held = {path.name for _, _, path in host.cache.entries()}
    assert digests[0] in held and digests[-1] in held and len(held) < 20
    assert digests[1] not in held  # least recently used: evicted first

    big = writer.put_bytes(os.urandom(limit + 1))
    with pytest.raises(CacheTooSmall, match=rf"\({limit + 1} bytes, .*raise AAM_CACHE_BYTES"):
        host.path(big)
    assert host.cache.usage() <= limit


def test_the_store_going_away_mid_upload_leaves_no_object(
    server: MotoServer, prefix: str, tmp_path: Path
) -> None:
    relay = Relay(server.port)
    relay.open()
    store = make_store(relay.endpoint, prefix, tmp_path / "cache", part_bytes=5 * MIB, attempts=1)
    data = os.urandom(11 * MIB)
    source = write(tmp_path / "checkpoint.pt", data)
    relay.cut_during_put(after=7 * MIB)  # in the second part
    with pytest.raises(StorageUnavailable, match=f"object store s3://{BUCKET}/{prefix} at "):
        store.put_file(source)
    assert relay.cut.is_set()
    assert not [k for k in object_keys(server) if k.startswith(prefix)]
    ok, detail = store.ping()
    assert not ok and "object store" in detail and "checking the bucket" in detail

    relay.open()  # the store is back
    assert store.put_file(source) == (sha(data), len(data))
    # the failed attempt's parts: an open multipart upload until the sweep aborts it
    left = [k for k in open_uploads(server) if k.startswith(prefix)]
    assert left in ([], [store.key(sha(data))])
    assert store.sweep_temp(timedelta(0)) == len(left)
    assert [k for k in open_uploads(server) if k.startswith(prefix)] == []
    assert store.ping()[0]
    relay.close()


def test_a_stopped_server_then_a_new_one_on_the_same_port(tmp_path: Path) -> None:
    server = MotoServer()
    server.start()
    server.make_bucket()
    try:
        store = make_store(server.endpoint, "p", tmp_path / "cache", attempts=1)
        store.put_bytes(b"before")
        server.stop()
        with pytest.raises(StorageUnavailable, match="failed while looking up s3://"):
            store.put_bytes(b"during")
        assert not store.ping()[0]
        server.start()
        server.make_bucket()
        assert store.put_bytes(b"during") == sha(b"during")
        assert store.keys() == [sha(b"during")]
    finally:
        server.stop()


def test_settings_choose_the_store(tmp_path: Path) -> None:
    local = open_store(Settings(data_dir=tmp_path / "d"))
    assert isinstance(local, LocalArtifactStore)
    assert local.root == (tmp_path / "d" / "artifacts").resolve()
    shared = open_store(Settings(data_dir=tmp_path, storage_url=f"file://{tmp_path}/my%20store"))
    assert isinstance(shared, LocalArtifactStore) and shared.root == tmp_path / "my store"
    s3 = open_store(
        Settings(
            data_dir=tmp_path,
            storage_url="s3://lab-bucket/aam/prod/",
            s3_endpoint_url="http://127.0.0.1:9",
            cache_bytes=1234,
        )
    )
    assert isinstance(s3, S3ArtifactStore)
    assert (s3.bucket, s3.prefix, s3.cache.limit_bytes) == ("lab-bucket", "aam/prod", 1234)
    assert s3.cache.root == tmp_path / "cache"
    assert s3.key("AB" * 32) == f"aam/prod/ab/ab/{'ab' * 32}"
    blank = Settings(storage_url="s3://b", s3_endpoint_url="  ")  # AAM_S3_ENDPOINT_URL= : AWS
    assert blank.s3_endpoint_url is None
    for url, message in [
        ("gs://bucket", "expected file:///absolute/path or s3://bucket/prefix"),
        ("s3:///prefix", "names no bucket"),
        ("file://host/path", "a file URL is file:///absolute/path"),
        ("/just/a/path", "expected file:///absolute/path or s3://bucket/prefix"),
    ]:
        with pytest.raises(ValueError, match=message):
            Settings(storage_url=url)
