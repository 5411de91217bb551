"""Real Binance data (Freqtrade's test data, /work/shared/data): float noise stored as
written, gaps kept as gaps through rollups, re-ingest idempotent. Skipped when absent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import polars as pl
import psycopg
import pytest

from tests.market.helpers import real_file
from tradestore.market import query
from tradestore.market.ingest import ingest_candles, ingest_trades
from tradestore.market.rollups import refresh_rollups

CANDLE_FILES = {
    "binance_UNITTEST_BTC-1m.csv": "1m",
    "binance_XRP_ETH-1m.csv": "1m",
    "binance_ADA_BTC-5m.csv": "5m",
    "binance_ZEC_BTC-5m.csv": "5m",
    "binance_UNITTEST_BTC-30m.csv": "30m",
    "binance_XRP_USDT_USDT-1h-futures.csv": "1h",
}


@pytest.fixture
def conn(module_schema_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_schema_db, autocommit=True) as c:
        yield c


@pytest.mark.parametrize(("name", "timeframe"), CANDLE_FILES.items())
def test_real_candles_are_stored_exactly_as_written(
    conn: psycopg.Connection, name: str, timeframe: str
) -> None:
    path = real_file(name)
    text = pl.read_csv(path, infer_schema=False)
    symbol = name.removeprefix("binance_").removesuffix(".csv")
    report = ingest_candles(conn, path, exchange="binance", symbol=symbol, timeframe=timeframe)
    assert (report.inserted, report.rejected) == (text.height, [])
    rows = conn.execute(
        "SELECT open, high, low, close, volume FROM market.candles WHERE exchange_instrument_id = %s "
        'ORDER BY "time"',
        (report.listing_id,),
    ).fetchall()
    expected = [
        tuple(Decimal(v) for v in r)
        for r in text.select("open", "high", "low", "close", "volume").rows()
    ]
    assert rows == expected
    again = ingest_candles(conn, path, exchange="binance", symbol=symbol, timeframe=timeframe)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, text.height)


def test_float_noise_is_the_decimal_in_the_file(conn: psycopg.Connection) -> None:
    path = real_file("binance_ADA_BTC-5m.csv")
    assert "5.330000000000001e-05" in path.read_text().splitlines()[1]
    report = ingest_candles(conn, path, exchange="binance", symbol="ADA/BTC-exact", timeframe="5m")
    first = conn.execute(
        'SELECT open::text FROM market.candles WHERE exchange_instrument_id = %s ORDER BY "time" LIMIT 1',
        (report.listing_id,),
    ).fetchone()[0]
    assert first == "0.00005330000000000001"  # not 0.0000533000000000000073... (the float)


def test_gaps_in_real_5m_data_stay_gaps_in_rollups(conn: psycopg.Connection) -> None:
    path = real_file("binance_ADA_BTC-5m.csv")  # has a 2h50m hole
    text = pl.read_csv(path, infer_schema=False).with_columns(
        pl.col("time").str.to_datetime(time_zone="UTC"),
        *(pl.col(c).str.to_decimal(scale=25) for c in ("open", "high", "low", "close", "volume")),
    )
    times = text["time"]
    steps = times.diff().drop_nulls()
    assert steps.max() > dt.timedelta(hours=2)  # whole hours are missing
    report = ingest_candles(conn, path, exchange="binance", symbol="ADA/BTC-gaps", timeframe="5m")
    refresh_rollups(conn, report.listing_id)
    hourly = query.candles(conn, listing_id=report.listing_id, timeframe="1h")
    expected = (
        text.group_by(pl.col("time").dt.truncate("1h"), maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.len().alias("bars"),
        )
        .sort("time")
    )
    assert hourly["time"].to_list() == expected["time"].to_list()  # no invented hours
    for got, want in zip(hourly.iter_rows(named=True), expected.iter_rows(named=True), strict=True):
        assert (
            got["open"],
            got["high"],
            got["low"],
            got["close"],
            got["volume"],
            got["bar_count"],
        ) == (want["open"], want["high"], want["low"], want["close"], want["volume"], want["bars"])
    source = conn.execute(
        "SELECT source_timeframe FROM market.rollup_series WHERE exchange_instrument_id = %s AND timeframe = '1h'",
        (report.listing_id,),
    ).fetchone()[0]
    assert source == "5m"


def test_mark_price_candles_without_volume_are_rejected_row_by_row(
    conn: psycopg.Connection,
) -> None:
    path = real_file("binance_XRP_USDT_USDT-1h-mark.csv")
    report = ingest_candles(conn, path, exchange="binance", symbol="XRP/USDT:mark", timeframe="1h")
    assert report.inserted == 0 and len(report.rejected) == report.staged == 100
    assert {(r.field, r.rule) for r in report.rejected} == {("volume", "is required")}
    assert report.rejected[0].line == 2


def test_real_trade_prints(conn: psycopg.Connection) -> None:
    path = real_file("binance_XRP_ETH-trades.csv")
    text = pl.read_csv(path, infer_schema=False)
    report = ingest_trades(conn, path, exchange="binance", symbol="XRP/ETH-trades")
    assert (report.inserted, report.rejected) == (text.height, [])
    total = conn.execute(
        "SELECT sum(quantity), sum(price * quantity) FROM market.trade_prints WHERE exchange_instrument_id = %s",
        (report.listing_id,),
    ).fetchone()
    assert total[0] == sum(Decimal(v) for v in text["amount"])
    assert (
        ingest_trades(conn, path, exchange="binance", symbol="XRP/ETH-trades").unchanged
        == text.height
    )
