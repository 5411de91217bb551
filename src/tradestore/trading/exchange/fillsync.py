"""Fill sync: the exchange's trades into the books, and balances compared with them.

`sync_fills` polls the exchange's trades (CCXT `fetch_my_trades`) for each listing the
account routes orders on, from a cursor stored per account and listing
(trade.fill_sync_cursors), and records each page of trades with one call of
`trade.sync_fills` (one round trip and one transaction with the cursor's move), which
takes each trade through `trade.sync_fill` -> `apply_fill`, keyed by the exchange's
trade id: a trade seen twice, or trades in any
order, leave the books exactly as the trades once each in time order would. A fill of an
order whose send is still unresolved is deferred (the cursor stops before it) until the
router has recorded the exchange's order id. Fees come from the trade's fee (CCXT's
`fee` / `fees`; extra fee currencies become FEE ledger rows).

`FillFollower` keeps an account's books following the exchange: from its user stream
(CCXT `watchMyTrades`, ccxt.pro) where the exchange has one, REST polling (`sync_fills`)
otherwise. On every (re)connect of the stream it first catches up over REST from the
cursor, then records the streamed trades through the same `apply_trades` (so a trade both
streamed and polled, duplicated, or out of order is recorded once). Streamed trades move
the cursor only while nothing is deferred; a deferred one (its order's send unresolved)
makes the next pass catch up over REST again, and a REST pass also runs every
`rest_every_s` as a safety net.

`check_balances` compares the exchange's balances with the books (the reconciliation
of trading.reconcile, report only) and raises an alert on drift.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tradestore.db.errors import TradestoreError
from tradestore.db.query import dicts, translated
from tradestore.trading.exchange.accounts import RoutingAccount
from tradestore.trading.exchange.connector import Connector, NetworkError, to_decimal
from tradestore.trading.exchange.streams import CONNECTED, DISCONNECTED, StreamLoop
from tradestore.trading.reconcile import ReconciliationReport, parse_snapshot, reconcile

PAGE = 500
# Fills per transaction (one trade.sync_fills call). Not a whole page: every fill updates
# its order, position and balance rows, and the row versions one transaction makes
# cannot be pruned until it ends, so each lookup of a row updated n times in the same
# transaction walks n versions; a commit every CHUNK fills keeps that short while paying
# for one commit per CHUNK fills instead of one per fill.
CHUNK = 50

log = logging.getLogger(__name__)


@dataclass
class FillSyncReport:
    account_id: int
    applied: list[str] = field(default_factory=list)  # exchange trade ids recorded now
    duplicates: list[str] = field(default_factory=list)  # already in the books
    deferred: list[str] = field(default_factory=list)  # their order's send is unresolved
    symbols: list[str] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)  # orders the exchange closed on its own


def _fees(trade: dict[str, Any]) -> list[tuple[Decimal | None, str | None]]:
    """The trade's fees; (None, None) when it reports none (the fee schedule prices it)."""
    raw = trade.get("fees") or ([trade["fee"]] if trade.get("fee") else [])
    fees: list[tuple[Decimal | None, str | None]] = []
    for item in raw:
        cost = to_decimal(item.get("cost")) if isinstance(item, dict) else None
        if cost is not None:
            fees.append((cost, item.get("currency")))
    return fees or [(None, None)]


def time_order(trade: dict[str, Any]) -> tuple[int, str]:
    """The order trades are recorded in: exchange time, then trade id (a tie-break that
    is the same on every pass, so the cursor's trade is always the same one)."""
    return (trade.get("timestamp") or 0, str(trade.get("id")))


def _listings(conn: psycopg.Connection[Any], account_id: int) -> list[dict[str, Any]]:
    """Listings to poll: those the account routed orders on, or has a cursor for."""
    return dicts(
        conn,
        "SELECT DISTINCT ei.id, i.symbol, c.since FROM market.exchange_instruments ei "
        "JOIN market.instruments i ON i.id = ei.instrument_id "
        "LEFT JOIN trade.fill_sync_cursors c "
        "  ON c.account_id = %(a)s AND c.exchange_instrument_id = ei.id "
        "WHERE c.account_id IS NOT NULL OR EXISTS ("
        "  SELECT 1 FROM trade.order_routes r JOIN trade.orders o ON o.id = r.order_id "
        "   WHERE r.account_id = %(a)s AND o.exchange_instrument_id = ei.id "
        "     AND r.exchange_order_id IS NOT NULL) ORDER BY ei.id",
        {"a": account_id},
    )


def _first_sent(conn: psycopg.Connection[Any], account_id: int, listing_id: int) -> dt.datetime:
    rows = dicts(
        conn,
        "SELECT min(r.created_at) AS at FROM trade.order_routes r "
        "JOIN trade.orders o ON o.id = r.order_id "
        "WHERE r.account_id = %s AND o.exchange_instrument_id = %s",
        (account_id, listing_id),
    )
    # The exchange's clock may run behind ours: start a few minutes earlier.
    return (rows[0]["at"] or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)


def sync_fills(
    conn: psycopg.Connection[Any], account: RoutingAccount, connector: Connector
) -> FillSyncReport:
    """One REST polling pass over the account's listings (see module); on an exchange
    without a trades endpoint, one pass over its routed orders (`ordersync`)."""
    if not connector.exchange.has.get("fetchMyTrades"):
        from tradestore.trading.exchange.ordersync import sync_orders  # it builds on this module

        return sync_orders(conn, account, connector)
    report = FillSyncReport(account.account_id)
    for listing in _listings(conn, account.account_id):
        report.symbols.append(listing["symbol"])
        since = listing["since"] or _first_sent(conn, account.account_id, listing["id"])
        while True:
            trades = connector.fetch_my_trades(listing["symbol"], int(since.timestamp() * 1000))
            trades.sort(key=time_order)
            advanced = stopped = False
            for first in range(0, len(trades), CHUNK):
                # A chunk and the cursor's move in one transaction: a failure leaves neither.
                with translated(), conn.transaction():
                    newest, stopped = apply_trades(
                        conn, account, listing["id"], trades[first : first + CHUNK], report
                    )
                    if newest is not None and newest[0] > since:
                        _advance_cursor(conn, account.account_id, listing["id"], newest)
                        since, advanced = newest[0], True
                if stopped:
                    break
            if advanced and len(trades) >= PAGE and not stopped:
                continue  # a full page: there may be more
            break
    return report


def _advance_cursor(
    conn: psycopg.Connection[Any],
    account_id: int,
    listing_id: int,
    newest: tuple[dt.datetime, str],
) -> None:
    """Move the account's cursor on a listing forward to `newest` (never back)."""
    with translated():
        conn.execute(
            "INSERT INTO trade.fill_sync_cursors AS c "
            "(account_id, exchange_instrument_id, since, last_trade_id) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (account_id, exchange_instrument_id) "
            "DO UPDATE SET since = excluded.since, last_trade_id = excluded.last_trade_id, "
            "updated_at = now() WHERE c.since < excluded.since",
            (account_id, listing_id, newest[0], newest[1]),
        )


def _plain(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def apply_trades(
    conn: psycopg.Connection[Any],
    account: RoutingAccount,
    listing_id: int,
    trades: list[dict[str, Any]],
    report: FillSyncReport,
) -> tuple[tuple[dt.datetime, str] | None, bool]:
    """Record a page of trades in time order with one call of trade.sync_fills (each
    through trade.sync_fill -> apply_fill); returns the newest one recorded before any
    deferred one (the cursor) and whether a deferred one stopped it."""
    if not trades:
        return None, False
    page, times = [], {}
    for t in trades:
        trade_id = str(t["id"])
        at = dt.datetime.fromtimestamp(t["timestamp"] / 1000, dt.UTC)
        times[trade_id] = at
        (fee, fee_currency), *extra = _fees(t)
        page.append(
            {
                "trade_id": trade_id,
                "side": str(t["side"]).upper(),
                "quantity": _plain(to_decimal(t["amount"])),
                "price": _plain(to_decimal(t["price"])),
                "fee": _plain(fee),
                "fee_currency": fee_currency,
                "executed_at": at.isoformat(),
                "order_id": None if t.get("order") is None else str(t["order"]),
                "extra_fees": [{"cost": _plain(c), "currency": cur} for c, cur in extra],
            }
        )
    rows = conn.execute(
        "SELECT exchange_trade_id, created, deferred FROM trade.sync_fills(%s, %s, %s)",
        (account.account_id, listing_id, Jsonb(page)),
    ).fetchall()
    newest: tuple[dt.datetime, str] | None = None
    for trade_id, created, deferred in rows:
        if deferred:
            report.deferred.append(trade_id)
            return newest, True
        (report.applied if created else report.duplicates).append(trade_id)
        newest = (times[trade_id], trade_id)
    return newest, False


def check_balances(
    conn: psycopg.Connection[Any],
    account: RoutingAccount,
    connector: Connector,
    tolerance: Decimal = Decimal(0),
) -> ReconciliationReport:
    """Compare the exchange's balances with the books; on drift, an alert (one open alert
    per account: later ones share its dedupe key)."""
    balance = connector.fetch_balance()
    totals = {
        currency: str(to_decimal(value))
        for currency, value in (balance.get("total") or {}).items()
        if value is not None
    }
    snapshot = parse_snapshot({"balance": {"total": totals}})
    report = reconcile(conn, account.account_id, snapshot, tolerance=tolerance)
    drift = [d for d in report.differences if d.kind == "BALANCE_MISMATCH"]
    if drift:
        with translated():
            conn.execute(
                "INSERT INTO system.alerts (alert_type, severity, module, message, data, user_id, "
                "dedupe_key) VALUES ('WARNING', 'HIGH', 'exchange', %s, %s, %s, %s)",
                (
                    f"account {account.account_id}: balances differ from {account.exchange}: "
                    + ", ".join(f"{d.key} books {d.ours} exchange {d.theirs}" for d in drift),
                    Jsonb(
                        {
                            "kind": "BALANCE_DRIFT",
                            "account_id": account.account_id,
                            "differences": [
                                {"currency": d.key, "books": d.ours, "exchange": d.theirs}
                                for d in drift
                            ],
                        }
                    ),
                    account.user_id,
                    f"balance-drift:{account.account_id}",
                ),
            )
    return report


@dataclass
class FollowReport:
    """What one pass of a FillFollower did."""

    streaming: bool
    connected: bool
    caught_up: FillSyncReport | None = None  # a REST pass ran
    streamed: FillSyncReport | None = None  # trades from the user stream
    failed: list[str] = field(default_factory=list)


class FillFollower:
    """An account's fills as they happen (see module). `stream_exchange` is a ccxt.pro
    exchange with the account's credentials (`ConnectorFactory.stream_for_account`);
    without one, or when it has no `watchMyTrades`, every pass polls over REST."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        account: RoutingAccount,
        connector: Connector,
        stream_exchange: Any | None = None,
        *,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        rest_every_s: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn = conn
        self.account = account
        self.connector = connector
        self.rest_every_s = rest_every_s
        self.monotonic = monotonic
        self.key = f"fills:{account.account_id}"
        self.loop: StreamLoop | None = None
        self.connected = False
        self.catch_up_due = True
        self.reconnects = 0
        self._last_rest: float | None = None
        self._held: list[dict[str, Any]] = []
        self._listings: dict[str, int] = {}
        # The REST pass always works: the trade history (fetchMyTrades) or, on an exchange
        # without one (Upbit, Bithumb), the routed orders read back (ordersync).
        if stream_exchange is not None and stream_exchange.has.get("watchMyTrades"):
            self.loop = StreamLoop(
                stream_exchange, backoff_s=backoff_s, max_backoff_s=max_backoff_s
            )
            self._watch(stream_exchange)

    @property
    def streaming(self) -> bool:
        return self.loop is not None

    def _watch(self, ex: Any) -> None:
        assert self.loop is not None

        async def connect() -> None:
            # Subscribe before the REST catch-up, so no trade falls between the two.
            await ex.load_markets()
            if callable(getattr(ex, "authenticate", None)):
                await ex.authenticate()

        async def my_trades() -> Any:
            return [dict(t) for t in await ex.watch_my_trades()]

        self.loop.watch(self.key, my_trades, connect)

    def run_once(self) -> FollowReport:
        report = FollowReport(self.streaming, self.connected)
        if self.loop is None:
            report.caught_up = self._rest(report)
            return report
        for event in self.loop.drain():
            if event.kind == DISCONNECTED:
                if self.connected:
                    self.reconnects += 1
                self.connected = False
                report.failed.append(event.error or "disconnected")
                log.warning("fill stream %s: %s", self.key, event.error)
            elif event.kind == CONNECTED:
                # Connected again: the REST cursor first, then what the stream brings.
                self.connected = True
                self.catch_up_due = True
            else:
                self._held.extend(event.data)
        now = self.monotonic()
        periodic = self._last_rest is None or now - self._last_rest >= self.rest_every_s
        if self.connected and (self.catch_up_due or periodic):
            caught = self._rest(report)
            if caught is None:
                report.connected = self.connected
                return report  # live trades wait until the catch-up succeeds
            report.caught_up = caught
            self.catch_up_due = bool(caught.deferred)
        if self.connected and self._held:
            report.streamed = self._streamed()
        report.connected = self.connected
        return report

    def _rest(self, report: FollowReport) -> FillSyncReport | None:
        try:
            caught = sync_fills(self.conn, self.account, self.connector)
        except NetworkError as exc:
            report.failed.append(self.connector.scrub(exc))
            return None
        self._last_rest = self.monotonic()
        return caught

    def _streamed(self) -> FillSyncReport:
        """Record the held streamed trades, per listing in time order."""
        held, self._held = self._held, []
        out = FillSyncReport(self.account.account_id)
        by_listing: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for t in held:
            listing_id = self._listing(str(t.get("symbol")))
            if listing_id is not None:
                by_listing[listing_id].append(t)
        for listing_id, trades in by_listing.items():
            trades.sort(key=time_order)
            newest, stopped = apply_trades(self.conn, self.account, listing_id, trades, out)
            if stopped:
                # The rest of these trades come again over REST (the cursor, or the
                # order read back).
                self.catch_up_due = True
            if newest is not None and not self.catch_up_due:
                _advance_cursor(self.conn, self.account.account_id, listing_id, newest)
        return out

    def _listing(self, symbol: str) -> int | None:
        if symbol not in self._listings:
            for row in _listings(self.conn, self.account.account_id):
                self._listings[row["symbol"]] = row["id"]
        if symbol not in self._listings:
            from tradestore.market.listings import ensure_listing

            try:
                found = ensure_listing(self.conn, self.account.exchange, symbol, create=False)
            except TradestoreError:
                log.warning("fill stream %s: a trade of unknown %s skipped", self.key, symbol)
                return None
            self._listings[symbol] = found.id
        return self._listings[symbol]

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Passes until `stop` is set."""
        while not stop.is_set():
            self.run_once()
            stop.wait(interval_s)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()
            self.loop = None
