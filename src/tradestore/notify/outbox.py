"""Python side of the outbox and of Telegram chat routing (thin over the SQL API).

Every function takes an open psycopg connection (sync) and runs one SQL call; errors come
back as tradestore.db.errors (ValidationError names the field, the rule and the value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import class_row

from tradestore.db.errors import ValidationError
from tradestore.db.query import translated

__all__ = [
    "Chat",
    "OutboxStats",
    "Severity",
    "add_chat",
    "enqueue",
    "list_chats",
    "outbox_stats",
    "retry_failed",
    "route",
    "update_chat",
]


class Severity(StrEnum):
    """Seed 001's alert_severity, in routing order."""

    INFO = "INFO"
    WARN = "WARN"
    CRITICAL = "CRITICAL"


def severity(value: str | Severity) -> Severity:
    try:
        return Severity(str(value).upper())
    except ValueError:
        raise ValidationError("severity", "must be one of INFO, WARN, CRITICAL", value) from None


def enqueue(
    conn: psycopg.Connection[Any],
    chat_id: int,
    sev: str | Severity,
    title: str,
    message: str,
    dedupe_key: str | None = None,
) -> int:
    """Queue one message for one chat (seed 001 enqueue_notification). Returns the outbox
    id, or 0 when dedupe_key was already queued."""
    with translated():
        row = conn.execute(
            "SELECT public.enqueue_notification(%s, %s::system.alert_severity, %s, %s, %s)",
            (chat_id, severity(sev).value, title, message, dedupe_key),
        ).fetchone()
    assert row is not None
    return int(row[0])


def route(
    conn: psycopg.Connection[Any],
    sev: str | Severity,
    title: str,
    message: str,
    dedupe_key: str | None = None,
    user_id: int | None = None,
) -> int:
    """Queue a message for every enabled chat whose min_severity <= sev (chats of
    `user_id` and chats bound to no user). Returns how many rows were queued."""
    with translated():
        row = conn.execute(
            "SELECT public.route_notification(%s::system.alert_severity, %s, %s, %s, %s)",
            (severity(sev).value, title, message, dedupe_key, user_id),
        ).fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class Chat:
    id: int
    chat_id: int
    user_id: int | None
    description: str | None
    min_severity: str
    enabled: bool
    created_at: datetime


_CHAT_COLUMNS = "id, chat_id, user_id, description, min_severity::text, enabled, created_at"


def add_chat(
    conn: psycopg.Connection[Any],
    chat_id: int,
    min_severity: str | Severity = Severity.WARN,
    description: str | None = None,
    user_id: int | None = None,
    enabled: bool = True,
) -> Chat:
    """Register a Telegram chat (seed 001 telegram_chats)."""
    with translated(), conn.cursor(row_factory=class_row(Chat)) as cur:
        cur.execute(
            f"INSERT INTO system.telegram_chats (chat_id, min_severity, description, user_id, enabled) "
            f"VALUES (%s, %s::system.alert_severity, %s, %s, %s) RETURNING {_CHAT_COLUMNS}",
            (chat_id, severity(min_severity).value, description, user_id, enabled),
        )
        chat = cur.fetchone()
    assert chat is not None
    return chat


def update_chat(
    conn: psycopg.Connection[Any],
    chat_id: int,
    *,
    min_severity: str | Severity | None = None,
    enabled: bool | None = None,
    description: str | None = None,
) -> Chat:
    """Change a chat's routing; unchanged fields are left alone."""
    with translated(), conn.cursor(row_factory=class_row(Chat)) as cur:
        cur.execute(
            "UPDATE system.telegram_chats SET "
            "min_severity = coalesce(%s::system.alert_severity, min_severity), "
            "enabled = coalesce(%s, enabled), description = coalesce(%s, description) "
            f"WHERE chat_id = %s RETURNING {_CHAT_COLUMNS}",
            (
                severity(min_severity).value if min_severity is not None else None,
                enabled,
                description,
                chat_id,
            ),
        )
        chat = cur.fetchone()
    if chat is None:
        raise ValidationError("chat_id", "must name a registered chat", chat_id)
    return chat


def list_chats(conn: psycopg.Connection[Any]) -> list[Chat]:
    with conn.cursor(row_factory=class_row(Chat)) as cur:
        cur.execute(f"SELECT {_CHAT_COLUMNS} FROM system.telegram_chats ORDER BY id")
        return cur.fetchall()


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    due: int
    claimed: int
    failed: int
    sent: int
    oldest_due_age_s: float | None


_STATS_SQL = """
SELECT count(*) FILTER (WHERE status = 'PENDING'),
       count(*) FILTER (WHERE status = 'PENDING' AND coalesce(send_after, created_at) <= now()),
       count(*) FILTER (WHERE status = 'PENDING' AND claimed_by IS NOT NULL),
       count(*) FILTER (WHERE status = 'FAILED'),
       count(*) FILTER (WHERE status = 'SENT'),
       extract(epoch FROM now() - min(coalesce(send_after, created_at))
                              FILTER (WHERE status = 'PENDING'
                                        AND coalesce(send_after, created_at) <= now()))::float8
  FROM system.notification_outbox
"""


def outbox_stats(conn: psycopg.Connection[Any]) -> OutboxStats:
    row = conn.execute(_STATS_SQL).fetchone()
    assert row is not None
    return OutboxStats(int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), row[5])


def retry_failed(conn: psycopg.Connection[Any], ids: Sequence[int] | None = None) -> int:
    """Put FAILED messages (all, or `ids`) back in the queue. Returns how many."""
    with translated():
        row = conn.execute(
            "SELECT public.retry_notifications(%s)", (list(ids) if ids is not None else None,)
        ).fetchone()
    assert row is not None
    return int(row[0])
