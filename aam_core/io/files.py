"""Writing run files: atomically, and as strict JSON.

Run outputs are read while they are written (the API polls a running job's files, a resumed run
reads ``last.pt``), and a crash or a full disk must not leave half a file under the real name.
JSON has no NaN or infinity (``json`` would write the invalid tokens ``NaN`` and ``Infinity``),
and a metric is NaN whenever it is undefined (R² of a constant target), so those become null.
"""

from __future__ import annotations

import errno
import json
import math
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for lack of space (no space left, or over quota)."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE


@contextmanager
def atomic_write(
    path: str | Path, mode: Literal["w", "wb"] = "w", *, fsync: bool = False
) -> Iterator[IO[Any]]:
    """A handle on a temporary file beside ``path`` (text modes write UTF-8) that replaces
    ``path`` when the block ends; an error in the block removes the temporary file and keeps
    the old ``path``.

    The temporary file sits in the same directory so that ``os.replace`` is a rename within
    one filesystem, and it is created like any new file (permissions from the umask, unlike
    ``mkstemp``'s 0600). ``fsync`` puts the bytes on disk before the rename; without it a power
    loss soon after may leave an empty file under ``path`` on some filesystems. Use it for
    files that are expensive to lose (checkpoints), not for logs rewritten every epoch.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        # "x": never reuse a file another writer has just created under the same name
        with open(temp, mode.replace("w", "x"), encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values from numpy scalars/arrays, paths, tuples and sets; NaN and ±inf become
    ``None``."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def json_text(obj: Any, *, indent: int | None = None) -> str:
    """Strict JSON of ``obj`` after :func:`to_jsonable`; TypeError for other objects."""
    return json.dumps(to_jsonable(obj), allow_nan=False, indent=indent)


def write_json(path: str | Path, obj: Any) -> None:
    """``obj`` as indented JSON, written atomically."""
    with atomic_write(path) as fh:
        fh.write(json_text(obj, indent=2) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line. The whole file is replaced, never appended to, so that a
    run's metrics log always matches its last checkpoint, also after a crash and a resume."""
    with atomic_write(path) as fh:
        for record in records:
            fh.write(json_text(record) + "\n")
