"""The one family of errors a user can fix: a file, a setting, a column, a checkpoint.

Every user-facing error derives from :class:`UserError`. It carries the message (a complete
sentence naming the offending values), and where known the ``field`` of the request or run
configuration (``config.lr``, ``target.column``, ``dataset_id``) and the ``file`` it is about.
Each edge turns it into its own form: the API a 422 problem whose ``errors[0].loc`` is the
field, the worker a failed job marked as the user's error, the command-line tool one
``error:`` line and exit status 2. Anything else that escapes is a bug.
"""

from __future__ import annotations


class UserError(ValueError):
    """An input the user must fix. ``str(error)`` is the sentence to show (prefixed with the
    file's name when there is one); ``field`` names the setting or request field."""

    problem = "invalid-input"  # the type of the API's problem document (``/problems/...``)

    def __init__(self, message: str, *, field: str | None = None, file: str | None = None) -> None:
        self.message = message
        self.field = field
        self.file = file
        super().__init__(f"{file}: {message}" if file else message)

    def located(self) -> str:
        """The sentence with the field in front (``config.lr: must be > 0``), for readers that
        do not see the field separately."""
        return f"{self.field}: {self}" if self.field else str(self)


class ConfigError(UserError):
    """A setting breaks a rule; the message names the setting and the rule."""

    problem = "invalid-config"
