"""The installed ``aam`` script and ``python -m aam_core.cli`` in real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

COMMANDS = ("pretrain", "train", "predict", "evaluate", "baseline", "summary", "demo")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_console_script_lists_the_commands() -> None:
    script = Path(sys.executable).with_name("aam")
    assert script.exists(), "reinstall the project (pip install -e .) to get the aam script"
    result = _run(str(script), "--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout


def test_module_reports_a_user_error_in_one_line(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"\x00" * 64)
    table, out = str(tmp_path / "t.biom"), str(tmp_path / "p.tsv")
    result = _run(
        sys.executable, "-m", "aam_core.cli", "predict", "--checkpoint", str(model),
        "--table", table, "--out", out,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {model}: not a readable checkpoint")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
