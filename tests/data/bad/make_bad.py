"""Write the bad-input corpus (``tests/data/bad/``) and the io fixtures (``tests/data/io_*``).

Deterministic: run ``python tests/data/bad/make_bad.py`` from the repository root and the
files come out byte for byte the same (fixed dates, fixed UUIDs). ``zip_bomb.qza`` takes about
a minute to build because it really holds 4.5 GiB of zeros (bzip2 squeezes them into ~4 KB).

Each file's expected error class and message are pinned in ``tests/io/test_corpus.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
import zipfile
from pathlib import Path

import biom
import h5py
import numpy as np

BAD = Path(__file__).resolve().parent
DATA = BAD.parent
UUID = "3f1c0a5e-6d7b-4c2a-9e8f-1b2c3d4e5f60"
WHEN = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
ZIP_DATE = (2024, 1, 1, 0, 0, 0)

# io_good_table.biom: 4 samples x 5 ASVs (DNA IDs of 12-16 bp, one with an N).
GOOD_FEATURES = [
    "ACGTACGTACGT",
    "TTGACCATGGCAA",
    "GGGCCCAAATTTG",
    "CATGNCATGCATGCA",
    "AAACCCGGGTTTACGT",
]
GOOD_SAMPLES = ["S1", "S2", "S3", "S4"]
GOOD_COUNTS = np.array(  # samples x features
    [[10, 0, 5, 0, 1], [0, 3, 0, 7, 0], [2, 2, 2, 2, 2], [1, 0, 0, 0, 20]]
)


def write_hdf5(table: biom.Table, path: Path) -> None:
    with h5py.File(path, "w", track_order=False) as h5:
        table.to_hdf5(h5, "make_bad.py", creation_date=WHEN)


def write_json(doc: dict[str, object], path: Path) -> None:
    path.write_text(json.dumps(doc, indent=1) + "\n")


def json_table(
    shape: list[int], rows: list[str], columns: list[str], data: list[list[float]]
) -> dict[str, object]:
    return {
        "id": None,
        "format": "Biological Observation Matrix 1.0.0",
        "format_url": "http://biom-format.org",
        "type": "OTU table",
        "generated_by": "make_bad.py",
        "date": "2024-01-01T00:00:00",
        "matrix_type": "sparse",
        "matrix_element_type": "float",
        "shape": shape,
        "rows": [{"id": r, "metadata": None} for r in rows],
        "columns": [{"id": c, "metadata": None} for c in columns],
        "data": data,
    }


def qza_header(semantic_type: str) -> list[tuple[str, bytes]]:
    meta = f"uuid: {UUID}\ntype: {semantic_type}\nformat: BIOMV210DirFmt\n".encode()
    return [
        (f"{UUID}/VERSION", b"QIIME 2\narchive: 5\nframework: 2024.2.0\n"),
        (f"{UUID}/metadata.yaml", meta),
    ]


def qza_members(semantic_type: str, member: str, payload: bytes) -> list[tuple[str, bytes]]:
    return [*qza_header(semantic_type), (f"{UUID}/{member}", payload)]


def write_zip(path: Path, members: list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, payload in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=ZIP_DATE), payload, zipfile.ZIP_DEFLATED)


def write_zeros_member(zf: zipfile.ZipFile, name: str, n_bytes: int) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_BZIP2
    chunk = bytes(16 * 1024**2)
    with zf.open(info, "w", force_zip64=n_bytes >= 2**32) as dst:
        for _ in range(n_bytes // len(chunk)):
            dst.write(chunk)
        dst.write(bytes(n_bytes % len(chunk)))


def patch_declared_size(path: Path, member: str, size: int) -> None:
    """Make the local and central headers of ``member`` claim ``size`` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    central = data.find(b"PK\x01\x02")  # the first central directory entry
    while central != -1:
        n_name = struct.unpack_from("<H", data, central + 28)[0]
        if bytes(data[central + 46 : central + 46 + n_name]) == name:
            struct.pack_into("<I", data, central + 24, size)
            local = struct.unpack_from("<I", data, central + 42)[0]
            struct.pack_into("<I", data, local + 22, size)
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


def main() -> None:
    good = biom.Table(GOOD_COUNTS.T, GOOD_FEATURES, GOOD_SAMPLES)
    write_hdf5(good, DATA / "io_good_table.biom")
    good_bytes = (DATA / "io_good_table.biom").read_bytes()
    (BAD / "truncated.biom").write_bytes(good_bytes[: len(good_bytes) // 2])

    hashes = [hashlib.md5(s.encode()).hexdigest() for s in GOOD_FEATURES]
    write_hdf5(biom.Table(GOOD_COUNTS.T, hashes, GOOD_SAMPLES), BAD / "non_dna_ids.biom")
    (DATA / "io_hash_sequences.fasta").write_text(
        "".join(f">{h}\n{s}\n" for h, s in zip(hashes, GOOD_FEATURES, strict=True))
    )

    rows, cols = GOOD_FEATURES[:3], GOOD_SAMPLES  # 3 x 4 declared, but 5 columns listed
    doc = json_table([3, 4], rows, [*cols, "S5"], [[0, 0, 4.0], [1, 4, 2.0], [2, 1, 9.0]])
    write_json(doc, BAD / "wrong_shape.json.biom")
    data = [[0, 0, 4.0], [1, 1, -2.0], [2, 2, 9.0], [2, 3, -1.0]]
    write_json(json_table([3, 4], rows, cols, data), BAD / "negative_counts.json.biom")
    data = [[0, 0, 0.25], [1, 1, 3.0], [2, 2, 0.5]]
    write_json(json_table([3, 4], rows, cols, data), BAD / "fractional_counts.json.biom")
    doc = json_table([3, 4], rows, ["S1", "S2", "S1", "S3"], [[0, 0, 1.0]])
    write_json(doc, BAD / "duplicate_samples.json.biom")
    # 1e20 reads: past int64 once summed (issue 15); a sample ID with a tab breaks TSV rows
    data = [[0, 0, 4.0], [1, 1, 1e20], [2, 2, 9.0]]
    write_json(json_table([3, 4], rows, cols, data), BAD / "huge_count.json.biom")
    doc = json_table([3, 4], rows, ["S1", "S\t2", "S3", "S4"], [[0, 0, 1.0], [1, 1, 2.0]])
    write_json(doc, BAD / "tab_in_sample_id.json.biom")

    f = GOOD_FEATURES
    (DATA / "io_good_tree.nwk").write_text(
        f"(({f[0]}:0.1,{f[1]}:0.2)n1:0.05,(({f[2]}:0.1,{f[3]}:0.3)n3:0.1,"
        f"({f[4]}:0.2,EXTRA:0.4)n4:0.1)n2:0.05)root;\n"
    )
    (BAD / "missing_asvs.nwk").write_text(
        f"(({f[0]}:0.1,{f[1]}:0.2)n1:0.05,({f[2]}:0.1,OTHER:0.3)n2:0.05)root;\n"
    )
    (BAD / "no_lengths.nwk").write_text(f"(({f[0]}:0.1,{f[1]})n1,({f[2]}:0.1,{f[3]})n2:0.2);\n")
    (BAD / "unrooted.nwk").write_text(f"({f[0]}:0.1,{f[1]}:0.2,{f[2]}:0.3);\n")

    (DATA / "io_good_metadata.tsv").write_text(
        "#SampleID\tage\tsite\tbatch\n"
        "#q2:types\tnumeric\tcategorical\tcategorical\n"
        "# a comment line\n"
        "S1\t34.5\tgut\t1\n"
        "S2\t41\tskin\t2\n"
        "S3\tNA\tgut\t1\n"
        "S4\t29\tnot collected\t2\n"
        "S9\t50\toral\t3\n"
    )
    (BAD / "duplicate_ids.tsv").write_text(
        "sample-id\tage\nS1\t30\nS2\t31\nS1\t32\nS3\t33\nS2\t34\n"
    )
    (BAD / "bad_id_header.tsv").write_text("subject\tage\nS1\t30\n")
    (BAD / "non_dna.fasta").write_text(">a1\nACGTN\n>a2\nACGU\n>a3\nAC-GT\n")

    biom_bytes = good_bytes
    # A valid table archive plus a member that would land outside any extraction directory.
    write_zip(
        BAD / "path_traversal.qza",
        [
            *qza_members("FeatureTable[Frequency]", "data/feature-table.biom", biom_bytes),
            ("../../etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
        ],
    )
    write_zip(
        BAD / "wrong_type.qza",
        qza_members("FeatureTable[RelativeFrequency]", "data/feature-table.biom", biom_bytes),
    )

    # Honest headers: 4.5 GiB declared and really held (rejected by the declared total).
    bomb = BAD / "zip_bomb.qza"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_BZIP2, compresslevel=9) as zf:
        for name, payload in qza_header("FeatureTable[Frequency]"):
            zf.writestr(zipfile.ZipInfo(name, date_time=ZIP_DATE), payload)
        write_zeros_member(zf, f"{UUID}/data/feature-table.biom", 9 * 2**29)
    # Lying headers: 32 MiB of deflated zeros that claim to be 1 KiB (caught while inflating).
    liar = BAD / "zip_bomb_lying.qza"
    member = f"{UUID}/data/feature-table.biom"
    members = qza_members("FeatureTable[Frequency]", "data/feature-table.biom", bytes(2**25))
    write_zip(liar, members)
    patch_declared_size(liar, member, 1024)


if __name__ == "__main__":
    main()
