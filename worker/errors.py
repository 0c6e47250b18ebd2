"""How a job fails: the ``{"type", "detail"}`` a user reads on the job, and which failures are
the user's to fix. No job failure is retried: an input error would fail the same way again, and
a lost worker is the reaper's business, not the pipeline's."""

from __future__ import annotations

import signal

# aam_core's user-facing errors (by class name: the child process reports the name). The
# message of each is a complete sentence naming the file, field or value to fix.
USER_ERRORS = frozenset(
    {
        "InputError",
        "UnreadableFileError",
        "EmptyInputError",
        "CountsError",
        "DuplicateIdError",
        "SequenceError",
        "TreeError",
        "MetadataError",
        "ArchiveError",
        "DistanceMatrixError",
        "TargetError",
        "ConfigError",
        "CheckpointError",
        "PredictionError",
    }
)


class JobFailure(Exception):
    """A job that cannot run, with the error its user reads."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail

    def as_error(self) -> dict[str, str]:
        return {"type": self.kind, "detail": self.detail}


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
