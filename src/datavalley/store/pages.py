"""Cursor pagination shared by every list: an opaque cursor that encodes the last ID returned."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # the SDK imports Page; it must not pay for SQLAlchemy
    from sqlalchemy import Select
    from sqlalchemy.orm import InstrumentedAttribute, Session

from datavalley.errors import InvalidInput

T = TypeVar("T")
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the cursor for the next (None at the end)."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Raise :class:`InvalidInput` for a cursor this server did not produce."""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cursor {cursor!r} is not a cursor this server issued", field="cursor") from exc


def paginate(
    session: Session,
    stmt: Select[Any],
    id_column: InstrumentedAttribute[str],
    cursor: str | None,
    limit: int,
    convert: Callable[[Any], T],
) -> Page[T]:
    """Run ``stmt`` ordered by ``id_column`` from after ``cursor``, at most ``limit`` rows."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, got {limit}", field="limit")
    if cursor:
        stmt = stmt.where(id_column > decode_cursor(cursor))
    rows = list(session.execute(stmt.order_by(id_column).limit(limit + 1)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    items = [convert(r) for r in rows]
    next_cursor = encode_cursor(getattr(rows[-1], id_column.key)) if more and rows else None
    return Page(items, next_cursor)
