"""Netting positions per account and listing, valued at the latest price."""

from __future__ import annotations

from typing import Any, cast

import psycopg

from tradestore.db.query import dicts
from tradestore.trading.models import Position, from_row

_QUERY = """
SELECT p.id, p.account_id, p.exchange_instrument_id, ei.exchange_symbol AS symbol, p.quantity,
       p.avg_entry_price, p.realized_pnl, p.total_fees, v.current_price, v.cost_basis,
       v.market_value, v.unrealized_pnl, v.quote_currency, v.is_derivative, p.opened_at, p.closed_at
  FROM trade.positions p
  JOIN trade.position_valuations v ON v.position_id = p.id
  JOIN market.exchange_instruments ei ON ei.id = p.exchange_instrument_id
 WHERE (%(account)s::bigint IS NULL OR p.account_id = %(account)s)
   AND (%(listing)s::bigint IS NULL OR p.exchange_instrument_id = %(listing)s)
   AND (%(all)s OR p.quantity <> 0)
 ORDER BY p.account_id, ei.exchange_symbol
"""


def list_positions(
    conn: psycopg.Connection[Any], account_id: int | None = None, *, include_flat: bool = False
) -> list[Position]:
    """Open positions (and flat ones, which keep their realized PnL, with include_flat)."""
    found = dicts(conn, _QUERY, {"account": account_id, "listing": None, "all": include_flat})
    return [cast(Position, from_row(Position, r)) for r in found]


def get_position(
    conn: psycopg.Connection[Any], account_id: int, exchange_instrument_id: int
) -> Position | None:
    """The position of an account in a listing, or None before its first fill."""
    found = dicts(
        conn, _QUERY, {"account": account_id, "listing": exchange_instrument_id, "all": True}
    )
    return cast(Position, from_row(Position, found[0])) if found else None
