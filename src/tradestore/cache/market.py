"""Market data through Redis: market:{symbol}:latest (5s), ticker:{symbol} and
orderbook:{symbol} (1s), candle:{symbol}:{tf}:{ts} (1h).

Writes are kept current by cache.invalidation (the database announces every committed
change and its keys are dropped); the `on_*` functions remain for code that wants to push
a value it committed itself. The readers take the key, and on a miss (expired, flushed,
dropped, Redis down) read PostgreSQL and put the key back. {symbol} is `<exchange>:<exchange symbol>` (see cache.keys).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

import psycopg

from tradestore.cache import keys
from tradestore.cache.client import Cache
from tradestore.cache.keys import Candle, MarketLatest, OrderBook, Ticker
from tradestore.db.query import one

__all__ = [
    "Lookup",
    "candle",
    "latest",
    "latest_lookup",
    "listing_id",
    "on_candle",
    "on_orderbook",
    "on_ticker",
    "orderbook",
    "ticker",
    "ticker_lookup",
]


def listing_id(conn: psycopg.Connection[Any], symbol: str) -> int | None:
    """The listing of a market symbol `<exchange>:<symbol>`, in any spelling
    market.resolve_listing understands (BTCUSDT, BTC/USDT, btcusdt)."""
    row = one(conn, "SELECT market.resolve_listing(NULL, %s) AS id", (symbol,))
    return None if row is None or row["id"] is None else int(row["id"])


# --------------------------------------------------------------------------- write-through
def on_candle(cache: Cache, value: Candle) -> None:
    """A bar was stored: cache it, and make it the latest unless a newer bar is cached."""
    keys.set_candle(cache, value)
    current = keys.get_market_latest(cache, value.symbol)
    if current is None or value.timestamp >= current.timestamp:
        keys.set_market_latest(
            cache,
            MarketLatest(
                symbol=value.symbol,
                timeframe=value.timeframe,
                timestamp=value.timestamp,
                open=value.open,
                high=value.high,
                low=value.low,
                close=value.close,
                volume=value.volume,
            ),
        )


def on_ticker(cache: Cache, value: Ticker) -> None:
    keys.set_ticker(cache, value)


def on_orderbook(cache: Cache, value: OrderBook) -> None:
    keys.set_orderbook(cache, value)


# --------------------------------------------------------------------------- read-through
T = TypeVar("T")


class Lookup(NamedTuple, Generic[T]):
    """A read-through result and whether Redis served it (False: read from PostgreSQL)."""

    value: T | None
    cached: bool


def _read_through(
    cache: Cache,
    conn: psycopg.Connection[Any],
    symbol: str,
    cached: T | None,
    query: str,
    extra: tuple[Any, ...],
    build: Callable[[dict[str, Any]], T],
    store: Callable[[Cache, T], None],
) -> Lookup[T]:
    """The cached value, or on a miss the row `query` reads for the symbol's listing
    (first parameter; `extra` follow), built into a value and put back in the cache."""
    cache.record(cached is not None)
    if cached is not None:
        return Lookup(cached, True)
    listing = listing_id(conn, symbol)
    if listing is None:
        return Lookup(None, False)
    row = one(conn, query, (listing, *extra))
    if row is None:
        return Lookup(None, False)
    value = build(row)
    store(cache, value)
    return Lookup(value, False)


def latest(cache: Cache, conn: psycopg.Connection[Any], symbol: str) -> MarketLatest | None:
    """The newest bar of the listing (any timeframe; the finest wins a tie)."""
    return latest_lookup(cache, conn, symbol).value


def latest_lookup(cache: Cache, conn: psycopg.Connection[Any], symbol: str) -> Lookup[MarketLatest]:
    """`latest`, saying whether Redis served it."""
    return _read_through(
        cache, conn, symbol, keys.get_market_latest(cache, symbol),
        """SELECT c.timeframe, c."time", c.open, c.high, c.low, c.close, c.volume
             FROM market.candle_series s
             JOIN market.candles c ON c.exchange_instrument_id = s.exchange_instrument_id
                                  AND c.timeframe = s.timeframe AND c."time" = s.last_time
            WHERE s.exchange_instrument_id = %s
            ORDER BY s.last_time + market.timeframe_interval(s.timeframe) DESC,
                     market.timeframe_interval(s.timeframe)
            LIMIT 1""",
        (),
        lambda row: MarketLatest(symbol=symbol, timestamp=row.pop("time"), **row),
        keys.set_market_latest,
    )  # fmt: skip


def ticker(cache: Cache, conn: psycopg.Connection[Any], symbol: str) -> Ticker | None:
    return ticker_lookup(cache, conn, symbol).value


def ticker_lookup(cache: Cache, conn: psycopg.Connection[Any], symbol: str) -> Lookup[Ticker]:
    """`ticker`, saying whether Redis served it."""
    return _read_through(
        cache, conn, symbol, keys.get_ticker(cache, symbol),
        """SELECT "time", opening_price, closing_price, high_price, low_price, volume, value,
                  change_24h, change_rate_24h, bid_price, ask_price
             FROM market.tickers WHERE exchange_instrument_id = %s
            ORDER BY "time" DESC LIMIT 1""",
        (),
        lambda row: Ticker(symbol=symbol, timestamp=row.pop("time"), **row),
        keys.set_ticker,
    )  # fmt: skip


def orderbook(cache: Cache, conn: psycopg.Connection[Any], symbol: str) -> OrderBook | None:
    return _read_through(
        cache, conn, symbol, keys.get_orderbook(cache, symbol),
        """SELECT "time", bids, asks, bid_volume, ask_volume, spread, mid_price
             FROM market.order_books WHERE exchange_instrument_id = %s
            ORDER BY "time" DESC LIMIT 1""",
        (),
        lambda row: OrderBook(symbol=symbol, timestamp=row.pop("time"), **row),
        keys.set_orderbook,
    ).value  # fmt: skip


def candle(
    cache: Cache, conn: psycopg.Connection[Any], symbol: str, timeframe: str, ts: dt.datetime
) -> Candle | None:
    """The bar of `timeframe` opening at `ts` (ingested or rolled up)."""
    return _read_through(
        cache, conn, symbol, keys.get_candle(cache, symbol, timeframe, ts),
        """SELECT open, high, low, close, volume FROM market.candles_all
            WHERE exchange_instrument_id = %s AND timeframe = %s AND "time" = %s""",
        (timeframe, ts),
        lambda row: Candle(symbol=symbol, timeframe=timeframe, timestamp=ts, **row),
        keys.set_candle,
    ).value  # fmt: skip
