"""Fixtures of the command-line tests: a generated study written as real files, and runs of
``aam pretrain`` / ``aam train`` shared by several tests (training is the slow part)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from aam_core.cli import app
from aam_core.data.synthetic import SyntheticSpec, generate, write_study

# Fast settings shared by every run in these tests (the tiny preset on CPU).
FAST = ["--preset", "tiny", "--lr", "3e-3", "--rarefaction-depth", "2000", "--token-limit", "64"]


def aam(*args: object, code: int = 0) -> Result:
    """Run ``aam ARGS`` in-process; check the exit code (showing the output when it differs)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (
        f"exit {result.exit_code} != {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        + (f"\nexception: {result.exception!r}" if result.exception else "")
    )
    return result


@dataclass(frozen=True)
class Study:
    table: Path
    tree: Path
    metadata: Path
    frame: pd.DataFrame  # metadata: age, site, subject by sample ID


def _study(directory: Path, **spec: int) -> Study:
    study = generate(SyntheticSpec(**spec))
    paths = write_study(study, directory)
    return Study(paths["table"], paths["tree"], paths["metadata"], study.metadata)


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """Big enough for a model to learn age and site in a few seconds."""
    return _study(
        tmp_path_factory.mktemp("cli_study"), n_samples=120, n_asvs=120, asvs_per_sample=20, seed=2
    )


@pytest.fixture(scope="session")
def small_study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """For tests of the plumbing (config, events, stop and resume), not of learning."""
    return _study(
        tmp_path_factory.mktemp("cli_small"), n_samples=40, n_asvs=60, asvs_per_sample=12, seed=4
    )


@pytest.fixture(scope="session")
def encoder_run(study: Study, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "pretrain"
    aam("pretrain", "--table", study.table, "--tree", study.tree, "--metadata", study.metadata,
        "--group-column", "subject", "--out", out, *FAST, "--epochs", 4, "--quiet")  # fmt: skip
    return out


def read_split(run: Path) -> dict[str, list[str]]:
    frame = pd.read_csv(run / "split.tsv", sep="\t", dtype=str)
    return {
        s: frame.loc[frame["split"] == s, "sample_id"].tolist() for s in ("train", "validation")
    }
