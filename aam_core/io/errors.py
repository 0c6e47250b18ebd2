"""Exception hierarchy for user-supplied inputs.

Every error is raised at the boundary, with a message that names the file and the offending
values (a few of them, with a count of the rest), so that the command-line tool can print it
as one line and the API can return it as the ``detail`` of a 422 response.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from aam_core.errors import UserError


class InputError(UserError):
    """A user-supplied input is unusable. ``str(error)`` is a complete user-facing sentence."""


class UnreadableFileError(InputError):
    """The file cannot be parsed as the expected format."""


class EmptyInputError(InputError):
    """The file parses but holds no samples, features, rows or tips."""


class CountsError(InputError):
    """Counts that are negative, fractional or otherwise not reads."""


class DuplicateIdError(InputError):
    """The same sample or feature ID appears twice."""


class SequenceError(InputError):
    """Feature IDs that are not DNA, missing representative sequences, or sequences too long."""


class TreeError(InputError):
    """A tree that is not rooted, lacks branch lengths, or does not cover the table's ASVs."""


class MetadataError(InputError):
    """Sample metadata that cannot be used (duplicate IDs, no ID column, no overlap, ...)."""


class ArchiveError(InputError):
    """A QIIME 2 archive that is unsafe (path traversal, zip bomb) or of the wrong type."""


class DistanceMatrixError(InputError):
    """A precomputed distance matrix that does not match the table's samples."""


class TargetError(MetadataError):
    """A target or group column that cannot be used for the requested task."""


def preview(values: Iterable[object], limit: int = 5, *, quote: bool = True) -> str:
    """Name a few offending values and count the rest: ``'a', 'b', 'c' and 7 more``
    (``quote=False`` for line numbers and positions: ``3, 4 and 2 more``)."""
    items: Sequence[object] = list(values)
    shown = ", ".join(repr(str(v)) if quote else str(v) for v in items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """The first line of a library's exception message, cut to ``limit`` characters, for use
    inside a user-facing sentence (never a traceback)."""
    text = " ".join(str(exc).split("\n", 1)[0].split())
    return (text or type(exc).__name__)[:limit]
