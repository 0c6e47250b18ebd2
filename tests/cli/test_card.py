"""``aam card``: the model card of a checkpoint that ``aam train`` wrote, as Markdown or JSON,
printed or written to a file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from aam_core.checkpoint import load_checkpoint
from aam_core.model_card import card_markdown, model_card
from tests.cli.conftest import FAST, Study, aam, read_split


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def run(small_study: Study, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("card") / "age"
    aam("train", "--table", small_study.table, "--metadata", small_study.metadata,
        "--target", "age", "--task", "regression", "--out", out, *FAST, "--epochs", 1,
        "--seed", 4, "--validation-fraction", 0.25, "--group-column", "subject",
        "--no-baseline", "--quiet")  # fmt: skip
    return out


def test_card_as_json_and_markdown(run: Path, small_study: Study, tmp_path: Path) -> None:
    checkpoint = run / "checkpoints" / "best.pt"
    card = json.loads(aam("card", "--checkpoint", checkpoint, "--format", "json").stdout)
    assert card == model_card(load_checkpoint(checkpoint), checkpoint_sha256=sha256(checkpoint))
    assert card["data"]["sha256"] == {
        "table": sha256(small_study.table),
        "metadata": sha256(small_study.metadata),
    }  # the files given to aam train
    split = read_split(run)
    assert card["training"]["seed"] == 4
    assert card["training"]["split"]["validation_fraction"] == 0.25
    assert card["training"]["split"]["group_column"] == "subject"
    assert card["training"]["split"]["sha256"] == sha256(run / "split.tsv")
    assert card["data"]["samples"]["validation"] == len(split["validation"])
    assert card["metrics"]["model"] == load_checkpoint(checkpoint).metrics["best"]["validation"]
    assert card["metrics"]["baselines"]["random_forest"] is None  # --no-baseline
    assert card["metrics"]["baselines"]["constant"] is not None

    markdown = aam("card", "--checkpoint", checkpoint).stdout  # markdown by default
    assert markdown == card_markdown(card)
    assert "| seed | 4 |" in markdown
    mae = card["metrics"]["model"]["mae"], card["metrics"]["baselines"]["constant"]["mae"]
    assert f"| mae | {mae[0]:.4g} | {mae[1]:.4g} |" in markdown

    as_file = aam("card", "--checkpoint", checkpoint, "--out", tmp_path / "card.json")
    assert as_file.stdout == ""
    assert json.loads((tmp_path / "card.json").read_text()) == card  # json by the extension
    aam("card", "--model", checkpoint, "--out", tmp_path / "CARD.md")  # the old name
    assert (tmp_path / "CARD.md").read_text() == markdown


def test_a_file_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    result = aam("card", "--checkpoint", path, code=2)
    assert result.stderr.startswith(f"error: {path}: not a readable checkpoint")
