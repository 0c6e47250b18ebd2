"""The rule for a training target: which metadata column can be learnt as which task.

One rule, stated once, read by the planner (from a dataset's summary: the API at submission,
the command-line tool and the worker before a run) and by data preparation (from the values
themselves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aam_core.io.errors import TargetError, preview

Task = Literal["regression", "classification"]
MAX_NUMERIC_CLASSES = 50  # an integer-coded column with at most this many values can be labels
FIELD = "target.column"


@dataclass(frozen=True)
class TargetSpec:
    column: str
    task: Task


def missing_column(column: str, names: Sequence[str], where: str, what: str) -> str:
    """The message for a column that ``where`` (``dataset 'ds_1'``) does not have."""
    if not names:
        return f"{where} has no metadata; {what} {column!r} needs a metadata file"
    return f"{column!r} is not a metadata column of {where} (columns: {preview(names, 8)})"


def check_target(
    target: TargetSpec,
    columns: Sequence[Mapping[str, Any]],
    n_samples: int,
    where: str,
) -> int | None:
    """Refuse a target column that cannot be learnt as ``target.task``; the number of classes
    a classification target has (None for regression).

    ``columns`` are the summary's metadata column entries (``name``, ``kind``, ``n_missing``;
    ``n_classes`` for categorical, ``n_distinct`` and ``integer`` for numeric columns) over
    ``n_samples`` samples; ``where`` names the dataset in messages."""
    by_name = {c["name"]: c for c in columns}
    column = by_name.get(target.column)
    if column is None:
        message = missing_column(target.column, list(by_name), where, "target column")
        raise TargetError(message, field=FIELD)
    name = repr(target.column)
    if int(column.get("n_missing", 0)) >= n_samples:
        raise TargetError(f"{name} has no value for any of the {n_samples} samples", field=FIELD)
    if target.task == "regression":
        if column["kind"] != "numeric":
            raise TargetError(
                f"{name} is categorical; regression needs a numeric column (use task "
                "'classification' for labels)",
                field=FIELD,
            )
        if int(column["n_distinct"]) < 2:
            raise TargetError(f"{name} has fewer than 2 distinct values", field=FIELD)
        return None
    if column["kind"] == "numeric":
        n_classes = int(column["n_distinct"])
        if not column["integer"] or n_classes > MAX_NUMERIC_CLASSES:
            raise TargetError(
                f"{name} is numeric with {n_classes} distinct values; classification needs "
                f"labels: a categorical column, or integer codes with at most "
                f"{MAX_NUMERIC_CLASSES} distinct values (use task 'regression' for a "
                "measurement)",
                field=FIELD,
            )
    else:
        n_classes = int(column.get("n_classes") or 0)
    if n_classes < 2:
        raise TargetError(
            f"{name} has {n_classes} class(es); classification needs at least 2", field=FIELD
        )
    return n_classes
