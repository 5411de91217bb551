"""Running one SQL statement: the helpers every capability, route and command shares.

Each helper runs its statement inside `translated()`, so a refused write surfaces as
tradestore's own ValidationError / NotFound / Conflict (field, rule, value) rather than a
driver error; database errors without a known meaning propagate unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeAlias, TypeVar

import psycopg
from psycopg import sql
from psycopg.rows import class_row, dict_row

from tradestore.db.errors import translate

__all__ = ["Params", "Query", "dicts", "one", "rows", "scalar", "translated"]

T = TypeVar("T")

# A statement: text, or one composed with psycopg.sql (identifiers quoted).
Query: TypeAlias = str | bytes | sql.SQL | sql.Composed
# What psycopg accepts as the parameters of one statement.
Params: TypeAlias = Sequence[Any] | Mapping[str, Any] | None


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise database errors as ValidationError / NotFound / Conflict where known.

    Also usable as a decorator (`@translated()`): contextmanager objects are
    ContextDecorators."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = translate(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def scalar(conn: psycopg.Connection[Any], query: Query, params: Params = None) -> Any:
    """The first column of the first row, or None when there is no row."""
    with translated():
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def one(
    conn: psycopg.Connection[Any], query: Query, params: Params = None
) -> dict[str, Any] | None:
    """The first row as a dict keyed by column name, or None when there is no row."""
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchone()


def dicts(
    conn: psycopg.Connection[Any], query: Query, params: Params = None
) -> list[dict[str, Any]]:
    """Every row as a dict keyed by column name."""
    with translated(), conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def rows(
    conn: psycopg.Connection[Any], factory: type[T], query: Query, params: Params = None
) -> list[T]:
    """Every row built by `factory` from its columns as keyword arguments (a dataclass)."""
    with translated(), conn.cursor(row_factory=class_row(factory)) as cur:
        return cur.execute(query, params).fetchall()
