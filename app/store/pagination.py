"""Keyset pagination, newest first, shared by every list function.

A cursor is opaque to clients: urlsafe base64 of ``<created_at ISO 8601>|<id>`` of the last row
of the previous page. Rows are ordered by (created_at, id) descending, so a row created while a
client pages never shifts the pages it has not read yet.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

MAX_LIMIT = 500
DEFAULT_LIMIT = 50


class Paged(Protocol):
    id: Any
    created_at: Any


T = TypeVar("T", bound=Paged)


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor carries; ``ValueError("invalid cursor")`` otherwise."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
        stamp, row_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
    except (ValueError, UnicodeError, binascii.Error):
        raise ValueError("invalid cursor") from None
    if created_at.tzinfo is None or not row_id:
        raise ValueError("invalid cursor")
    return created_at, row_id


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def paginate(
    session: Session,
    statement: Select[T],
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[str],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[T], str | None]:
    """One page of ``statement`` (already filtered) and the cursor of the next, if any."""
    check_limit(limit)
    if cursor is not None:
        after_time, after_id = decode_cursor(cursor)
        statement = statement.where(
            or_(created_at < after_time, and_(created_at == after_time, row_id < after_id))
        )
    statement = statement.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)
    rows: Sequence[T] = session.scalars(statement).all()
    items = list(rows[:limit])
    if len(rows) <= limit:
        return items, None
    last = items[-1]
    return items, encode_cursor(last.created_at, last.id)
