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

With a `StreamSource`, a feed the exchange streams (its ccxt.pro class has the watch
method) comes over the websocket instead of polls; the others are still polled. A
streamed feed is *disconnected* until its stream delivers; on that first message after
every (re)connect the collector backfills the gap over REST exactly as a poll does, and
only then stores the live messages (held until the backfill succeeds). A streamed bar is
stored once it has closed: its end has passed, or a later bar has arrived. Books and
tickers are stored as the newest snapshot per pass. Stream reconnects back off as polls
do (the stream loop's 1 s, 2 s, 4 s ...), and a stream silent for longer than twice its
interval raises the same FEED_STALE alert.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ccxt
import psycopg

from tradestore.cache.client import Cache
from tradestore.cache.keys import market_symbol
from tradestore.db.errors import TradestoreError
from tradestore.market.collect import backfill
from tradestore.market.collect.feed import (
    FeedSpec,
    MarketSource,
    book_row,
    ohlcv_rows,
    ticker_row,
    trade_rows,
)
from tradestore.market.collect.sink import FlushReport, Sink
from tradestore.market.listings import ensure_listing
from tradestore.market.timeframes import timeframe_delta
from tradestore.notify.alerts import raise_alert
from tradestore.trading.exchange.streams import CONNECTED, DISCONNECTED

if TYPE_CHECKING:
    from tradestore.market.collect.stream import StreamSource

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
    # Streamed feeds: the stream delivers (its gap still to backfill until `connected`),
    # live rows held until the gap is backfilled, and bars not closed yet by time.
    streamed: bool = False
    linked: bool = False
    held: list[dict[str, Any]] = field(default_factory=list)
    forming: dict[dt.datetime, dict[str, Any]] = field(default_factory=dict)


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
        stream: StreamSource | None = None,
    ) -> None:
        self.conn = conn
        self.source = source
        self.stream = stream
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
        if self.stream is not None:
            for feed in self.feeds:
                if self.stream.has(feed.spec.kind):
                    feed.streamed = True
                    self.stream.watch(feed.spec)

    def close(self) -> None:
        """Stop the streams and release the feeds' locks (also released when the session
        ends)."""
        if self.stream is not None:
            self.stream.close()
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
            if feed.streamed:
                continue
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
        if self.stream is not None:
            self._streams(report)
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

    # ------------------------------------------------------------------ streams
    def _streams(self, report: PassReport) -> None:
        """Take in what the streams brought; backfill the gap of each stream that
        (re)connected, then store the live rows of the connected ones."""
        assert self.stream is not None
        now = self.clock()
        by_key = {feed.spec.key: feed for feed in self.feeds}
        for event in self.stream.drain():
            feed = by_key[event.key]
            if event.kind == DISCONNECTED:
                if feed.connected:
                    feed.reconnects += 1
                feed.connected = feed.linked = False
                # Bars not closed yet come complete from the backfill after the reconnect.
                feed.forming.clear()
                feed.held.clear()
                feed.failures += 1
                report.failed[feed.spec.key] = (event.error or "").split(":", 1)[0]
                log.warning("collector: stream %s: %s", feed.spec.key, event.error)
            elif event.kind == CONNECTED:
                feed.linked = True
                feed.connected = False  # live again once the gap is backfilled
                feed.next_attempt_at = None
            else:
                feed.held.extend(self._stream_rows(feed, event.data, now))
                feed.last_data_at = now
                feed.stale_alerted = False
        for feed in self.feeds:
            if not feed.streamed:
                continue
            if feed.linked and not feed.connected:
                if feed.next_attempt_at is not None and now < feed.next_attempt_at:
                    continue
                try:
                    self._backfill(feed, now, report)
                except ccxt.NetworkError as exc:  # the REST history failed: try again
                    self._disconnected(feed, now, exc)
                    report.failed[feed.spec.key] = type(exc).__name__
                    continue
                feed.failures = 0
                feed.next_attempt_at = None
            if feed.connected:
                self._store_live(feed, now)

    def _stream_rows(self, feed: FeedState, data: Any, now: dt.datetime) -> list[dict[str, Any]]:
        kind = feed.spec.kind
        if kind == "candles":
            return ohlcv_rows(data)
        if kind == "trades":
            return trade_rows(data)
        if kind == "orderbook":
            return [book_row(data, feed.spec.depth or 10, now)]
        return [ticker_row(data, now)]

    def _backfill(self, feed: FeedState, now: dt.datetime, report: PassReport) -> None:
        """The gap of a stream that (re)connected, over REST, before any live row."""
        if feed.spec.kind == "candles":
            rows = self._candles(feed, now)
        elif feed.spec.kind == "trades":
            rows = self._trades(feed, now)
        else:
            rows = []  # snapshots: nothing to backfill
        self.sink.add(feed.spec.kind, feed.listing_id, rows, feed.spec.timeframe)
        feed.connected = True
        feed.backfilled += len(rows)
        report.backfilled[feed.spec.key] = len(rows)
        if rows:
            feed.last_data_at = now
            feed.stale_alerted = False

    def _store_live(self, feed: FeedState, now: dt.datetime) -> None:
        spec = feed.spec
        held, feed.held = feed.held, []
        if spec.kind == "candles":
            # Each update of a bar replaces the last; a bar is final once it has ended or
            # a later bar has begun.
            feed.forming.update((row["time"], row) for row in held if row["time"] is not None)
            if not feed.forming:
                return
            width = timeframe_delta(spec.timeframe or "1m")
            newest = max(feed.forming)
            done = sorted(t for t in feed.forming if t < newest or t + width <= now)
            rows = [feed.forming.pop(t) for t in done]
        elif spec.kind == "trades":
            rows = held
        else:
            rows = held[-1:]  # the newest snapshot of the pass
        self.sink.add(spec.kind, feed.listing_id, rows, spec.timeframe)

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
