"""``python -m aam_core.cli``: the ``aam`` tool."""

from aam_core.cli.commands import main

main()
