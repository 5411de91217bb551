"""The collector: polls its feeds, backfills gaps, stores through the sink, reconnects with
backoff and raises an alert for a feed that went silent.

One collector per feed, across processes and hosts: each feed is held by a PostgreSQL
session-level advisory lock (`pg_try_advisory_lock` on a 64-bit hash of the feed's key),
taken at start on the collector's own connection. A second collector for the same feed
is refused (`FeedBusy`); a collector that dies loses its session and its locks with it,
so another can take the feed over at once. Works against an external PostgreSQL.

A feed's life: at start it is *disconnected*, so its first poll backfills the gap since
its newest stored row; after that each poll brings what is new. A network error (CCXT's
NetworkError: a dropped connection, a timeout, a 5xx or 429) marks it disconnected
again and it is retried after 1 s, 2 s, 4 s ... up to `max_backoff_s`; the poll that
succeeds backfills the gap first. A feed that brought nothing new for longer than twice
its expected interval (a bar per timeframe, a trade a minute, a book or ticker per poll)
raises an alert (WARNING, HIGH, `data.kind` FEED_STALE, one dedupe key per feed); it is raised once per silence.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ccxt
import psycopg

from tradestore.cache.client import Cache
from tradestore.cache.keys import market_symbol
from tradestore.db.errors import TradestoreError
from tradestore.market.collect import backfill
from tradestore.market.collect.feed import FeedSpec, MarketSource
from tradestore.market.collect.sink import FlushReport, Sink
from tradestore.market.listings import ensure_listing
from tradestore.market.timeframes import timeframe_delta
from tradestore.notify.alerts import raise_alert

log = logging.getLogger(__name__)

STALE_FACTOR = 2.0


class FeedBusy(TradestoreError, RuntimeError):
    """Another collector holds this feed."""


def lock_key(feed_key: str) -> int:
    """The advisory lock of a feed: a signed 64-bit hash of its key."""
    digest = hashlib.sha256(b"tradestore.collect:" + feed_key.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class FeedState:
    spec: FeedSpec
    listing_id: int
    cache_symbol: str
    connected: bool = False
    failures: int = 0
    next_attempt_at: dt.datetime | None = None
    last_data_at: dt.datetime | None = None
    stale_alerted: bool = False
    reconnects: int = 0
    backfilled: int = 0


@dataclass
class PassReport:
    """What one pass over the feeds did."""

    polled: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    backfilled: dict[str, int] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    flush: FlushReport | None = None


class Collector:
    """Collects `specs` from `source` into the database behind `conn` (autocommit).

    `clock` is injectable (tests move time without waiting); `lookback` is how far back a
    feed with nothing stored starts."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        source: MarketSource,
        specs: Sequence[FeedSpec],
        *,
        cache: Cache | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
        lookback: dt.timedelta = dt.timedelta(hours=1),
        max_backoff_s: float = 60.0,
        indicators: bool = True,
    ) -> None:
        self.conn = conn
        self.source = source
        self.specs = list(specs)
        self.clock = clock
        self.lookback = lookback
        self.max_backoff_s = max_backoff_s
        self.feeds: list[FeedState] = []
        self.sink = Sink(conn, cache, indicators=indicators)
        self._locks: list[int] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Resolve (or create) each feed's listing and take its lock."""
        now = self.clock()
        for spec in self.specs:
            key = lock_key(spec.key)
            got = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if not (got and got[0]):
                self.close()
                raise FeedBusy(f"feed {spec.key} is held by another collector")
            self._locks.append(key)
            with self.conn.transaction():
                listing = ensure_listing(self.conn, spec.exchange, spec.symbol, create=True)
            exchange_symbol = self.conn.execute(
                "SELECT exchange_symbol FROM market.exchange_instruments WHERE id = %s",
                (listing.id,),
            ).fetchone()[0]  # type: ignore[index]
            symbol = market_symbol(spec.exchange, exchange_symbol)
            self.sink.cache_symbols[listing.id] = symbol
            self.feeds.append(FeedState(spec, listing.id, symbol, last_data_at=now))

    def close(self) -> None:
        """Release the feeds' locks (also released when the session ends)."""
        for key in self._locks:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        self._locks.clear()

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one pass
    def run_once(self) -> PassReport:
        """Poll every feed that is due, store what came, then look for silent feeds."""
        report = PassReport()
        for feed in self.feeds:
            now = self.clock()
            if feed.next_attempt_at is not None and now < feed.next_attempt_at:
                continue
            try:
                got = self._poll(feed, now, report)
            except ccxt.NetworkError as exc:
                self._disconnected(feed, now, exc)
                report.failed[feed.spec.key] = type(exc).__name__
                continue
            report.polled.append(feed.spec.key)
            feed.failures = 0
            feed.next_attempt_at = None
            if got:
                feed.last_data_at = now
                feed.stale_alerted = False
        report.flush = self.sink.flush()
        report.stale = self.check_stale()
        return report

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """Passes until `stop` is set."""
        while not stop.is_set():
            self.run_once()
            stop.wait(interval_s)

    def _disconnected(self, feed: FeedState, now: dt.datetime, exc: Exception) -> None:
        if feed.connected:
            feed.reconnects += 1
        feed.connected = False
        feed.failures += 1
        delay = min(self.max_backoff_s, 2.0 ** (feed.failures - 1))
        feed.next_attempt_at = now + dt.timedelta(seconds=delay)
        log.warning("collector: %s: %s; retrying in %.0f s", feed.spec.key, exc, delay)

    def check_stale(self) -> list[str]:
        """Raise FEED_STALE for each feed silent for longer than twice its interval."""
        now = self.clock()
        stale = []
        for feed in self.feeds:
            limit = dt.timedelta(seconds=feed.spec.expected_interval_s * STALE_FACTOR)
            if feed.last_data_at is None or now - feed.last_data_at <= limit:
                continue
            stale.append(feed.spec.key)
            if feed.stale_alerted:
                continue
            silent = (now - feed.last_data_at).total_seconds()
            with self.conn.transaction():
                raise_alert(
                    self.conn,
                    "HIGH",
                    f"market data feed {feed.spec.key} has been silent for {silent:.0f} s "
                    f"(expected every {feed.spec.expected_interval_s:.0f} s)",
                    module="collect",
                    alert_type="WARNING",
                    dedupe_key=f"feed-stale:{feed.spec.key}",
                    data={
                        "kind": "FEED_STALE",
                        "feed": feed.spec.key,
                        "silent_s": silent,
                        "connected": feed.connected,
                    },
                )
            feed.stale_alerted = True
        return stale

    # ------------------------------------------------------------------ polls
    def _poll(self, feed: FeedState, now: dt.datetime, report: PassReport) -> bool:
        """One poll; True when it brought new data. A disconnected feed backfills."""
        spec = feed.spec
        gap = not feed.connected
        if spec.kind == "candles":
            rows = self._candles(feed, now)
        elif spec.kind == "trades":
            rows = self._trades(feed, now)
        elif spec.kind == "orderbook":
            # Every snapshot is a message (a quiet book is still a live feed).
            rows = [self.source.order_book(spec.symbol, spec.depth or 10, now)]
        else:
            rows = [self.source.ticker(spec.symbol, now)]
        self.sink.add(spec.kind, feed.listing_id, rows, spec.timeframe)
        if gap:
            feed.connected = True
            feed.backfilled += len(rows)
            report.backfilled[spec.key] = len(rows)
        return bool(rows)

    def _candles(self, feed: FeedState, now: dt.datetime) -> list[dict[str, Any]]:
        tf = feed.spec.timeframe or "1m"
        width = timeframe_delta(tf)
        last = backfill.last_candle(self.conn, feed.listing_id, tf)
        since = last + width if last is not None else now - self.lookback
        rows: list[dict[str, Any]] = []
        for page in backfill.candle_pages(self.source, feed.spec.symbol, tf, since, now):
            rows.extend(page)
        return rows

    def _trades(self, feed: FeedState, now: dt.datetime) -> list[dict[str, Any]]:
        last = backfill.last_trade(self.conn, feed.listing_id)
        since = last if last is not None else now - self.lookback
        rows: list[dict[str, Any]] = []
        for page in backfill.trade_pages(self.source, feed.spec.symbol, since, now):
            rows.extend(page)
        if last is not None:  # the newest stored print comes again: not new
            stored = {
                r[0]
                for r in self.conn.execute(
                    "SELECT exchange_trade_id FROM market.trade_prints "
                    'WHERE exchange_instrument_id = %s AND "time" = %s',
                    (feed.listing_id, last),
                )
            }
            rows = [r for r in rows if r["trade_id"] not in stored]
        return rows
