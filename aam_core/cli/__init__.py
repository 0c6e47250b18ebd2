"""The ``aam`` command-line tool (``aam_core.cli:main``)."""

from aam_core.cli.commands import app, main

__all__ = ["app", "main"]
