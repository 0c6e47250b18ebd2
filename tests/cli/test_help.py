"""``aam <command> --help`` fits 80 columns with every option named in full."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from aam_core.cli import app

COMMAND: Any = typer.main.get_command(app)  # a group (typer's own copy of click)


@pytest.mark.parametrize("name", [None, *sorted(COMMAND.commands)])
def test_help_fits_80_columns_and_names_every_option(name: str | None) -> None:
    args = [name, "--help"] if name else ["--help"]
    result = CliRunner().invoke(app, args, terminal_width=80)
    assert result.exit_code == 0, result.output
    too_wide = [line for line in result.output.splitlines() if len(line) > 80]
    assert too_wide == []
    assert "…" not in result.output
    command = COMMAND.commands[name] if name else COMMAND
    flags = [flag for param in command.params for flag in param.opts + param.secondary_opts]
    assert [flag for flag in flags if flag not in result.output] == []
    if name in ("pretrain", "train"):
        assert "are also keys of a --config file" in " ".join(result.output.split())
