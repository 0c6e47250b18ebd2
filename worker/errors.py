"""How a job fails: the ``{"type", "detail"}`` a user reads on the job, and which failures are
the user's to fix. No job failure is retried: an input error would fail the same way again, and
a lost worker is the reaper's business, not the pipeline's."""

from __future__ import annotations

import signal
from typing import Any


class JobFailure(Exception):
    """A job that cannot run, with the error its user reads (and the field of the job's spec
    it is about, when a user error names one)."""

    def __init__(self, kind: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.field = field

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.kind, "detail": self.detail}
        if self.field is not None:
            error["field"] = self.field
        return error


def one_line(text: str) -> str:
    return " ".join(text.split())


def describe_exit(returncode: int | None) -> str:
    """``exit status 3`` or ``signal 9 (SIGKILL)``."""
    if returncode is None:
        return "no exit status"
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"
    return f"signal {-returncode} ({name})"


def child_died(returncode: int | None, last_output: str) -> JobFailure:
    """The training process ended without a result (killed, crashed, out of memory)."""
    hint = ""
    if returncode == -signal.SIGKILL:
        hint = (
            " A process killed this way is often out of memory: try a smaller batch_size or "
            "token_limit."
        )
    tail = f" Its last output: {one_line(last_output)[-500:]}" if last_output.strip() else ""
    return JobFailure(
        "TrainingProcessDied",
        f"the job's process ended with {describe_exit(returncode)} before it finished.{hint}{tail}",
    )
