"""The collector against a loopback fake Binance: backfill on start, stored rows, Redis
keys, indicators, a dropped connection with a gap, a stale feed, duplicate bars, and one
collector per feed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.market.collect.conftest import T0, Clock, add_minutes, ms
from tests.support.fake_exchange import FakeBinance
from tradestore.cache import keys
from tradestore.cache.client import Cache
from tradestore.db.connect import connect
from tradestore.market.collect.collector import Collector, FeedBusy
from tradestore.market.collect.feed import FeedSpec, MarketSource

CANDLES = FeedSpec("binance", "BTC/USDT", "candles", timeframe="1m")
TRADES = FeedSpec("binance", "BTC/USDT", "trades")
BOOK = FeedSpec("binance", "BTC/USDT", "orderbook", depth=10)
TICKER = FeedSpec("binance", "BTC/USDT", "ticker")


def collector(conn: Any, fake: FakeBinance, clock: Clock, *specs: FeedSpec, **kw: Any) -> Collector:
    c = Collector(conn, MarketSource("binance", fake.url), specs or (CANDLES,), clock=clock, **kw)
    c.start()
    return c


def count(conn: psycopg.Connection[Any], sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])


def test_start_backfills_and_stores_every_kind(
    conn: psycopg.Connection[Any], fake: FakeBinance, clock: Clock, redis_cache: Cache
) -> None:
    add_minutes(fake, T0, 30)
    fake.add_print("BTCUSDT", ms(T0 + dt.timedelta(minutes=5)), "105.5", "0.25")
    fake.add_print("BTCUSDT", ms(T0 + dt.timedelta(minutes=6)), "106.5", "0.5", buyer_maker=True)
    fake.set_book("BTCUSDT", [("129", "1"), ("128", "2")], [("129.5", "1.5"), ("130", "3")])
    fake.set_ticker("BTCUSDT", "129.2", "129", "129.5", ms(T0 + dt.timedelta(minutes=29)))
    clock.now = T0 + dt.timedelta(minutes=29, seconds=30)  # the 29th bar is still open
    c = Collector(
        conn,
        MarketSource("binance", fake.url),
        [CANDLES, TRADES, BOOK, TICKER],
        cache=redis_cache,
        clock=clock,
        lookback=dt.timedelta(hours=1),
    )
    c.start()
    report = c.run_once()
    assert report.failed == {}
    assert report.backfilled[CANDLES.key] == 29
    assert report.flush is not None and report.flush.rejected == 0
    assert count(conn, "SELECT count(*) FROM market.candles WHERE timeframe = '1m'") == 29
    assert count(conn, "SELECT count(*) FROM market.trade_prints") == 2
    assert count(conn, "SELECT count(*) FROM market.order_books") == 1
    assert count(conn, "SELECT count(*) FROM market.tickers") == 1
    # Live data: nothing recorded as imported history (retention applies to it).
    assert count(conn, "SELECT count(*) FROM market.imported_spans") == 0
    # Exact values; a print whose buyer was the maker is a sell.
    side, price = conn.execute(
        "SELECT side, price FROM market.trade_prints ORDER BY time DESC LIMIT 1"
    ).fetchone()
    assert (side, str(price)) == ("sell", "106.5")
    # Indicators for each closed bar (seed 003's candle columns come from these).
    assert (
        count(conn, "SELECT count(*) FROM market.technical_indicators WHERE timeframe = '1m'") == 29
    )
    sma = conn.execute(
        "SELECT ma_20 FROM market.technical_indicators WHERE timeframe = '1m' ORDER BY time DESC LIMIT 1"
    ).fetchone()[0]
    assert sma == pytest.approx(sum(100 + i for i in range(9, 29)) / 20)
    # Redis: the seeds' keys hold the newest values.
    book = keys.get_orderbook(redis_cache, "binance:BTC/USDT")
    assert book is not None and book.bids[0][0] == Decimal("129")
    assert book.spread == Decimal("0.5")
    ticker = keys.get_ticker(redis_cache, "binance:BTC/USDT")
    assert ticker is not None and ticker.closing_price == Decimal("129.2")
    latest = keys.get_market_latest(redis_cache, "binance:BTC/USDT")
    assert latest is not None and latest.timestamp == T0 + dt.timedelta(minutes=28)

    # The next minute closes: one new bar, its indicators, nothing else repeated.
    clock.advance(60)
    report = c.run_once()
    assert report.flush is not None and report.flush.stored["candles"] == 1
    assert report.flush.stored.get("trades", 0) == 0
    assert (
        count(conn, "SELECT count(*) FROM market.technical_indicators WHERE timeframe = '1m'") == 30
    )
    c.close()


def test_dropped_connection_backfills_the_gap(
    conn: psycopg.Connection[Any], fake: FakeBinance, clock: Clock
) -> None:
    add_minutes(fake, T0, 10)
    clock.now = T0 + dt.timedelta(minutes=10)
    c = collector(conn, fake, clock, CANDLES, TRADES)
    c.run_once()
    assert count(conn, "SELECT count(*) FROM market.candles") == 10

    # The connection drops; meanwhile the exchange goes on.
    fake.drop_next("GET", "/api/v3/klines")
    add_minutes(fake, T0 + dt.timedelta(minutes=10), 20)
    fake.add_print("BTCUSDT", ms(T0 + dt.timedelta(minutes=15)), "115", "1")
    clock.advance(60)
    report = c.run_once()
    assert CANDLES.key in report.failed
    state = c.feeds[0]
    assert not state.connected and state.next_attempt_at == clock.now + dt.timedelta(seconds=1)

    # Before the backoff ends the feed is not polled; after it, the gap comes first.
    report = c.run_once()
    assert CANDLES.key not in report.polled
    clock.advance(20 * 60)
    report = c.run_once()
    assert report.backfilled[CANDLES.key] == 20
    assert state.connected and state.reconnects == 1
    assert count(conn, "SELECT count(*) FROM market.candles") == 30
    assert count(conn, "SELECT count(*) FROM market.trade_prints") == 1
    # No bar missing, none twice.
    times = [r[0] for r in conn.execute("SELECT time FROM market.candles ORDER BY time")]
    assert times == [T0 + dt.timedelta(minutes=i) for i in range(30)]
    c.close()


def test_stale_feed_raises_one_alert(
    conn: psycopg.Connection[Any], fake: FakeBinance, clock: Clock
) -> None:
    add_minutes(fake, T0, 5)
    clock.now = T0 + dt.timedelta(minutes=5)
    c = collector(conn, fake, clock)
    c.run_once()
    clock.advance(60)  # one interval of silence: fine
    assert c.run_once().stale == []
    clock.advance(61)  # more than twice the 1m interval since the last bar
    assert c.run_once().stale == [CANDLES.key]
    clock.advance(60)
    assert c.run_once().stale == [CANDLES.key]
    alerts = conn.execute(
        "SELECT data->>'kind', severity, dedupe_key, message FROM system.alerts"
    ).fetchall()
    assert len(alerts) == 1
    assert alerts[0][:3] == ("FEED_STALE", "HIGH", "feed-stale:binance:BTC/USDT:candles:1m")
    assert "silent for 121 s" in alerts[0][3]
    # Data again: the feed is no longer stale.
    add_minutes(fake, T0 + dt.timedelta(minutes=5), 3)
    assert c.run_once().stale == []
    c.close()


def test_duplicate_bars_are_stored_once(
    conn: psycopg.Connection[Any], fake: FakeBinance, clock: Clock
) -> None:
    add_minutes(fake, T0, 5)
    fake.kline_feed = lambda bars: bars + bars[:3]  # the exchange repeats bars
    clock.now = T0 + dt.timedelta(minutes=5)
    c = collector(conn, fake, clock)
    report = c.run_once()
    assert report.flush is not None and report.flush.rejected == 0
    assert count(conn, "SELECT count(*) FROM market.candles") == 5
    # And the same bars again on the next poll change nothing.
    fake.kline_feed = lambda bars: [*bars, *fake.klines["BTCUSDT"]]
    clock.advance(1)
    report = c.run_once()
    assert report.flush is not None and report.flush.rejected == 0
    assert count(conn, "SELECT count(*) FROM market.candles") == 5
    c.close()


def test_one_collector_per_feed(
    conn: psycopg.Connection[Any], db: str, fake: FakeBinance, clock: Clock
) -> None:
    c = collector(conn, fake, clock)
    with connect(db, autocommit=True) as other:
        second = Collector(other, MarketSource("binance", fake.url), [TRADES, CANDLES], clock=clock)
        with pytest.raises(FeedBusy, match="binance:BTC/USDT:candles:1m"):
            second.start()
        # It let go of the feed it had taken before the refusal.
        third = collector(conn, fake, clock, TRADES)
        third.close()
        c.close()
        second.start()
        second.close()
