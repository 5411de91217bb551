"""Per-user keys through Redis: user:{id}:preferences (1h) and user:{id}:active_sessions.

Sessions themselves (session:{id}) are written and read by tradestore.identity.auth.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tradestore.cache import keys
from tradestore.cache.client import Cache
from tradestore.db.query import dicts, one

__all__ = ["active_sessions", "on_preferences_changed", "preferences"]


def on_preferences_changed(cache: Cache, user_id: int, preferences: dict[str, Any]) -> None:
    """The profile's preferences were committed: cache them."""
    keys.set_preferences(cache, user_id, preferences)


def preferences(cache: Cache, conn: psycopg.Connection[Any], user_id: int) -> dict[str, Any]:
    """The user's preferences (theme, dashboard layout, notification settings); {} if
    they have no profile."""
    cached = keys.get_preferences(cache, user_id)
    cache.record(cached is not None)
    if cached is not None:
        return cached
    row = one(conn, "SELECT preferences FROM account.user_profiles WHERE user_id = %s", (user_id,))
    value: dict[str, Any] = dict(row["preferences"]) if row else {}
    keys.set_preferences(cache, user_id, value)
    return value


def active_sessions(cache: Cache, conn: psycopg.Connection[Any], user_id: int) -> set[int]:
    """Ids of the user's live sessions (not revoked, not expired)."""
    cached = keys.get_active_sessions(cache, user_id)
    cache.record(cached is not None)
    if cached is not None:
        return cached
    ids = {
        int(r["id"])
        for r in dicts(
            conn,
            "SELECT id FROM account.user_sessions WHERE user_id = %s AND is_active "
            "AND revoked_at IS NULL AND expires_at > now()",
            (user_id,),
        )
    }
    keys.set_active_sessions(cache, user_id, ids)
    return ids
