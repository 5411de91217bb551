"""Gaps and their backfill from the exchange's REST history.

A gap is the span from the newest stored row of a feed (a candle series' last bar,
market.candle_series.last_time; a listing's newest trade print) to now. On start and
after every reconnect the collector pages through it (klines, trades) before it goes
live, so a dropped connection loses nothing the exchange still serves. Only closed bars
are taken: a bar whose end is after now is still forming and comes on a later poll.
Order books and tickers are snapshots: a missed one cannot be fetched afterwards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg

from tradestore.market.collect.feed import MarketSource
from tradestore.market.timeframes import timeframe_delta

PAGE = 1000
# Binance's aggTrades answers one hour from startTime at most; an empty page moves on
# by this much so a quiet hour does not end the backfill.
TRADES_WINDOW_MS = 3_600_000


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def last_candle(
    conn: psycopg.Connection[Any], listing_id: int, timeframe: str
) -> dt.datetime | None:
    row = conn.execute(
        "SELECT last_time FROM market.candle_series "
        "WHERE exchange_instrument_id = %s AND timeframe = %s",
        (listing_id, timeframe),
    ).fetchone()
    return None if row is None else row[0]


def last_trade(conn: psycopg.Connection[Any], listing_id: int) -> dt.datetime | None:
    row = conn.execute(
        'SELECT max("time") FROM market.trade_prints WHERE exchange_instrument_id = %s',
        (listing_id,),
    ).fetchone()
    return None if row is None else row[0]


def closed_bars(
    bars: list[dict[str, Any]], timeframe: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """The bars that have ended by now, each time once (a repeated bar keeps its last
    version: the exchange's newest word on it), oldest first."""
    width = timeframe_delta(timeframe)
    unique = {b["time"]: b for b in bars if b["time"] is not None and b["time"] + width <= now}
    return [unique[t] for t in sorted(unique)]


def candle_pages(
    source: MarketSource,
    symbol: str,
    timeframe: str,
    since: dt.datetime,
    now: dt.datetime,
    page: int = PAGE,
) -> Iterator[list[dict[str, Any]]]:
    """Closed bars from `since` up to now, a page at a time (empty pages are not yielded)."""
    width = timeframe_delta(timeframe)
    cursor = since
    while cursor + width <= now:
        bars = closed_bars(source.candles(symbol, timeframe, _ms(cursor), page), timeframe, now)
        bars = [b for b in bars if b["time"] >= cursor]
        if not bars:
            return
        yield bars
        cursor = bars[-1]["time"] + width


def trade_pages(
    source: MarketSource, symbol: str, since: dt.datetime, now: dt.datetime, page: int = PAGE
) -> Iterator[list[dict[str, Any]]]:
    """Trades from `since` (inclusive: the newest stored one comes again and is a
    duplicate the merge ignores) up to now, a page at a time.

    A full page continues from its last trade's time (trades already seen are skipped);
    a short page means the exchange had nothing more in its window, so the next page
    starts a window later."""
    cursor = _ms(since)
    end = _ms(now)
    seen: set[str] = set()
    while cursor <= end:
        trades = source.trades(symbol, cursor, page)
        fresh = [t for t in trades if t["trade_id"] not in seen and t["time"] is not None]
        if fresh:
            seen.update(t["trade_id"] for t in fresh)
            yield fresh
        if len(trades) >= page:
            last = _ms(trades[-1]["time"])
            cursor = last if fresh and last > cursor else cursor + 1
        else:
            cursor += TRADES_WINDOW_MS
