"""Run a transaction as an application user, so row-level security applies.

`as_user(conn, user_id)` opens a transaction in which the connection acts as that user:
system.act_as checks the user (and session) and does SET LOCAL ROLE tradestore_<role> and
SET LOCAL tradestore.user_id. Both end with the transaction, so a pooled connection goes
back to the pool as the application again. See docs/security.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import pq, sql

from tradestore.identity.errors import translate_security

__all__ = ["Role", "as_role", "as_user", "as_user_async", "current_identity"]


class Role(StrEnum):
    READONLY = "readonly"
    TRADER = "trader"
    ANALYST = "analyst"
    ADMIN = "admin"

    @property
    def db_role(self) -> str:
        return f"tradestore_{self.value}"


def _outside_transaction(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    # Inside an open transaction psycopg would use a savepoint, and SET LOCAL outlives a
    # savepoint: the role would leak past the block.
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise RuntimeError("as_user/as_role need a connection that is not in a transaction")


@contextmanager
def as_user(
    conn: psycopg.Connection[Any],
    user_id: int,
    role: Role | str | None = None,
    *,
    session_id: int | None = None,
) -> Iterator[psycopg.Connection[Any]]:
    """A transaction acting as `user_id` with the user's own role (or `role`, which may
    only narrow it to readonly); with `session_id`, that session must be live. Refused
    (AuthError) for an unknown or inactive user or a dead session. Database refusals in
    the block are raised as Forbidden / ValidationError / NotFound / Conflict."""
    _outside_transaction(conn)
    with conn.transaction():
        try:
            conn.execute(
                "SELECT system.act_as(%s, %s, %s)",
                (user_id, None if role is None else Role(role).value, session_id),
            )
        except psycopg.Error as exc:
            raise translate_security(exc) from None
        with _translated():
            yield conn


@contextmanager
def as_role(conn: psycopg.Connection[Any], role: Role | str) -> Iterator[psycopg.Connection[Any]]:
    """A transaction as a database role without a user: for operators (`as_role(conn,
    'admin')` in the CLI). Other roles see no user's rows."""
    _outside_transaction(conn)
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(Role(role).db_role)))
        with _translated():
            yield conn


@contextmanager
def _translated() -> Iterator[None]:
    """Database refusals inside the block come out as tradestore errors (Forbidden,
    ValidationError, NotFound, Conflict); the transaction is rolled back either way."""
    try:
        yield
    except psycopg.Error as exc:
        translated = translate_security(exc)
        if translated is exc:
            raise
        raise translated from exc


def current_identity(conn: psycopg.Connection[Any]) -> tuple[str, int | None]:
    """(current database role, application user id or None) of the connection."""
    row = conn.execute("SELECT current_user::text, system.app_user_id()").fetchone()
    assert row is not None
    return row[0], row[1]


@asynccontextmanager
async def as_user_async(
    conn: psycopg.AsyncConnection[Any],
    user_id: int,
    role: Role | str | None = None,
    *,
    session_id: int | None = None,
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """as_user for an async connection (the API's AsyncConnectionPool)."""
    _outside_transaction(conn)
    async with conn.transaction():
        try:
            await conn.execute(
                "SELECT system.act_as(%s, %s, %s)",
                (user_id, None if role is None else Role(role).value, session_id),
            )
        except psycopg.Error as exc:
            raise translate_security(exc) from None
        with _translated():
            yield conn
