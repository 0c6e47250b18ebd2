"""The whole bad-input corpus (tests/data/bad) posted to a live app: every file answers its
status and pinned detail (naming the client's file, never a server path), and the stored
datasets, models, jobs and blobs are exactly what they were before."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.contracts import JobKind
from app.main import create_app
from app.store import create_job, list_jobs
from tests.api.conftest import (
    ADMIN,
    ALICE,
    MakeSettings,
    RecordingDispatcher,
    StudyFiles,
    services_of,
    stored_blobs,
    upload_leftovers,
)
from tests.api.models import tiny_checkpoint

DATA = Path(__file__).resolve().parents[1] / "data"
BAD = DATA / "bad"
LIMIT = 256 * 1024  # every corpus file and the generated study fit; the oversized upload not
UUID = "3f1c0a5e-6d7b-4c2a-9e8f-1b2c3d4e5f60"  # make_bad.py's archives
MARKER = "aam_pickle_exploit_ran"  # what pickle_exploit.pt would write if it were unpickled

# role -> a corpus file name, or "study:<role>" for the generated study's file of that role
DATASET_CASES: list[tuple[str, dict[str, str], int, str]] = [
    (
        "truncated HDF5",
        {"table": "truncated.biom"},
        422,
        "truncated.biom: cannot read as BIOM 2.1 (HDF5): truncated file (was the upload cut "
        "short?)",
    ),
    (
        "JSON BIOM with the wrong shape",
        {"table": "wrong_shape.json.biom", "tree": "study:tree"},
        422,
        "wrong_shape.json.biom: declared shape [3, 4] does not match the data: 3 rows "
        "(features) and 5 columns (samples)",
    ),
    (
        "negative counts",
        {"table": "negative_counts.json.biom"},
        422,
        "negative_counts.json.biom: 2 counts are negative, in 2 samples ('S2', 'S4'); counts "
        "must be whole numbers of reads from 0 to 10^12",
    ),
    (
        "fractional counts",
        {"table": "fractional_counts.json.biom"},
        422,
        "fractional_counts.json.biom: 2 counts are non-integer, in 2 samples ('S1', 'S3'); "
        "counts must be whole numbers of reads from 0 to 10^12, not relative abundances",
    ),
    (
        "duplicate samples",
        {"table": "duplicate_samples.json.biom"},
        422,
        "duplicate_samples.json.biom: 1 sample IDs appear more than once: 'S1'",
    ),
    (
        "non-DNA feature IDs without sequences",
        {"table": "non_dna_ids.biom"},
        422,
        "non_dna_ids.biom: 5 of 5 feature IDs are not DNA sequences (e.g. "
        "'31e91beccf6059ff57c696827c0c6a4b', '18db298ebe6c752a5f9eff0944e2eaf0', "
        "'e014dd4538a0a9ff6fe82147f5e29e56', '097dbe748cb6212d75184110af7a89c2', "
        "'c61ce686d8364137c09adcc81e0a48ba'); QIIME 2 tables use hashes as IDs: upload the "
        "representative sequences (FASTA or FeatureData[Sequence] .qza)",
    ),
    (
        "sequences that are not DNA",
        {"table": "non_dna_ids.biom", "sequences": "non_dna.fasta"},
        422,
        "non_dna.fasta: 2 of 3 sequences are not DNA (A/C/G/T or IUPAC codes): 'a2', 'a3'",
    ),
    (
        "tree without branch lengths",
        {"table": "study:table", "tree": "no_lengths.nwk", "metadata": "study:metadata"},
        422,
        "no_lengths.nwk: 3 of 6 branches have no length (e.g. 'n1', 'TTGACCATGGCAA', "
        "'CATGNCATGCATGCA'); UniFrac needs a length on every branch",
    ),
    (
        "unrooted tree",
        {"table": "study:table", "tree": "unrooted.nwk"},
        422,
        "unrooted.nwk: tree is not rooted: its root has 3 children; root it first "
        "(e.g. `qiime phylogeny midpoint-root`)",
    ),
    (
        "a count past int64 once summed",
        {"table": "huge_count.json.biom"},
        422,
        "huge_count.json.biom: 1 counts are above 10^12, in 1 samples ('S2'); counts must be "
        "whole numbers of reads from 0 to 10^12",
    ),
    (
        "a tab in a sample ID",
        {"table": "tab_in_sample_id.json.biom"},
        422,
        "tab_in_sample_id.json.biom: 1 sample IDs are empty or hold a control character (tab, "
        "newline, ...): 'S\\t2'; an ID must be printable text",
    ),
    (
        "metadata with duplicate IDs",
        {"table": "study:table", "tree": "study:tree", "metadata": "duplicate_ids.tsv"},
        422,
        "duplicate_ids.tsv: 2 sample IDs appear more than once: 'S1', 'S2'",
    ),
    (
        "metadata without a sample ID header",
        {"table": "study:table", "metadata": "bad_id_header.tsv"},
        422,
        "bad_id_header.tsv: the first column is 'subject', not a sample ID header; expected one "
        "of '#SampleID', '#Sample ID', 'sample-id', 'sample id', 'sampleid', 'sample_id', "
        "'sample_name', 'sample name', 'id', 'feature-id', 'feature id', 'featureid', '#OTUID', "
        "'#OTU ID' (any case)",
    ),
    (
        "wrong-type .qza as the table",
        {"table": "wrong_type.qza"},
        422,
        "wrong_type.qza: expected a FeatureTable[Frequency] archive, found "
        "FeatureTable[RelativeFrequency]; counts must be reads, not relative frequencies",
    ),
    (
        "a table .qza as the tree",
        {"table": "study:table", "tree": "wrong_type.qza"},
        422,
        "wrong_type.qza: expected a Phylogeny[Rooted] archive, found "
        "FeatureTable[RelativeFrequency]",
    ),
    (
        "zip bomb (honest headers)",
        {"table": "zip_bomb.qza"},
        422,
        "zip_bomb.qza: the archive declares 4.5 GiB (4831838343 bytes) of uncompressed content, "
        "over the 4.0 GiB limit; refusing a likely zip bomb",
    ),
    (
        "zip bomb (lying headers)",
        {"table": "zip_bomb_lying.qza"},
        422,
        f"zip_bomb_lying.qza: member '{UUID}/data/feature-table.biom' decompresses to more than "
        "the 1024 bytes its header declares; refusing a likely zip bomb",
    ),
    (
        "path-traversal .qza",
        {"table": "path_traversal.qza", "tree": "study:tree"},
        422,
        "path_traversal.qza: unsafe member name '../../etc/passwd' (absolute paths and '..' are "
        "not allowed); refusing the archive",
    ),
]

CHECKPOINT_CASES: list[tuple[str, str]] = [
    (
        "garbage.pt",
        "garbage.pt: not a readable checkpoint (truncated or corrupt file: not a PyTorch archive)",
    ),
    (
        "truncated.pt",
        "truncated.pt: not a readable checkpoint (truncated or corrupt file: [Errno 22] Invalid "
        "argument)",
    ),
    (
        "foreign.pt",
        "foreign.pt: not an AAM checkpoint (a PyTorch file without the 'aam-checkpoint' header; "
        "only checkpoints written by aam can be used)",
    ),
    (
        "pickle_exploit.pt",
        "pickle_exploit.pt: refused: the file holds Python objects that would run code when "
        "loaded (posix.system); AAM checkpoints hold only tensors and plain values",
    ),
]


@pytest.fixture
def corpus_client(
    make_settings: MakeSettings, dispatcher: RecordingDispatcher
) -> Iterator[TestClient]:
    app = create_app(make_settings(upload_limit_bytes=LIMIT), dispatcher=dispatcher)
    with TestClient(app) as client:
        yield client


def snapshot(client: TestClient) -> dict[str, Any]:
    """Everything stored: the API's listings, the jobs, and each blob's actual digest."""
    services = services_of(client)
    with services.sessions() as session:
        jobs, _ = list_jobs(session, None, limit=500)
        job_rows = [(j.id, j.state, j.dataset_id, j.model_id) for j in jobs]
    root = services.settings.artifacts_dir
    return {
        "datasets": client.get("/datasets?limit=500", headers=ADMIN).json(),
        "models": client.get("/models?limit=500", headers=ADMIN).json(),
        "jobs": job_rows,
        "blobs": {
            sha: hashlib.sha256((root / sha[:2] / sha[2:4] / sha).read_bytes()).hexdigest()
            for sha in stored_blobs(client)
        },
        "uploads": upload_leftovers(client),
    }


def seed(client: TestClient, study: StudyFiles, tmp_path: Path) -> None:
    """A dataset, a model and a queued job, so that "unchanged" has something to lose."""
    files = {
        role: (path.name, path.read_bytes())
        for role, path in (("table", study.table), ("tree", study.tree))
    }
    dataset = client.post("/datasets", headers=ALICE, files=files).json()
    checkpoint = tiny_checkpoint("regressor", tmp_path / "seed.pt")
    model = client.post(
        "/models", headers=ALICE, files={"checkpoint": ("seed.pt", checkpoint.read_bytes())}
    ).json()
    with services_of(client).sessions() as session:
        create_job(
            session,
            owner="alice",
            kind=JobKind.predict,
            name="seeded",
            spec={"kind": "predict", "dataset_id": dataset["id"], "model_id": model["id"]},
            dataset_id=dataset["id"],
            model_id=model["id"],
        )
        session.commit()


def resolve(files: dict[str, str], study: StudyFiles) -> dict[str, tuple[str, bytes]]:
    parts = {}
    for role, source in files.items():
        path = getattr(study, source.split(":")[1]) if source.startswith("study:") else BAD / source
        parts[role] = (path.name, path.read_bytes())
    return parts


def chunked_multipart(field: str, name: str, size: int) -> Iterator[bytes]:
    """A multipart body sent without Content-Length (chunked): the limit holds while streaming."""
    yield (
        f'--corpus\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for _ in range(size // 65536 + 1):
        yield bytes(65536)
    yield b"\r\n--corpus--\r\n"


def test_the_bad_corpus_changes_nothing(
    corpus_client: TestClient,
    api_study: StudyFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = corpus_client
    monkeypatch.chdir(tmp_path)  # where the pickle exploit would leave its marker
    seed(client, api_study, tmp_path)
    before = snapshot(client)
    assert (len(before["datasets"]["items"]), len(before["models"]["items"])) == (1, 1)
    assert len(before["jobs"]) == 1 and len(before["blobs"]) == 3

    expected: list[tuple[str, int, str]] = []
    answered: list[tuple[str, int, str]] = []

    def record(case: str, response: Any, status: int, detail: str, started: float) -> None:
        expected.append((case, status, detail))
        body = response.json()
        answered.append((case, response.status_code, body.get("detail", body)))
        assert response.headers["content-type"] == "application/problem+json", case
        assert time.perf_counter() - started < 5, case  # bombs are refused, never inflated
        assert str(tmp_path) not in response.text and "upload-" not in response.text, case

    for case, files, status, detail in DATASET_CASES:
        started = time.perf_counter()
        response = client.post("/datasets", headers=ALICE, files=resolve(files, api_study))
        record(case, response, status, detail, started)

    started = time.perf_counter()  # the client's path is cut to its last component
    evil = ("../../../etc/cron.d/evil.biom", (BAD / "truncated.biom").read_bytes())
    response = client.post("/datasets", headers=ALICE, files={"table": evil})
    record("client path in the file name", response, 422,
           "evil.biom: cannot read as BIOM 2.1 (HDF5): truncated file (was the upload cut "
           "short?)", started)  # fmt: skip

    too_large = (
        f"the upload is larger than the server's limit of {LIMIT:,} bytes (AAM_UPLOAD_LIMIT_BYTES)"
    )
    started = time.perf_counter()
    big = {"table": ("big.biom", bytes(LIMIT + 1))}
    response = client.post("/datasets", headers=ALICE, files=big)
    record("oversized upload (declared length)", response, 413, too_large, started)
    started = time.perf_counter()
    response = client.post(
        "/models",
        headers={**ALICE, "Content-Type": "multipart/form-data; boundary=corpus"},
        content=chunked_multipart("checkpoint", "big.pt", LIMIT),
    )
    record("oversized upload (chunked, no length)", response, 413, too_large, started)

    for name, detail in CHECKPOINT_CASES:
        started = time.perf_counter()
        checkpoint = {"checkpoint": (name, (BAD / name).read_bytes())}
        response = client.post("/models", headers=ALICE, files=checkpoint)
        record(name, response, 422, detail, started)

    assert answered == expected
    assert not (tmp_path / MARKER).exists() and not (Path.cwd() / MARKER).exists()
    assert snapshot(client) == before
    assert client.get("/health").json()["status"] == "ok"


def test_a_tree_missing_some_asvs_is_accepted_with_a_warning(
    corpus_client: TestClient,
) -> None:
    """Not an error (docs/api.md: the summary counts ``features_missing_from_tree``): pretraining
    refuses such a dataset at submission. Deleting it leaves storage as it was."""
    client = corpus_client
    before = snapshot(client)
    files = {
        "table": ("io_good_table.biom", (DATA / "io_good_table.biom").read_bytes()),
        "tree": ("missing_asvs.nwk", (BAD / "missing_asvs.nwk").read_bytes()),
    }
    response = client.post("/datasets", headers=ALICE, files=files)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["has_tree"], body["features_missing_from_tree"]) == (True, 2)
    assert body["warnings"] == [
        "2 of 5 table features are missing from the tree (e.g. 'CATGNCATGCATGCA', "
        "'AAACCCGGGTTTACGT'); UniFrac cannot use them"
    ]
    assert client.delete(f"/datasets/{body['id']}", headers=ALICE).status_code == 204
    assert snapshot(client) == before
