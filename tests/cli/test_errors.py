"""User errors: one ``error: ...`` line naming the file, exit status 2, no traceback unless
``aam --debug``."""

from __future__ import annotations

from pathlib import Path

import biom
import h5py
import numpy as np
import pytest

from aam_core.io import read_table
from tests.cli.conftest import Study, aam

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in stderr
    return lines[0]


def test_missing_table(tmp_path: Path) -> None:
    missing = tmp_path / "nope.biom"
    result = aam("pretrain", "--table", missing, "--out", tmp_path / "o", code=2)
    assert _one_error_line(result.stderr) == (
        f"error: {missing}: cannot open the file (No such file or directory)"
    )
    assert not (tmp_path / "o").exists()


def test_table_with_non_dna_ids(tmp_path: Path) -> None:
    table = BAD / "non_dna_ids.biom"
    result = aam("pretrain", "--table", table, "--out", tmp_path / "o", code=2)
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: {table}: 5 of 5 feature IDs are not DNA sequences (e.g. ")
    assert "upload the representative sequences" in line


@pytest.mark.parametrize(
    "content",
    [
        b"garbage",
        b"this is not a checkpoint\n" * 10,
        bytes(range(256)) * 4,
    ],
)
def test_garbage_checkpoint_for_predict(study: Study, tmp_path: Path, content: bytes) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(content)
    result = aam("predict", "--checkpoint", model, "--table", study.table,
                 "--out", tmp_path / "p.tsv", code=2)  # fmt: skip
    line = _one_error_line(result.stderr)
    assert line.startswith(f"error: {model}: not a readable checkpoint (truncated or corrupt file")
    assert not (tmp_path / "p.tsv").exists()


def test_debug_shows_the_traceback(study: Study, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"garbage")
    result = aam("--debug", "predict", "--checkpoint", model, "--table", study.table,
                 "--out", tmp_path / "p.tsv", code=2)  # fmt: skip
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "CheckpointError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"error: {model}: not a readable checkpoint")


def test_encoder_predicts_embeddings_only(encoder_run: Path, study: Study, tmp_path: Path) -> None:
    encoder = encoder_run / "checkpoints" / "best.pt"
    result = aam("predict", "--checkpoint", encoder, "--table", study.table,
                 "--out", tmp_path / "p.tsv", code=2)  # fmt: skip
    assert _one_error_line(result.stderr).startswith(
        "error: this model is a pretrained encoder: it predicts no target; ask for embeddings"
    )
    out = tmp_path / "embeddings.tsv"
    aam("predict", "--checkpoint", encoder, "--table", study.table, "--out", out, "--embeddings")
    header = out.read_text().splitlines()[0].split("\t")
    assert [c for c in header if c.startswith("embedding_")] == [
        f"embedding_{i}" for i in range(32)
    ]
    assert len(out.read_text().splitlines()) == 1 + len(study.frame)


def test_resume_without_a_run(small_study: Study, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = aam("pretrain", "--table", small_study.table, "--tree", small_study.tree,
                 "--out", out, "--resume", code=2)  # fmt: skip
    assert _one_error_line(result.stderr) == (
        f"error: --resume: {out}/checkpoints/last.pt does not exist: there is no run to continue"
    )


@pytest.mark.parametrize(
    ("column", "task", "message"),
    [
        ("height", "regression", "error: --target: 'height' is not a metadata column of the "
         "dataset (columns: 'age', 'site', 'subject')"),
        ("site", "regression", "error: --target: 'site' is categorical; regression needs a "
         "numeric"),
    ],
)  # fmt: skip
def test_unusable_target(
    small_study: Study, tmp_path: Path, column: str, task: str, message: str
) -> None:
    result = aam("train", "--table", small_study.table, "--metadata", small_study.metadata,
                 "--target", column, "--task", task, "--out", tmp_path / "o", code=2)  # fmt: skip
    assert message in _one_error_line(result.stderr)


def test_missing_required_option_is_a_usage_error(tmp_path: Path) -> None:
    result = aam("train", "--table", tmp_path / "t.biom", "--out", tmp_path / "o", code=2)
    assert "Missing option" in result.stderr


def test_a_sample_without_reads_is_refused_by_name(
    encoder_run: Path, study: Study, tmp_path: Path
) -> None:
    table = read_table(study.table)
    counts = np.vstack([table.counts.toarray(), np.zeros((1, table.n_features))])  # + no reads
    ids = [*table.sample_ids, "blank_well"]
    path = tmp_path / "with_blank.biom"
    with h5py.File(path, "w") as h5:
        biom.Table(counts.T, list(table.feature_ids), ids).to_hdf5(h5, "test")
    encoder = encoder_run / "checkpoints" / "best.pt"
    out = tmp_path / "embeddings.tsv"
    result = aam("predict", "--checkpoint", encoder, "--table", path, "--out", out, "--embeddings",
                 code=2)  # fmt: skip
    assert _one_error_line(result.stderr) == (
        "error: 1 samples have no reads ('blank_well'): nothing can be predicted from them; "
        "remove them from the table"
    )
    assert not out.exists()
