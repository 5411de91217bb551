"""Reading PostgreSQL for the read-through getters: one statement, dict rows."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


def one(
    conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]
) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchone()


def rows(
    conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()
