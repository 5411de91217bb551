"""Candles and listings for the engine, read from the canonical tables.

market.candles is read with one query per run: each listing comes back as one row whose
columns are whole arrays in PostgreSQL's binary format (array_send), which numpy reads
without a Python object per bar. Numeric prices become the nearest double (a price with up
to 15 significant digits comes back as itself through `to_decimal`). Bars of several
symbols are aligned on the union of their times.

A `1d` run on a listing with neither 1d candles nor bars a rollup can serve as 1d reads
its instrument's daily prices (market.daily_prices, seed 004): each trade date becomes a
bar at 00:00 of that date in the exchange's timezone (market.exchanges.timezone), the
start of its day as a candle's time is the start of its bucket.

Perpetual listings also get their funding times in the range (market.funding_rates, with
the mark price market.settle_funding would use) when the settlement module is installed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg

from tradestore.db.errors import ValidationError
from tradestore.strategy.fees import fee_rates
from tradestore.strategy.metrics import timeframe_minutes
from tradestore.strategy.model import Funding, Instrument, MarketData
from tradestore.strategy.rules import parse_rules

__all__ = ["load_market_data", "resolve_instruments"]

_LISTING = """
SELECT ei.id, ei.exchange_symbol, i.symbol, e.code, e.kind, i.asset_class,
       market.trading_rules_at(ei.id, %(at)s)::text
  FROM market.exchange_instruments ei
  JOIN market.instruments i ON i.id = ei.instrument_id
  JOIN market.exchanges e ON e.id = ei.exchange_id
 WHERE (ei.exchange_symbol = %(symbol)s OR i.symbol = %(symbol)s)
   AND (%(exchange)s::text IS NULL OR e.code = %(exchange)s)
 ORDER BY e.code, ei.id
"""

# One row per listing, each column one array in PostgreSQL's binary array format
# (array_send): a stream of COPY rows would cost a Python call per bar on the client.
_COLUMNS = """array_send(array_agg("time" ORDER BY "time")),
       array_send(array_agg(open::float8 ORDER BY "time")),
       array_send(array_agg(high::float8 ORDER BY "time")),
       array_send(array_agg(low::float8 ORDER BY "time")),
       array_send(array_agg(close::float8 ORDER BY "time")),
       array_send(array_agg(volume::float8 ORDER BY "time"))"""
_CANDLES = f"""
SELECT exchange_instrument_id, {_COLUMNS}
  FROM market.candles
 WHERE exchange_instrument_id = ANY(%s) AND timeframe = %s AND "time" >= %s AND "time" <= %s
 GROUP BY exchange_instrument_id
"""
# A timeframe not ingested for a listing is read from the market module's rollups
# (market.candles_between: materialized buckets plus the live tail), when it is installed.
_ROLLUP_FN = "market.candles_between(bigint,text,timestamptz,timestamptz,boolean)"
_ROLLUP = f"""
SELECT %s::bigint, {_COLUMNS}
  FROM market.candles_between(%s, %s, %s, %s, false)
HAVING count(*) > 0
"""
# Daily prices as 1d bars: trade_date at 00:00 in the exchange's timezone; a day stored
# with the close only (004 allows NULL open/high/low) is a flat bar at the close. The
# trade_date range narrows the index scan, the time test is the exact [start, end].
_DAILY = f"""
SELECT b.listing, {_COLUMNS}
  FROM (SELECT ei.id AS listing,
               d.trade_date::timestamp AT TIME ZONE x.timezone AS "time",
               coalesce(d.open_price, d.close_price) AS open,
               coalesce(d.high_price, greatest(d.open_price, d.close_price)) AS high,
               coalesce(d.low_price, least(d.open_price, d.close_price)) AS low,
               d.close_price AS close, d.volume
          FROM market.exchange_instruments ei
          JOIN market.exchanges x ON x.id = ei.exchange_id
          JOIN market.daily_prices d ON d.stock_id = ei.instrument_id
         WHERE ei.id = ANY(%(ids)s)
           AND d.trade_date BETWEEN (%(start)s AT TIME ZONE x.timezone)::date
                                AND (%(end)s AT TIME ZONE x.timezone)::date) b
 WHERE b."time" >= %(start)s AND b."time" <= %(end)s
 GROUP BY b.listing
"""
DAILY_TIMEFRAME = "1d"
_NAMES = ("time", "open", "high", "low", "close", "volume")
# Binary array: ndim, has-null flag, element type, (length, lower bound) per dimension,
# then (length, value) per element; big-endian. timestamptz counts microseconds from
# 2000-01-01 UTC.
_ARRAY_HEADER = 20
_ELEMENT = {"time": np.dtype([("len", ">i4"), ("v", ">i8")]),
            "float": np.dtype([("len", ">i4"), ("v", ">f8")])}  # fmt: skip
_PG_EPOCH_US = 946_684_800_000_000


def resolve_instruments(
    conn: psycopg.Connection[Any],
    symbols: Sequence[str],
    *,
    exchange: str | None = None,
    at: dt.datetime | None = None,
) -> list[Instrument]:
    """Listings named by exchange symbol ('BTCUSDT') or instrument symbol ('BTC/USDT'),
    with the trading rules in force at `at` (the backtest's start)."""
    if not symbols:
        raise ValidationError("symbol", "at least one symbol is required", "")
    out: list[Instrument] = []
    for symbol in symbols:
        rows = conn.execute(
            _LISTING, {"symbol": symbol, "exchange": exchange, "at": at or dt.datetime.now(dt.UTC)}
        ).fetchall()
        if not rows:
            where = f" on exchange {exchange}" if exchange else ""
            raise ValidationError("symbol", f"must name a listing{where}", symbol)
        if len(rows) > 1:
            codes = ", ".join(sorted({r[3] for r in rows}))
            raise ValidationError(
                "symbol", f"is listed on several exchanges ({codes}); name the exchange", symbol
            )
        lid, ex_symbol, _global, code, kind, asset_class, rules = rows[0]
        if any(i.listing_id == lid for i in out):
            raise ValidationError("symbol", "is given twice", symbol)
        out.append(
            Instrument(
                listing_id=int(lid),
                symbol=ex_symbol,
                exchange=code,
                rules=parse_rules(rules),
                derivative=asset_class in ("FUTURE", "PERPETUAL"),
                exchange_kind=kind,
                perpetual=asset_class == "PERPETUAL",
            )
        )
    return out


# The funding times of a listing in a range, each with the mark price settle_funding books
# it at (NULL when no mark bar covers it).
_FUNDING = """
SELECT funding_time, funding_rate, market.mark_price_at(exchange_instrument_id, funding_time)
  FROM market.funding_rates
 WHERE exchange_instrument_id = %s AND funding_time >= %s AND funding_time <= %s
 ORDER BY funding_time
"""


def load_funding(
    conn: psycopg.Connection[Any],
    instruments: list[Instrument],
    start: dt.datetime,
    end: dt.datetime,
) -> list[list[Funding]]:
    """Per instrument, the funding times of a perpetual in [start, end] with their rate and
    mark price (empty lists without the settlement module). A funding time no mark price
    covers is refused: the books would pay it once the mark is there, so a backtest
    without it would not show what the books do."""
    out: list[list[Funding]] = [[] for _ in instruments]
    row = conn.execute("SELECT to_regclass('market.funding_rates') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return out
    for s, inst in enumerate(instruments):
        if not inst.perpetual:
            continue
        for at, rate, mark in conn.execute(_FUNDING, (inst.listing_id, start, end)).fetchall():
            if mark is None:
                raise ValidationError(
                    "mark_price",
                    "no mark price bar covers the funding time (ingest mark-prices)",
                    f"{inst.symbol} at {at.isoformat()}",
                )
            stamp = np.datetime64(at.astimezone(dt.UTC).replace(tzinfo=None), "ns")
            out[s].append(Funding(stamp, rate, mark))
    return out


def _has_rollups(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regprocedure(%s) IS NOT NULL", (_ROLLUP_FN,)).fetchone()
    return bool(row and row[0])


def _array(data: bytes, kind: str) -> np.ndarray:
    if int.from_bytes(data[0:4], "big") != 1 or int.from_bytes(data[4:8], "big") != 0:
        raise RuntimeError("expected a one-dimensional array without NULLs")
    elements = np.frombuffer(data, dtype=_ELEMENT[kind], offset=_ARRAY_HEADER)
    return elements["v"].astype(np.int64 if kind == "time" else np.float64)


def _read(
    conn: psycopg.Connection[Any], query: str, params: Sequence[Any] | dict[str, Any]
) -> dict[int, dict[str, np.ndarray]]:
    """{listing: {"time": epoch microseconds, "open": ..., ...}} of the query's rows."""
    out: dict[int, dict[str, np.ndarray]] = {}
    for row in conn.execute(query, params, binary=True).fetchall():
        series = {
            name: _array(bytes(data), "time" if name == "time" else "float")
            for name, data in zip(_NAMES, row[1:], strict=True)
        }
        series["time"] = series["time"] + _PG_EPOCH_US
        out[int(row[0])] = series
    return out


def load_market_data(
    conn: psycopg.Connection[Any],
    instruments: list[Instrument],
    timeframe: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    fee_rate: Any = None,
) -> tuple[MarketData, dict[str, str]]:
    """Candles of the instruments in [start, end] (for 1d, else daily prices), aligned,
    with the fee of every bar. Returns the data and where each symbol's fee came from."""
    timeframe_minutes(timeframe)
    if end <= start:
        raise ValidationError("end", "must be after start", end.isoformat())
    found = _read(conn, _CANDLES, ([i.listing_id for i in instruments], timeframe, start, end))
    missing = [i.listing_id for i in instruments if i.listing_id not in found]
    if missing and _has_rollups(conn):
        until = end + dt.timedelta(microseconds=1)  # candles_between's end is exclusive
        for lid in missing:
            found.update(_read(conn, _ROLLUP, (lid, lid, timeframe, start, until)))
    missing = [i.listing_id for i in instruments if i.listing_id not in found]
    if missing and timeframe == DAILY_TIMEFRAME:
        found.update(_read(conn, _DAILY, {"ids": missing, "start": start, "end": end}))
    for inst in instruments:
        if inst.listing_id not in found:
            what = "candles or daily prices" if timeframe == DAILY_TIMEFRAME else "candles"
            raise ValidationError(
                "symbol",
                f"has no {timeframe} {what} between {start.isoformat()} and {end.isoformat()}",
                inst.symbol,
            )
    series = [found[i.listing_id] for i in instruments]
    if len(series) == 1:
        times = series[0]["time"]  # sorted and unique: the key is (listing, timeframe, time)
    else:
        times = np.unique(np.concatenate([x["time"] for x in series]))
    n, m = len(times), len(instruments)
    cols = {k: np.full((n, m), np.nan) for k in _NAMES[1:]}
    for s, x in enumerate(series):
        at = np.searchsorted(times, x["time"])
        for key, arr in cols.items():
            arr[at, s] = x[key]
    stamps = (times * 1000).astype("datetime64[ns]")
    rates, sources = fee_rates(conn, instruments, stamps, fee_rate)
    return (
        MarketData(
            timeframe=timeframe,
            times=stamps,
            instruments=instruments,
            open=cols["open"],
            high=cols["high"],
            low=cols["low"],
            close=cols["close"],
            volume=cols["volume"],
            fee_rates=rates,
            funding=load_funding(conn, instruments, start, end),
        ),
        sources,
    )
