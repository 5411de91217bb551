"""Orders: submit (idempotent), cancel, expire, read. Each call is one round trip to the
SQL API in trading/sql/api.sql, which holds every client to the same rules."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import psycopg

from tradestore.db.errors import NotFound
from tradestore.db.query import dicts, scalar
from tradestore.trading._input import Number, to_decimal, utc
from tradestore.trading.models import Order, OrderStatus, OrderType, Side, from_row

# symbol is "<exchange code>:<exchange symbol>", the way the API and the CLI name a listing.
_ORDER_COLUMNS = """
    o.id, o.account_id, o.exchange_instrument_id, x.code || ':' || ei.exchange_symbol AS symbol,
    o.side,
    o.order_type, o.status, o.quantity, o.price, o.stop_price, o.filled_quantity,
    o.remaining_quantity, o.average_fill_price, o.fee, o.fee_currency, o.source,
    o.idempotency_key, o.client_order_id, o.exchange_order_id, o.strategy_id, o.pick_id,
    o.holding_id, o.created_at, o.updated_at, o.filled_at, o.cancelled_at, o.expires_at
"""
_ORDER_FROM = """trade.orders o
    JOIN market.exchange_instruments ei ON ei.id = o.exchange_instrument_id
    JOIN market.exchanges x ON x.id = ei.exchange_id"""


def submit_order(
    conn: psycopg.Connection[Any],
    account_id: int,
    exchange_instrument_id: int,
    side: Side | str,
    order_type: OrderType | str,
    quantity: Number,
    price: Number | None = None,
    *,
    idempotency_key: str | None = None,
    client_order_id: str | None = None,
    stop_price: Number | None = None,
    expires_at: dt.datetime | None = None,
    strategy_id: int | None = None,
    pick_id: int | None = None,
    source: str = "API",
    notes: str | None = None,
) -> int:
    """Place an order and return its id. Price and quantity are normalized to the
    listing's rules; min/max quantity and notional are enforced. Submitting again with an
    idempotency key still active on the account returns that order's id and writes
    nothing. For a STOP order the trigger is stop_price (then price makes it a
    stop-limit) or, as in SQL submit_order, price when stop_price is not given."""
    if str(order_type).strip().upper() == "STOP" and stop_price is None:
        price, stop_price = None, price
    return cast(
        int,
        scalar(
            conn,
            "SELECT trade.place_order(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                account_id,
                exchange_instrument_id,
                str(side),
                str(order_type),
                to_decimal("quantity", quantity),
                to_decimal("price", price),
                idempotency_key,
                client_order_id,
                to_decimal("stop_price", stop_price),
                utc(expires_at, "expires_at"),
                strategy_id,
                pick_id,
                source,
                notes,
            ),
        ),
    )


def cancel_order(conn: psycopg.Connection[Any], order_id: int) -> None:
    """Cancel an active order (a repeated cancel is a no-op; a finished order is refused)."""
    scalar(conn, "SELECT public.cancel_order(%s)", (order_id,))


def expire_orders(conn: psycopg.Connection[Any], now: dt.datetime | None = None) -> int:
    """Mark active orders whose expires_at has passed EXPIRED; returns how many."""
    return cast(
        int, scalar(conn, "SELECT trade.expire_orders(coalesce(%s, now()))", (utc(now, "now"),))
    )


def get_order(conn: psycopg.Connection[Any], order_id: int) -> Order:
    found = dicts(
        conn,
        f"SELECT {_ORDER_COLUMNS} FROM {_ORDER_FROM} WHERE o.id = %s",
        (order_id,),
    )
    if not found:
        raise NotFound("order", order_id)
    return cast(Order, from_row(Order, found[0]))


def list_orders(
    conn: psycopg.Connection[Any],
    account_id: int | None = None,
    *,
    status: OrderStatus | str | None = None,
    active_only: bool = False,
    limit: int = 100,
    before: tuple[dt.datetime, int] | None = None,
) -> list[Order]:
    """Orders, newest first (seed 001 §9-B's active-order paging when active_only).
    `before` (created_at, id) continues a keyset page after its last order."""
    conditions = ["(%(account)s::bigint IS NULL OR o.account_id = %(account)s)"]
    if status is not None:
        conditions.append("o.status = %(status)s")
    if active_only:
        conditions.append("o.status IN ('NEW', 'PARTIALLY_FILLED')")
    if before is not None:
        conditions.append("(o.created_at, o.id) < (%(at)s, %(id)s)")
    at, row_id = before if before is not None else (None, None)
    found = dicts(
        conn,
        f"SELECT {_ORDER_COLUMNS} FROM {_ORDER_FROM} WHERE {' AND '.join(conditions)} "
        "ORDER BY o.created_at DESC, o.id DESC LIMIT %(limit)s",
        {
            "account": account_id,
            "status": str(status) if status else None,
            "limit": limit,
            "at": at,
            "id": row_id,
        },
    )
    return [cast(Order, from_row(Order, r)) for r in found]
