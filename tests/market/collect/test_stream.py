"""The collector over the websocket (ccxt.pro against the loopback fake Binance's streams):
live bars and prints stored, a dropped websocket with a gap backfilled over REST, a silent
stream's stale alert, books and tickers, and the REST fallback."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.market.collect.conftest import T0, Clock, add_minutes, ms
from tests.support.fake_exchange import FakeBinance
from tradestore.market.collect.collector import Collector, PassReport
from tradestore.market.collect.feed import FeedSpec, MarketSource
from tradestore.market.collect.stream import StreamSource

CANDLES = FeedSpec("binance", "BTC/USDT", "candles", timeframe="1m")
TRADES = FeedSpec("binance", "BTC/USDT", "trades")
BOOK = FeedSpec("binance", "BTC/USDT", "orderbook", depth=2)
TICKER = FeedSpec("binance", "BTC/USDT", "ticker")
KLINE = "btcusdt@kline_1m"
AGG = "btcusdt@aggTrade"


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    server = FakeBinance().serve().serve_ws()
    yield server
    server.close()


def streaming(conn: Any, fake: FakeBinance, clock: Clock, *specs: FeedSpec) -> Collector:
    assert fake.ws is not None
    stream = StreamSource("binance", ws_url=fake.ws.url, base_url=fake.url, backoff_s=0.05)
    c = Collector(conn, MarketSource("binance", fake.url), specs, clock=clock, stream=stream)
    c.start()
    return c


def pump(
    c: Collector, done: Callable[[PassReport], bool], timeout: float = 15.0
) -> list[PassReport]:
    """Passes until `done` holds for one (the stream's thread delivers in between)."""
    reports = []
    deadline = time.monotonic() + timeout
    while True:
        reports.append(c.run_once())
        if done(reports[-1]):
            return reports
        if time.monotonic() > deadline:
            raise AssertionError(f"not done after {timeout} s: {reports[-3:]}")
        time.sleep(0.01)


def count(conn: psycopg.Connection[Any], sql: str) -> int:
    return int(conn.execute(sql).fetchone()[0])


def bar_times(conn: psycopg.Connection[Any]) -> list[dt.datetime]:
    return [r[0] for r in conn.execute("SELECT time FROM market.candles ORDER BY time")]


def test_bars_and_prints_arrive_over_the_websocket(
    conn: psycopg.Connection[Any], fake: FakeBinance, clock: Clock
) -> None:
    assert fake.ws is not None
    add_minutes(fake, T0, 10)
    fake.add_print("BTCUSDT", ms(T0 + dt.timedelta(minutes=5)), "105.5", "0.25")
    clock.now = T0 + dt.timedelta(minutes=10, seconds=5)
    c = streaming(conn, fake, clock, CANDLES, TRADES)
    assert all(f.streamed for f in c.feeds)
    fake.ws.wait_subscribed(KLINE)
    fake.ws.wait_subscribed(AGG)

    # The first messages: the forming bar and a print. The gap comes first, over REST.
    add_minutes(fake, T0 + dt.timedelta(minutes=10), 1)
    assert fake.ws.push_kline("BTCUSDT", ms(T0 + dt.timedelta(minutes=10)), closed=False) == 1
    live = fake.add_print("BTCUSDT", ms(T0 + dt.timedelta(minutes=10, seconds=2)), "110", "1")
    assert fake.ws.push_print("BTCUSDT", live) == 1
    reports = pump(c, lambda r: all(f.connected for f in c.feeds) and not c.sink.pending)
    assert sum(r.backfilled.get(CANDLES.key, 0) for r in reports) == 10
    assert bar_times(conn) == [T0 + dt.timedelta(minutes=i) for i in range(10)]
    assert count(conn, "SELECT count(*) FROM market.trade_prints") == 2
    klines_polled = len(fake.calls("GET", "/api/v3/klines"))

    # Live: the bar's final update, then the next bar begins: stored, no REST call.
    fake.add_bar("BTCUSDT", ms(T0 + dt.timedelta(minutes=10)), "109.5", "112", "108", "111.5", "7")
    fake.ws.push_kline("BTCUSDT", ms(T0 + dt.timedelta(minutes=10)), closed=True)
    add_minutes(fake, T0 + dt.timedelta(minutes=11), 1)
    fake.ws.push_kline("BTCUSDT", ms(T0 + dt.timedelta(minutes=11)), closed=False)
    later = fake.add_print("BTCUSDT", ms(T0 + dt.timedelta(minutes=11, seconds=1)), "111.25", "2")
    fake.ws.push_print("BTCUSDT", later)
    fake.ws.push_print("BTCUSDT", later)  # the same print twice: stored once
    pump(c, lambda r: count(conn, "SELECT count(*) FROM market.candles") == 11)
    pump(c, lambda r: count(conn, "SELECT count(*) FROM market.trade_prints") == 3)
    assert len(fake.calls("GET", "/api/v3/klines")) == klines_polled
    row = conn.execute(
        "SELECT open, high, low, close, volume FROM market.candles ORDER BY time DESC LIMIT 1"
    ).fetchone()
    assert list(row) == [Decimal(v) for v in ("109.5", "112", "108", "111.5", "7")]
    price, qty = conn.execute(
        "SELECT price, quantity FROM market.trade_prints ORDER BY time DESC LIMIT 1"
    ).fetchone()
    assert (price, qty) == (Decimal("111.25"), Decimal("2"))
    # Indicators follow streamed bars as they follow polled ones.
    assert count(conn, "SELECT count(*) FROM market.technical_indicators") >= 11
    c.close()


def test_dropped_websocket_gap_is_backfilled(
    conn: psycopg.Connection[Any], fake: FakeBinance, clock: Clock
) -> None:
    assert fake.ws is not None
    add_minutes(fake, T0, 10)
    clock.now = T0 + dt.timedelta(minutes=10, seconds=5)
    c = streaming(conn, fake, clock, CANDLES)
    fake.ws.wait_subscribed(KLINE)
    add_minutes(fake, T0 + dt.timedelta(minutes=10), 1)
    fake.ws.push_kline("BTCUSDT", ms(T0 + dt.timedelta(minutes=10)), closed=False)
    pump(c, lambda r: c.feeds[0].connected)
    assert bar_times(conn) == [T0 + dt.timedelta(minutes=i) for i in range(10)]
    state = c.feeds[0]

    # The connection drops and the exchange refuses new ones for a while; meanwhile
    # twenty bars are made (the forming one included) that the stream never brings.
    fake.ws.refuse()
    fake.ws.drop()
    reports = pump(c, lambda r: CANDLES.key in r.failed)
    assert not state.connected and state.reconnects == 1
    add_minutes(fake, T0 + dt.timedelta(minutes=10), 20)
    clock.now = T0 + dt.timedelta(minutes=30, seconds=5)
    # Reconnects back off while refused: each failed handshake is one more failure.
    pump(c, lambda r: state.failures >= 2)
    assert count(conn, "SELECT count(*) FROM market.candles") == 10

    # Back: CCXT reconnects and subscribes again; the first message triggers the backfill.
    connects = fake.ws.connects
    fake.ws.refuse(False)
    fake.ws.wait_for(lambda: fake.ws is not None and fake.ws.connects > connects)
    fake.ws.wait_subscribed(KLINE)
    add_minutes(fake, T0 + dt.timedelta(minutes=30), 1)
    fake.ws.push_kline("BTCUSDT", ms(T0 + dt.timedelta(minutes=30)), closed=False)
    reports = pump(c, lambda r: state.connected)
    assert sum(r.backfilled.get(CANDLES.key, 0) for r in reports) == 20
    assert state.reconnects == 1 and state.failures == 0
    # Nothing lost, nothing twice, and the gap's bars are the exchange's final ones.
    assert bar_times(conn) == [T0 + dt.timedelta(minutes=i) for i in range(30)]
    closes = [r[0] for r in conn.execute("SELECT close FROM market.candles ORDER BY time")]
    assert closes == [Decimal(100 + i) for i in range(30)]

    # And live again: the next bar over the stream.
    clock.now = T0 + dt.timedelta(minutes=31, seconds=1)
    add_minutes(fake, T0 + dt.timedelta(minutes=31), 1)
    fake.ws.push_kline("BTCUSDT", ms(T0 + dt.timedelta(minutes=31)), closed=False)
    pump(c, lambda r: count(conn, "SELECT count(*) FROM market.candles") == 31)
    c.close()


def test_silent_websocket_raises_the_stale_alert(
    conn: psycopg.Connection[Any], fake: FakeBinance, clock: Clock
) -> None:
    assert fake.ws is not None
    add_minutes(fake, T0, 5)
    clock.now = T0 + dt.timedelta(minutes=5)
    c = streaming(conn, fake, clock, CANDLES)
    fake.ws.wait_subscribed(KLINE)
    add_minutes(fake, T0 + dt.timedelta(minutes=5), 1)
    fake.ws.push_kline("BTCUSDT", ms(T0 + dt.timedelta(minutes=5)), closed=False)
    pump(c, lambda r: c.feeds[0].connected)

    # Connected, but the stream says nothing.
    clock.advance(60)
    assert c.run_once().stale == []
    clock.advance(61)
    assert c.run_once().stale == [CANDLES.key]
    clock.advance(30)
    assert c.run_once().stale == [CANDLES.key]
    alerts = conn.execute(
        "SELECT data->>'kind', dedupe_key, (data->>'connected')::boolean FROM system.alerts"
    ).fetchall()
    assert alerts == [("FEED_STALE", "feed-stale:binance:BTC/USDT:candles:1m", True)]

    # A message: no longer stale.
    fake.ws.push_kline("BTCUSDT", ms(T0 + dt.timedelta(minutes=5)), closed=True)
    pump(c, lambda r: r.stale == [])
    assert count(conn, "SELECT count(*) FROM system.alerts") == 1
    c.close()


def test_books_and_tickers_over_the_websocket(
    conn: psycopg.Connection[Any], fake: FakeBinance, clock: Clock
) -> None:
    assert fake.ws is not None
    fake.set_book("BTCUSDT", [("100", "1"), ("99", "2")], [("101", "1.5"), ("102", "3")])
    fake.set_ticker("BTCUSDT", "100.5", "100", "101", ms(T0))
    clock.now = T0 + dt.timedelta(seconds=1)
    c = streaming(conn, fake, clock, BOOK, TICKER)
    fake.ws.wait_subscribed("btcusdt@depth@100ms")
    fake.ws.wait_subscribed("btcusdt@ticker")
    # The book comes from the REST snapshot and the diffs after it (Binance's U/u rule).
    fake.ws.push_depth("BTCUSDT", [("100", "4")], [("101", "0")], ms(T0 + dt.timedelta(seconds=1)))
    fake.ws.push_ticker("BTCUSDT")
    pump(c, lambda r: count(conn, "SELECT count(*) FROM market.order_books") == 1)
    pump(c, lambda r: count(conn, "SELECT count(*) FROM market.tickers") == 1)
    bids, asks = conn.execute("SELECT bids, asks FROM market.order_books").fetchone()
    assert [(Decimal(str(p)), Decimal(str(q))) for p, q in _levels(bids)] == [
        (Decimal("100"), Decimal("4")),
        (Decimal("99"), Decimal("2")),
    ]
    assert [Decimal(str(p)) for p, _ in _levels(asks)] == [Decimal("102")]
    close = conn.execute("SELECT closing_price FROM market.tickers").fetchone()[0]
    assert close == Decimal("100.5")
    c.close()


def _levels(side: Any) -> list[tuple[Any, Any]]:
    """A stored book side as (price, quantity) pairs, whatever its stored shape."""
    out = []
    for level in side:
        if isinstance(level, dict):
            out.append((level.get("price"), level.get("quantity")))
        else:
            out.append((level[0], level[1]))
    return out


def test_rest_when_the_exchange_has_no_stream_or_it_is_forced(
    conn: psycopg.Connection[Any], fake: FakeBinance, clock: Clock
) -> None:
    # bithumb's ccxt.pro class has no watchOHLCV: its candles are polled, its trades streamed.
    assert not StreamSource("bithumb").has("candles")
    assert StreamSource("bithumb").has("trades")
    assert StreamSource("binance").has("candles")
    # Without a stream source (--rest), binance is polled as before.
    add_minutes(fake, T0, 3)
    clock.now = T0 + dt.timedelta(minutes=3)
    c = Collector(conn, MarketSource("binance", fake.url), [CANDLES], clock=clock)
    c.start()
    assert not c.feeds[0].streamed
    assert c.run_once().backfilled[CANDLES.key] == 3
    assert fake.ws is not None and fake.ws.connects == 0
    c.close()
