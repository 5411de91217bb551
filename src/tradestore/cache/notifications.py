"""Notifications through Redis: notifications:{user_id} (the user's open alerts, newest
first, and the alerts that belong to nobody) and telegram_queue (outbox ids for the
Telegram worker, oldest popped first).

PostgreSQL's system.alerts and system.notification_outbox stay the source of truth: the
list is rebuilt from open alerts on a miss, and the queue from PENDING outbox rows.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tradestore.cache import keys
from tradestore.cache.client import Cache, purge_pattern
from tradestore.cache.keys import NOTIFICATIONS_KEPT, Notification
from tradestore.db.query import dicts, one

__all__ = [
    "next_telegram",
    "notifications",
    "on_alert_changed",
    "on_alert_raised",
    "on_outbox_enqueued",
    "rebuild_telegram_queue",
]

_ALERT = """
    SELECT alert_id AS id, user_id, alert_type, severity, module, message, created_at
      FROM system.alerts
"""


def on_alert_raised(cache: Cache, conn: psycopg.Connection[Any], alert_id: int) -> None:
    """A new alert was committed: prepend it to its user's list. An alert for nobody
    shows in every list, so every list is dropped and rebuilt on its next read."""
    row = one(conn, _ALERT + " WHERE alert_id = %s", (alert_id,))
    if row is None:
        return
    alert = Notification(**row)
    if alert.user_id is None:
        cache.run(lambda r: purge_pattern(r, "notifications:*"), 0, "purge notifications")
    else:
        keys.push_notification(cache, alert.user_id, alert)


def on_alert_changed(cache: Cache, user_id: int | None) -> None:
    """An alert was acknowledged (or changed): drop the lists that show it."""
    if user_id is None:
        cache.run(lambda r: purge_pattern(r, "notifications:*"), 0, "purge notifications")
    else:
        cache.invalidate(keys.notifications_key(user_id))


def notifications(
    cache: Cache, conn: psycopg.Connection[Any], user_id: int, limit: int = NOTIFICATIONS_KEPT
) -> list[Notification]:
    cached = keys.get_notifications(cache, user_id, limit)
    cache.record(cached is not None)
    if cached is not None:
        return cached
    found = [
        Notification(**r)
        for r in dicts(
            conn,
            _ALERT + " WHERE (user_id = %s OR user_id IS NULL) AND NOT is_acknowledged "
            "ORDER BY created_at DESC, alert_id DESC LIMIT %s",
            (user_id, NOTIFICATIONS_KEPT),
        )
    ]
    keys.set_notifications(cache, user_id, found)
    return found[:limit]


def on_outbox_enqueued(cache: Cache, outbox_id: int) -> None:
    """A message was queued in the outbox (committed): wake the worker through Redis."""
    keys.push_telegram(cache, outbox_id)


def rebuild_telegram_queue(cache: Cache, conn: psycopg.Connection[Any]) -> int:
    """Refill telegram_queue with the PENDING outbox ids, oldest first; returns how many."""
    ids = [
        int(r["id"])
        for r in dicts(
            conn,
            "SELECT id FROM system.notification_outbox WHERE status = 'PENDING' "
            "ORDER BY coalesce(send_after, created_at), id",
            (),
        )
    ]
    keys.set_telegram_queue(cache, ids)
    return len(ids)


def next_telegram(cache: Cache, conn: psycopg.Connection[Any]) -> int | None:
    """The next outbox id to send: from the queue, or (queue empty, flushed or Redis
    down) the oldest PENDING row in PostgreSQL. The outbox row's status decides whether
    it still needs sending; the queue only says where to look first."""
    queued = keys.pop_telegram(cache)
    if queued is not None:
        return queued
    row = one(
        conn,
        "SELECT id FROM system.notification_outbox WHERE status = 'PENDING' "
        "ORDER BY coalesce(send_after, created_at), id LIMIT 1",
        (),
    )
    return None if row is None else int(row["id"])
