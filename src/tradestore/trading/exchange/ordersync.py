"""Fill sync for exchanges without a trades endpoint (Upbit, Bithumb): each routed order is
read back from the exchange (CCXT `fetch_order`), and its fills and state follow.

- An order whose answer lists its trades (Upbit's `GET /v1/order` does, with their ids)
  has each trade recorded through the same path as `fillsync` (`trade.sync_fill` ->
  `apply_fill`, keyed by the exchange's trade id). The exchange reports the fee only per
  order (`paid_fee`): what it charged beyond what the books hold for the order goes on the
  newest new trade, so the order's fee total matches the exchange's.
- An order that reports only its cumulative fill is recorded as one fill per increase,
  keyed `<exchange order id>/<cumulative filled>`: the same increase read twice is one fill,
  and its price is the increase in the order's cost over the increase in quantity.
- An order the exchange canceled or expired on its own is closed in the books
  (`trade.route_closed`) after its fills, so a late fill is never lost to an early close.

Orders read: those the exchange holds open for the books (route SENT or CANCELING) and
those canceled in the last day (fills that raced a cancel arrive afterwards).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import ccxt
import psycopg

from tradestore.db.query import dicts, translated
from tradestore.trading.exchange.accounts import RoutingAccount
from tradestore.trading.exchange.connector import Connector, to_decimal
from tradestore.trading.exchange.fillsync import FillSyncReport, apply_trades, time_order

# How long a canceled order is still read back for fills that raced its cancel.
LATE_FILL_WINDOW = dt.timedelta(days=1)
_CLOSED = {"canceled": "CANCELED", "cancelled": "CANCELED", "expired": "EXPIRED"}


def _orders(conn: psycopg.Connection[Any], account_id: int) -> list[dict[str, Any]]:
    return dicts(
        conn,
        "SELECT o.id, r.exchange_order_id, r.state AS route_state, o.exchange_instrument_id, "
        "       i.symbol, o.side, o.status, o.filled_quantity, o.total_filled_value, "
        "       coalesce(o.fee, 0) AS fee "
        "  FROM trade.order_routes r "
        "  JOIN trade.orders o ON o.id = r.order_id "
        "  JOIN market.exchange_instruments ei ON ei.id = o.exchange_instrument_id "
        "  JOIN market.instruments i ON i.id = ei.instrument_id "
        " WHERE r.account_id = %s AND r.exchange_order_id IS NOT NULL "
        "   AND o.status NOT IN ('FILLED', 'REJECTED') "
        "   AND (r.state IN ('SENT', 'CANCELING') "
        "        OR (r.state = 'CANCELED' AND r.updated_at > now() - %s)) "
        " ORDER BY o.id",
        (account_id, LATE_FILL_WINDOW),
    )


def _known_trades(conn: psycopg.Connection[Any], order_id: int) -> set[str]:
    rows = conn.execute(
        "SELECT exchange_trade_id FROM trade.executions WHERE order_id = %s", (order_id,)
    ).fetchall()
    return {str(r[0]) for r in rows}


def _listed_trades(
    theirs: dict[str, Any], ours: dict[str, Any], known: set[str]
) -> list[dict[str, Any]]:
    """The order's own trade list; the fee the exchange charged beyond the books' goes on
    the newest new trade (the others carry none: the exchange reports fees per order)."""
    trades = sorted(theirs["trades"], key=time_order)
    fresh = [str(t["id"]) for t in trades if str(t["id"]) not in known]
    fee = theirs.get("fee") or {}
    charged = to_decimal(fee.get("cost"))
    out = []
    for trade in trades:
        t = {**trade, "side": trade.get("side") or theirs["side"], "order": theirs["id"]}
        t["fees"] = None
        if charged is not None:  # otherwise no fee: the fee schedule prices the fill
            extra = charged - ours["fee"] if fresh and str(t["id"]) == fresh[-1] else 0
            t["fee"] = {"cost": max(Decimal(extra), Decimal(0)), "currency": fee.get("currency")}
        out.append(t)
    return out


def _increase(theirs: dict[str, Any], ours: dict[str, Any]) -> list[dict[str, Any]]:
    """One fill for the order's cumulative fill beyond the books' (no trade list)."""
    filled = to_decimal(theirs.get("filled")) or Decimal(0)
    delta = filled - ours["filled_quantity"]
    if delta <= 0:
        return []
    cost = to_decimal(theirs.get("cost"))
    average = to_decimal(theirs.get("average"))
    if cost is not None and cost > 0:
        price = (cost - ours["total_filled_value"]) / delta
    elif average is not None:
        price = average
    else:
        return []  # nothing to price it with: reconciliation reports it
    reported = theirs.get("fee") or {}
    charged = to_decimal(reported.get("cost"))
    fee = None
    if charged is not None:
        fee = {"cost": max(charged - ours["fee"], Decimal(0)), "currency": reported.get("currency")}
    at = theirs.get("lastTradeTimestamp") or theirs.get("timestamp")
    return [
        {
            "id": f"{theirs['id']}/{format(filled.normalize(), 'f')}",
            "timestamp": at or int(dt.datetime.now(dt.UTC).timestamp() * 1000),
            "side": theirs["side"],
            "amount": delta,
            "price": price,
            "fee": fee,
            "order": theirs["id"],
        }
    ]


def sync_orders(
    conn: psycopg.Connection[Any], account: RoutingAccount, connector: Connector
) -> FillSyncReport:
    """One pass over the account's routed orders (see module)."""
    report = FillSyncReport(account.account_id)
    for ours in _orders(conn, account.account_id):
        if ours["symbol"] not in report.symbols:
            report.symbols.append(ours["symbol"])
        try:
            theirs = connector.fetch_order(ours["exchange_order_id"], ours["symbol"])
        except ccxt.OrderNotFound:
            continue  # reconciliation reports an order the exchange does not know
        if theirs.get("trades"):
            trades = _listed_trades(theirs, ours, _known_trades(conn, ours["id"]))
        else:
            trades = _increase(theirs, ours)
        apply_trades(conn, account, ours["exchange_instrument_id"], trades, report)
        closed = _CLOSED.get(str(theirs.get("status")))
        if closed and ours["route_state"] == "SENT":
            with translated(), conn.transaction():
                row = conn.execute(
                    "SELECT trade.route_closed(%s, %s, %s)",
                    (ours["id"], closed, f"{closed.lower()} by {connector.id}"),
                ).fetchone()
            if row and row[0]:
                report.closed.append(ours["id"])
    return report
