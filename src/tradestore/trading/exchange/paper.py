"""tradestore's paper exchange: fills the orders of 'sim' accounts against collected live
market data (market.trade_prints, market.order_books), through `apply_fill` like any
other fill, so paper and live fills make the same executions, positions and ledger rows.

Matching (deterministic: the same stored data always gives the same fills, and every
fill's trade id is derived from the order and the data that filled it, so a pass run
twice, or by two workers, records each fill once):

- **Limit orders** rest from their `created_at` and fill against the trade prints after
  it, oldest first, at the limit price (maker). A print through the price (below a buy's
  limit, above a sell's) fills up to its quantity. A print *at* the price fills only
  after the queue ahead of the order has traded: the size the newest stored book (at or
  before the order's creation) showed at that price on the order's side. With no stored
  book the queue ahead is taken as empty. Trade id `sim-<order>-<print id>`.
- **Market orders** take the stored book in effect when they were placed (the newest
  snapshot at or before `created_at`, at most `max_book_age` old; otherwise the first
  snapshot after), level by level, each level a fill at its price (taker). What the
  stored depth cannot fill is canceled, as an exchange does with an IOC remainder. Trade
  id `sim-<order>-L<level>`. An order with no book yet waits for one.
- Stop orders are not matched.
- **Fees**: maker / taker rates from the settlement module's fee schedule
  (market.exchange_fee_schedules, per-symbol overrides as in strategy/fees.py), charged
  in the quote currency. Without the module (or a schedule covering the fill) the rate is
  0, and a warning says so once per exchange.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.db.query import dicts
from tradestore.strategy.fees import has_fee_schedules
from tradestore.trading.fills import apply_fill
from tradestore.trading.orders import cancel_order

log = logging.getLogger(__name__)

MAX_BOOK_AGE = dt.timedelta(seconds=60)
DEFAULT_FEE = Decimal(0)

_OPEN_ORDERS = """
SELECT o.id, o.account_id, o.exchange_instrument_id AS listing, o.side, o.order_type,
       o.quantity, o.price, o.created_at, a.exchange_id, ei.exchange_symbol,
       coalesce(i.quote_currency, a.base_currency) AS quote
  FROM trade.orders o
  JOIN account.accounts a ON a.id = o.account_id
  JOIN market.exchange_instruments ei ON ei.id = o.exchange_instrument_id
  JOIN market.instruments i ON i.id = ei.instrument_id
 WHERE a.trading_mode = 'sim' AND o.status IN ('NEW', 'PARTIALLY_FILLED')
   AND o.order_type IN ('LIMIT', 'MARKET')
   AND (%(account)s::bigint IS NULL OR o.account_id = %(account)s)
 ORDER BY o.created_at, o.id
"""


@dataclass(frozen=True)
class SimFill:
    trade_id: str
    quantity: Decimal
    price: Decimal
    executed_at: dt.datetime
    maker: bool


@dataclass
class PassReport:
    orders: int = 0
    fills: int = 0
    duplicates: int = 0
    canceled: list[int] = field(default_factory=list)


def _levels(raw: Any) -> list[tuple[Decimal, Decimal]]:
    levels = json.loads(raw, parse_float=Decimal) if isinstance(raw, str) else raw
    return [(Decimal(str(p)), Decimal(str(q))) for p, q in levels or []]


def _book_at(
    conn: psycopg.Connection[Any], listing: int, at: dt.datetime, max_age: dt.timedelta
) -> dict[str, Any] | None:
    """The book in effect at `at`: the newest snapshot at or before it (at most max_age
    old), else the first one after it."""
    before = dicts(
        conn,
        'SELECT "time", bids::text AS bids, asks::text AS asks FROM market.order_books '
        'WHERE exchange_instrument_id = %s AND "time" <= %s AND "time" >= %s '
        'ORDER BY "time" DESC LIMIT 1',
        (listing, at, at - max_age),
    )
    if before:
        return before[0]
    after = dicts(
        conn,
        'SELECT "time", bids::text AS bids, asks::text AS asks FROM market.order_books '
        'WHERE exchange_instrument_id = %s AND "time" > %s ORDER BY "time" LIMIT 1',
        (listing, at),
    )
    return after[0] if after else None


def match_market(order: dict[str, Any], book: dict[str, Any]) -> list[SimFill]:
    """A market order against a book's depth, level by level."""
    levels = _levels(book["asks"] if order["side"] == "BUY" else book["bids"])
    left = Decimal(order["quantity"])
    at = max(book["time"], order["created_at"])
    fills = []
    for i, (price, size) in enumerate(levels):
        if left <= 0:
            break
        qty = min(size, left)
        fills.append(SimFill(f"sim-{order['id']}-L{i}", qty, price, at, maker=False))
        left -= qty
    return fills


def match_limit(
    order: dict[str, Any], prints: list[dict[str, Any]], queue_ahead: Decimal
) -> list[SimFill]:
    """A resting limit order against the prints after it (oldest first)."""
    limit = Decimal(order["price"])
    buy = order["side"] == "BUY"
    left = Decimal(order["quantity"])
    queue = queue_ahead
    fills = []
    for p in prints:
        if left <= 0:
            break
        price, qty = Decimal(p["price"]), Decimal(p["quantity"])
        if (price < limit) if buy else (price > limit):
            available = qty
        elif price == limit:
            taken = min(queue, qty)
            queue -= taken
            available = qty - taken
        else:
            continue
        if available > 0:
            fill = min(available, left)
            fills.append(
                SimFill(f"sim-{order['id']}-{p['trade_id']}", fill, limit, p["time"], maker=True)
            )
            left -= fill
    return fills


class PaperExchange:
    """Matches the open orders of 'sim' accounts. `run_once()` is one pass; each order's
    fills are applied in their own transaction (conn in autocommit mode)."""

    def __init__(
        self, conn: psycopg.Connection[Any], *, max_book_age: dt.timedelta = MAX_BOOK_AGE
    ) -> None:
        self.conn = conn
        self.max_book_age = max_book_age
        self._warned: set[int] = set()

    def fee_rates(self, exchange_id: int, symbol: str, at: dt.datetime) -> tuple[Decimal, Decimal]:
        """(maker, taker) of the settlement module's schedule in force at `at`."""
        if has_fee_schedules(self.conn):
            row = self.conn.execute(
                "SELECT fee_schema::text FROM market.exchange_fee_schedules "
                "WHERE exchange_id = %s AND effective_from <= %s "
                "AND (effective_to IS NULL OR effective_to > %s) "
                "ORDER BY effective_from DESC LIMIT 1",
                (exchange_id, at, at),
            ).fetchone()
            if row is not None:
                schema = json.loads(row[0], parse_float=Decimal)
                rates = []
                for side in ("maker", "taker"):
                    value = schema.get(side)
                    for override in (schema.get("symbols", {}).get(symbol), schema.get(symbol)):
                        if isinstance(override, dict) and override.get(side) is not None:
                            value = override[side]
                            break
                    rates.append(DEFAULT_FEE if value is None else Decimal(str(value)))
                return rates[0], rates[1]
        if exchange_id not in self._warned:
            self._warned.add(exchange_id)
            log.warning(
                "paper exchange: no fee schedule for exchange %s (settlement module off or no "
                "schedule in force); paper fills are charged no fee",
                exchange_id,
            )
        return DEFAULT_FEE, DEFAULT_FEE

    def _queue_ahead(self, order: dict[str, Any]) -> Decimal:
        book = _book_at(self.conn, order["listing"], order["created_at"], self.max_book_age)
        if book is None or book["time"] > order["created_at"]:
            return Decimal(0)
        side = book["bids"] if order["side"] == "BUY" else book["asks"]
        limit = Decimal(order["price"])
        return sum((q for p, q in _levels(side) if p == limit), Decimal(0))

    def _fills(self, order: dict[str, Any]) -> tuple[list[SimFill], bool]:
        """The order's fills from the stored data, and whether its remainder is canceled."""
        if order["order_type"] == "MARKET":
            book = _book_at(self.conn, order["listing"], order["created_at"], self.max_book_age)
            if book is None:
                return [], False
            fills = match_market(order, book)
            return fills, sum((f.quantity for f in fills), Decimal(0)) < order["quantity"]
        prints = dicts(
            self.conn,
            'SELECT "time", exchange_trade_id AS trade_id, price, quantity '
            'FROM market.trade_prints WHERE exchange_instrument_id = %s AND "time" > %s '
            'ORDER BY "time", exchange_trade_id',
            (order["listing"], order["created_at"]),
        )
        return match_limit(order, prints, self._queue_ahead(order)), False

    def run_once(self, account_id: int | None = None) -> PassReport:
        report = PassReport()
        for order in dicts(self.conn, _OPEN_ORDERS, {"account": account_id}):
            report.orders += 1
            fills, cancel_rest = self._fills(order)
            with self.conn.transaction():
                for f in fills:
                    maker, taker = self.fee_rates(
                        order["exchange_id"], order["exchange_symbol"], f.executed_at
                    )
                    rate = maker if f.maker else taker
                    result = apply_fill(
                        self.conn,
                        order["id"],
                        f.trade_id,
                        f.quantity,
                        f.price,
                        fee=f.quantity * f.price * rate,
                        fee_currency=order["quote"],
                        executed_at=f.executed_at,
                    )
                    if result.created:
                        report.fills += 1
                    else:
                        report.duplicates += 1
                if cancel_rest:
                    cancel_order(self.conn, order["id"])
                    report.canceled.append(order["id"])
        return report
