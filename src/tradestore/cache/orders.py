"""Orders through Redis: order:{id}:status and user:{id}:active_orders.

Every committed submit, fill, cancel or expiry drops both keys (cache.invalidation, from
a trigger on trade.orders); `on_order_changed` remains to push a committed row's value
explicitly. Readers get the key, or PostgreSQL on a miss (and the key is rebuilt).

Cached entries are shared by every reader, so the getters take the acting user's id and
answer None for another user's order, as row-level security does in the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from tradestore.cache import keys
from tradestore.cache.client import Cache
from tradestore.cache.keys import OrderStatusEntry
from tradestore.db.query import dicts, one

__all__ = ["active_orders", "on_order_changed", "on_orders_changed", "order_status"]

_ORDER = """
    SELECT o.id AS order_id, o.account_id, a.user_id, x.code || ':' || ei.exchange_symbol AS symbol,
           o.side, o.status, o.quantity, o.filled_quantity, o.remaining_quantity,
           o.average_fill_price, o.updated_at
      FROM trade.orders o
      JOIN account.accounts a ON a.id = o.account_id
      JOIN market.exchange_instruments ei ON ei.id = o.exchange_instrument_id
      JOIN market.exchanges x ON x.id = ei.exchange_id
"""


def _load(conn: psycopg.Connection[Any], order_id: int) -> OrderStatusEntry | None:
    row = one(conn, _ORDER + " WHERE o.id = %s", (order_id,))
    return None if row is None else OrderStatusEntry(**row)


def on_order_changed(
    cache: Cache, conn: psycopg.Connection[Any], order_id: int
) -> OrderStatusEntry | None:
    """Refresh an order's keys from its committed row. Call after commit."""
    entry = _load(conn, order_id)
    if entry is None:
        cache.invalidate(keys.order_status_key(order_id))
        return None
    keys.set_order_status(cache, entry)
    keys.mark_order_active(cache, entry.user_id, entry.order_id, entry.is_active)
    return entry


def on_orders_changed(
    cache: Cache, conn: psycopg.Connection[Any], order_ids: Iterable[int]
) -> None:
    """on_order_changed for many orders (expiry sweeps, reconciliation)."""
    for order_id in order_ids:
        on_order_changed(cache, conn, order_id)


def order_status(
    cache: Cache, conn: psycopg.Connection[Any], order_id: int, *, user_id: int | None = None
) -> OrderStatusEntry | None:
    """The order's status; None if it does not exist or (with user_id) is not theirs."""
    entry = keys.get_order_status(cache, order_id)
    cache.record(entry is not None)
    if entry is None:
        entry = _load(conn, order_id)
        if entry is not None:
            keys.set_order_status(cache, entry)
    if entry is None or (user_id is not None and entry.user_id != user_id):
        return None
    return entry


def active_orders(cache: Cache, conn: psycopg.Connection[Any], user_id: int) -> set[int]:
    """Ids of the user's NEW and PARTIALLY_FILLED orders."""
    cached = keys.get_active_orders(cache, user_id)
    cache.record(cached is not None)
    if cached is not None:
        return cached
    ids = {
        int(r["id"])
        for r in dicts(
            conn,
            "SELECT o.id FROM trade.orders o JOIN account.accounts a ON a.id = o.account_id "
            "WHERE a.user_id = %s AND o.status IN ('NEW', 'PARTIALLY_FILLED')",
            (user_id,),
        )
    }
    keys.set_active_orders(cache, user_id, ids)
    return ids
