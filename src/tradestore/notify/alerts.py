"""System alerts (seed 004 system.alerts): raise, list, acknowledge.

Raising an alert queues its Telegram notifications in the database (trigger
tr_alerts_route), by the routing of seed 001: every enabled chat whose min_severity is at
most the alert's severity, where 004's severities map onto 001's as

    004 CRITICAL -> 001 CRITICAL
    004 HIGH     -> 001 WARN
    004 MEDIUM   -> 001 WARN
    004 LOW      -> 001 INFO

`raise_alert` also takes 001's names (WARN is stored as MEDIUM, INFO as LOW).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from tradestore.db.query import translated

__all__ = ["SEVERITY_MAP", "Alert", "acknowledge", "open_alerts", "raise_alert"]

SEVERITY_MAP: dict[str, str] = {
    "CRITICAL": "CRITICAL",
    "HIGH": "WARN",
    "MEDIUM": "WARN",
    "LOW": "INFO",
}


@dataclass(frozen=True)
class Alert:
    alert_id: int
    alert_type: str | None
    severity: str | None
    module: str | None
    message: str
    data: Any
    user_id: int | None
    is_acknowledged: bool
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    dedupe_key: str | None
    created_at: datetime


def raise_alert(
    conn: psycopg.Connection[Any],
    severity: str,
    message: str,
    *,
    module: str | None = None,
    data: Any = None,
    alert_type: str | None = None,
    dedupe_key: str | None = None,
    user_id: int | None = None,
) -> int:
    """Record an alert and queue its notifications. Returns alert_id."""
    with translated():
        row = conn.execute(
            "SELECT public.raise_alert(%s, %s, %s, %s, %s, %s, %s)",
            (
                severity,
                message,
                module,
                Jsonb(data) if data is not None else None,
                alert_type,
                dedupe_key,
                user_id,
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


def acknowledge(conn: psycopg.Connection[Any], alert_id: int, by: str | None = None) -> bool:
    """Acknowledge an alert; False when it already was."""
    with translated():
        row = conn.execute("SELECT public.acknowledge_alert(%s, %s)", (alert_id, by)).fetchone()
    assert row is not None
    return bool(row[0])


def open_alerts(conn: psycopg.Connection[Any], limit: int = 100) -> list[Alert]:
    """Unacknowledged alerts, newest first."""
    with conn.cursor(row_factory=class_row(Alert)) as cur:
        cur.execute(
            "SELECT alert_id, alert_type, severity, module, message, data, user_id, is_acknowledged, "
            "acknowledged_at, acknowledged_by, dedupe_key, created_at FROM system.alerts "
            "WHERE NOT is_acknowledged ORDER BY created_at DESC, alert_id DESC LIMIT %s",
            (limit,),
        )
        return cur.fetchall()
