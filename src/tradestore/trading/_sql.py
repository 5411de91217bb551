"""What the trading API modules share: exact-decimal input coercion and running one SQL
statement with database errors translated into tradestore's own (field, rule, value)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import psycopg
from psycopg.rows import class_row, dict_row

from tradestore.db.errors import ValidationError, translate

T = TypeVar("T")

Number = Decimal | int | str


def to_decimal(field: str, value: Number | None) -> Decimal | None:
    """An exact Decimal from a Decimal, int or decimal string. Floats are refused: a binary
    float cannot hold most decimal prices (0.1 is 0.1000000000000000055...)."""
    if value is None:
        return None
    if isinstance(value, bool | float):
        raise ValidationError(field, "must be a Decimal, int or decimal string, not a float", value)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValidationError(field, "must be a decimal number", value) from None
    raise ValidationError(field, "must be a Decimal, int or decimal string", value)


def utc(value: dt.datetime | None, field: str = "time") -> dt.datetime | None:
    """A timezone-aware datetime (naive ones are refused: their zone is a guess)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValidationError(field, "must be timezone-aware", value.isoformat())
    return value


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise database errors as ValidationError / NotFound / Conflict where known."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = translate(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def scalar(
    conn: psycopg.Connection[Any], query: str, params: Sequence[Any] | dict[str, Any]
) -> Any:
    with translated():
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def rows(
    conn: psycopg.Connection[Any], factory: Callable[..., T], query: str, params: Any = None
) -> list[T]:
    with translated(), conn.cursor(row_factory=class_row(factory)) as cur:
        return cur.execute(query, params).fetchall()


def dicts(conn: psycopg.Connection[Any], query: str, params: Any = None) -> list[dict[str, Any]]:
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()
