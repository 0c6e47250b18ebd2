from __future__ import annotations

import re
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from aam_core.io import ArchiveError, read_archive_info, read_table
from aam_core.io.archive import (
    TABLE_MEMBER,
    TABLE_TYPES,
    _copy_limited,
    extract_member,
    read_member,
)

FEATURES = ["ACGT", "CCGGA", "TTTAN"]
SAMPLES = ["s1", "s2", "s3", "s4"]
COUNTS = [[5, 0, 1], [0, 2, 0], [12, 3, 0], [0, 7, 7]]
MiB = 1024**2


def _patch_declared_size(path: Path, member: str, size: int) -> None:
    """Make the local and central headers of ``member`` claim ``size`` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    while central != -1:
        n_name = struct.unpack_from("<H", data, central + 28)[0]
        if data[central + 46 : central + 46 + n_name] == member.encode():
            struct.pack_into("<I", data, central + 24, size)
            local = struct.unpack_from("<I", data, central + 42)[0]
            struct.pack_into("<I", data, local + 22, size)
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


def test_qza_round_trip(hdf5_table, json_table, make_qza) -> None:
    direct = read_table(hdf5_table(COUNTS, FEATURES, SAMPLES))
    for payload in (
        hdf5_table(COUNTS, FEATURES, SAMPLES).read_bytes(),
        json_table(COUNTS, FEATURES, SAMPLES).read_bytes(),  # BIOMV100 archives hold JSON
    ):
        path = make_qza("FeatureTable[Frequency]", {TABLE_MEMBER: payload}, name="t.qza")
        table = read_table(path, name="study.qza")
        assert table.sample_ids == direct.sample_ids == tuple(SAMPLES)
        assert table.feature_ids == direct.feature_ids == tuple(FEATURES)
        np.testing.assert_array_equal(table.counts.toarray(), COUNTS)
        assert table.source == "study.qza"


def test_archive_info(make_qza, qza_uuid: str) -> None:
    info = read_archive_info(make_qza("Phylogeny[Rooted]", {"data/tree.nwk": b"(a:1,b:1);"}))
    assert (info.root, info.semantic_type, info.format) == (
        qza_uuid,
        "Phylogeny[Rooted]",
        "SomeDirFmt",
    )


def test_member_is_extracted_to_a_temporary_file_that_is_removed(make_qza) -> None:
    path = make_qza("FeatureTable[Frequency]", {TABLE_MEMBER: b"payload"})
    with extract_member(path, TABLE_MEMBER, expected=TABLE_TYPES) as member:
        assert member.read_bytes() == b"payload"
        assert member.name == "feature-table.biom"
    assert not member.exists()
    assert read_member(path, TABLE_MEMBER, expected=TABLE_TYPES) == b"payload"


@pytest.mark.parametrize(
    "member", ["../../etc/passwd", "/etc/passwd", "C:/Windows/evil.dll", "a/../../b", "a\\..\\b"]
)
def test_path_traversal_is_refused(make_qza, member: str) -> None:
    path = make_qza("FeatureTable[Frequency]", {TABLE_MEMBER: b"x", "!" + member: b"root"})
    with pytest.raises(ArchiveError) as info:
        read_table(path, name="upload.qza")
    assert str(info.value) == (
        f"upload.qza: unsafe member name {member!r} (absolute paths and '..' are not allowed); "
        "refusing the archive"
    )


def test_declared_total_over_the_limit(make_qza) -> None:
    payload = np.random.default_rng(0).bytes(2 * MiB)  # incompressible: an honest large member
    path = make_qza("FeatureTable[Frequency]", {TABLE_MEMBER: payload})
    total = sum(i.file_size for i in zipfile.ZipFile(path).infolist())
    assert total == 2 * MiB + 39 + 92  # plus VERSION and metadata.yaml
    with pytest.raises(ArchiveError) as info:
        read_table(path, max_archive_bytes=MiB)
    assert str(info.value) == (
        f"x.qza: the archive declares 2.0 MiB ({total} bytes) of uncompressed content, over the "
        "1.0 MiB limit; refusing a likely zip bomb"
    )
    assert read_table.__kwdefaults__["max_archive_bytes"] == 4 * 1024**3


def test_absurd_compression_ratio(make_qza, qza_uuid: str) -> None:
    path = make_qza("FeatureTable[Frequency]", {TABLE_MEMBER: bytes(8 * MiB)})
    info = zipfile.ZipFile(path).getinfo(f"{qza_uuid}/{TABLE_MEMBER}")
    ratio = info.file_size / info.compress_size
    assert ratio > 200
    with pytest.raises(ArchiveError) as err:
        read_table(path)
    assert str(err.value) == (
        f"x.qza: member '{qza_uuid}/{TABLE_MEMBER}' claims a compression ratio of {ratio:.0f}:1 "
        "(over 200:1); refusing a likely zip bomb"
    )


def test_bomb_with_a_lying_header_stops_while_inflating(make_qza, qza_uuid: str) -> None:
    # 64 MiB of zeros (64 KiB deflated) whose headers claim 1000 bytes: the declared total
    # and the ratio look harmless, so only counting the inflated bytes can catch it.
    member = f"{qza_uuid}/{TABLE_MEMBER}"
    path = make_qza("FeatureTable[Frequency]", {TABLE_MEMBER: bytes(64 * MiB)})
    _patch_declared_size(path, member, 1000)
    assert zipfile.ZipFile(path).getinfo(member).file_size == 1000
    tracemalloc.start()
    try:
        with pytest.raises(ArchiveError) as info:
            read_table(path, max_archive_bytes=64 * MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value) == (
        f"x.qza: member '{member}' decompresses to more than the 1000 bytes its header "
        "declares; refusing a likely zip bomb"
    )
    assert peak < 8 * MiB  # stopped after the first chunk, never held the 64 MiB


def test_limit_is_enforced_while_inflating(make_qza, qza_uuid: str) -> None:
    # The public readers refuse a declared size over the limit before inflating anything;
    # the copy loop enforces the limit again on the bytes it actually sees.
    payload = np.random.default_rng(1).bytes(5 * MiB)
    path = make_qza("FeatureTable[Frequency]", {TABLE_MEMBER: payload})
    seen: list[bytes] = []
    with zipfile.ZipFile(path) as zf, pytest.raises(ArchiveError) as info:
        _copy_limited(
            zf,
            zf.getinfo(f"{qza_uuid}/{TABLE_MEMBER}"),
            seen.append,
            file="x.qza",
            max_bytes=2 * MiB,
        )
    assert str(info.value) == (
        f"x.qza: member '{qza_uuid}/{TABLE_MEMBER}' decompresses to more than the 2.0 MiB "
        "limit; refusing a likely zip bomb"
    )
    assert sum(len(c) for c in seen) == 2 * MiB  # nothing past the limit was handed on


def test_member_shorter_than_declared(make_qza, qza_uuid: str) -> None:
    member = f"{qza_uuid}/{TABLE_MEMBER}"
    path = make_qza("FeatureTable[Frequency]", {TABLE_MEMBER: b"x" * 1000})
    _patch_declared_size(path, member, 5000)
    with pytest.raises(ArchiveError) as info:
        read_table(path)
    assert str(info.value) == (
        f"x.qza: member '{member}' holds 1000 bytes but its header declares 5000; "
        "the archive is corrupt"
    )


def test_corrupt_member_data(make_qza, qza_uuid: str) -> None:
    path = make_qza("FeatureTable[Frequency]", {TABLE_MEMBER: b"ACGT" * 5000})
    data = bytearray(path.read_bytes())
    zinfo = zipfile.ZipFile(path).getinfo(f"{qza_uuid}/{TABLE_MEMBER}")
    start = zinfo.header_offset + 30 + len(zinfo.filename)  # the deflate stream (no extra)
    data[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(
        ArchiveError,
        match=re.escape(
            f"x.qza: member '{qza_uuid}/{TABLE_MEMBER}' is corrupt or encrypted (Error -3 while "
            "decompressing data: invalid"
        ),
    ):
        read_table(path)


def test_not_a_zip(tmp_path: Path, make_qza) -> None:
    fake = tmp_path / "fake.qza"
    fake.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(ArchiveError) as info:
        read_table(fake)
    assert str(info.value) == "fake.qza: not a valid zip archive (File is not a zip file)"
    good = make_qza("FeatureTable[Frequency]", {TABLE_MEMBER: b"x"})
    cut = tmp_path / "cut.qza"
    cut.write_bytes(good.read_bytes()[:-30])  # the central directory is gone
    with pytest.raises(ArchiveError) as info:
        read_table(cut)
    assert str(info.value) == "cut.qza: not a valid zip archive (File is not a zip file)"


def test_missing_metadata_yaml(make_qza) -> None:
    path = make_qza(None, {TABLE_MEMBER: b"x", "provenance/artifacts/u/metadata.yaml": b""})
    with pytest.raises(ArchiveError) as info:
        read_table(path)
    assert str(info.value) == "x.qza: not a QIIME 2 archive: no <uuid>/metadata.yaml member"


def test_metadata_yaml_without_a_type(make_qza, qza_uuid: str) -> None:
    path = make_qza(None, {TABLE_MEMBER: b"x", "metadata.yaml": b"uuid: 1\nformat: X\n"})
    with pytest.raises(ArchiveError) as info:
        read_table(path)
    assert str(info.value) == f"x.qza: '{qza_uuid}/metadata.yaml' has no semantic 'type'"
    path = make_qza(None, {TABLE_MEMBER: b"x", "metadata.yaml": b"type: [unclosed\n"})
    with pytest.raises(
        ArchiveError, match=re.escape(f"x.qza: '{qza_uuid}/metadata.yaml' is not valid YAML (")
    ):
        read_table(path)


@pytest.mark.parametrize(
    ("found", "message"),
    [
        (
            "Phylogeny[Unrooted]",
            "t.qza: expected a FeatureTable[Frequency] archive, found Phylogeny[Unrooted]",
        ),
        (
            "FeatureTable[RelativeFrequency]",
            "t.qza: expected a FeatureTable[Frequency] archive, found "
            "FeatureTable[RelativeFrequency]; counts must be reads, not relative frequencies",
        ),
    ],
)
def test_wrong_semantic_type(make_qza, found: str, message: str) -> None:
    path = make_qza(found, {TABLE_MEMBER: b"x", "data/tree.nwk": b"(a:1,b:1);"})
    with pytest.raises(ArchiveError) as info:
        read_table(path, name="t.qza")
    assert str(info.value) == message


def test_missing_member(make_qza) -> None:
    path = make_qza("FeatureTable[Frequency]", {"data/other.biom": b"x"})
    with pytest.raises(ArchiveError) as info:
        read_table(path)
    assert str(info.value) == (
        "x.qza: the FeatureTable[Frequency] archive has no data/feature-table.biom member"
    )


def test_only_stored_and_deflated_members_are_read(make_qza, qza_uuid: str) -> None:
    # zipfile inflates bzip2 and lzma in one unbounded step, so they are refused outright.
    path = make_qza(
        "FeatureTable[Frequency]", {TABLE_MEMBER: b"x" * 100}, compression=zipfile.ZIP_BZIP2
    )
    with pytest.raises(ArchiveError) as info:
        read_table(path)
    assert str(info.value) == (
        f"x.qza: member '{qza_uuid}/metadata.yaml' uses zip compression method 12; only stored "
        "and deflated members are read (QIIME 2 writes deflate)"
    )
