"""Keyset pagination (seed 001 §9-B: "active order paging, safe against duplicates").

Lists are ordered newest first by (time, id). A page of `limit` rows is read with
`limit + 1`; when the extra row exists, the cursor of the page's last row comes back as
`next_cursor`, and the next page is `WHERE (time, id) < (cursor time, cursor id)`. Unlike
OFFSET, a row inserted or removed meanwhile neither repeats nor skips a row, and every
page costs one index range scan however deep it is.

The cursor is opaque to clients: base64url of "<ISO time>|<id>". A cursor that does not
decode is refused with 422 naming the `cursor` field.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from typing import Any, TypeVar

from fastapi import Query

from tradestore.db.errors import ValidationError

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "CursorParam",
    "LimitParam",
    "decode_cursor",
    "encode_cursor",
    "split_page",
]

# Seed 001 §9-B reads 100 active orders a page; no list returns more than MAX_PAGE_SIZE.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
T = TypeVar("T")
_CURSOR_RULE = "must be a next_cursor returned by the previous page"

LimitParam = Query(
    DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE, description=f"page size, 1 to {MAX_PAGE_SIZE}"
)
CursorParam = Query(None, max_length=200, description="next_cursor of the previous page")


def encode_cursor(at: dt.datetime | int, row_id: int) -> str:
    key = at.isoformat() if isinstance(at, dt.datetime) else str(at)
    return base64.urlsafe_b64encode(f"{key}|{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, *, timed: bool = True) -> tuple[Any, int] | None:
    """(time or sequence number, id) of a cursor, or None for the first page."""
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        key, _, row_id = text.partition("|")
        position: Any = dt.datetime.fromisoformat(key) if timed else int(key)
        if timed and position.tzinfo is None:
            raise ValueError("naive time")
        return position, int(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("cursor", _CURSOR_RULE, cursor) from None


def split_page(
    rows: Sequence[T], limit: int, time_key: str, id_key: str = "id"
) -> tuple[list[T], str | None]:
    """(the page, next_cursor) from `limit + 1` rows: dicts or records with attributes."""
    page = list(rows[:limit])
    if len(rows) <= limit or not page:
        return page, None
    last = page[-1]
    return page, encode_cursor(_key(last, time_key), int(_key(last, id_key)))


def _key(row: object, key: str) -> Any:
    return row[key] if isinstance(row, dict) else getattr(row, key)
