"""Retention by dropping whole partitions (rollups outlive their bars), partitions made
ahead, and the query API (polars, pandas, exports)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
import pytest

from tests.market.helpers import bars, direct_aggregate
from tradestore.db.errors import ValidationError
from tradestore.market import query, retention
from tradestore.market.ingest import ingest_candles, ingest_trades
from tradestore.market.rollups import refresh_rollups

JAN = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)


def test_retention_drops_whole_expired_partitions_and_keeps_rollups(
    conn: psycopg.Connection,
) -> None:
    rows = bars(3 * 1440, start=JAN + dt.timedelta(days=30))  # 31 Jan .. 2 Feb 2023
    # Retention applies to live data: these rows stand for a collector's (imported=False).
    report = ingest_candles(conn, rows, exchange="binance", symbol="BTC/USDT", imported=False)
    listing = report.listing_id
    ingest_trades(
        conn,
        [
            {
                "time": "2023-01-31T10:00:00Z",
                "trade_id": "1",
                "price": "1",
                "quantity": "1",
                "side": "buy",
            }
        ],
        listing_id=listing,
        imported=False,
    )
    retention.set_retention(conn, "candles", dt.timedelta(days=10))
    now = dt.datetime(2023, 3, 10, tzinfo=dt.UTC)  # January is past 10 days, February is not

    planned = retention.apply_retention(conn, now=now, dry_run=True)
    assert {(p.table, p.partition, p.dropped) for p in planned} == {
        ("market.candles", "market.candles_p202301", False),
        ("market.trade_prints", "market.trade_prints_p20230131", False),
    }
    assert len(query.candles(conn, listing_id=listing)) == len(rows)  # a dry run drops nothing

    dropped = retention.apply_retention(conn, now=now, table="candles")
    assert [(d.partition, d.upper_bound) for d in dropped] == [
        ("market.candles_p202301", dt.datetime(2023, 2, 1, tzinfo=dt.UTC))
    ]
    left = query.candles(conn, listing_id=listing)
    assert left["time"].min() == dt.datetime(2023, 2, 1, tzinfo=dt.UTC)  # whole partitions only
    # The rollups were refreshed before the bars went, and outlive them.
    daily = query.candles(conn, listing_id=listing, timeframe="1d")
    expected = direct_aggregate(rows, dt.timedelta(days=1))
    assert daily["time"].to_list()[0] == JAN + dt.timedelta(days=30)
    assert tuple(daily.row(0)[1:6]) == expected[JAN + dt.timedelta(days=30)]
    series = conn.execute(
        "SELECT first_time, retained_from FROM market.candle_series WHERE exchange_instrument_id = %s",
        (listing,),
    ).fetchone()
    assert series == (
        dt.datetime(2023, 2, 1, tzinfo=dt.UTC),
        dt.datetime(2023, 2, 1, tzinfo=dt.UTC),
    )
    # A bar arriving late for the dropped month does not rewrite its kept rollup bucket.
    late = ingest_candles(
        conn, bars(1, start=JAN + dt.timedelta(days=30, hours=5), seed=99), listing_id=listing
    )
    assert late.inserted == 1
    refresh_rollups(conn, listing)
    assert (
        tuple(query.candles(conn, listing_id=listing, timeframe="1d").row(0)[1:6])
        == expected[JAN + dt.timedelta(days=30)]
    )


def test_retention_settings(conn: psycopg.Connection) -> None:
    assert retention.parse_retention("30d") == dt.timedelta(days=30)
    assert retention.parse_retention("12w") == dt.timedelta(weeks=12)
    assert retention.parse_retention("none") is None
    with pytest.raises(ValidationError) as err:
        retention.parse_retention("a while")
    assert err.value.field == "retention"
    assert (
        retention.set_retention(conn, "rollups", dt.timedelta(days=365), timeframe="1h")
        == "market.candle_rollups_1h"
    )
    with pytest.raises(ValidationError, match="does not exist"):
        retention.set_retention(conn, "rollups", None, timeframe="7m")
    with pytest.raises(ValidationError) as err:
        retention.set_retention(conn, "candles", None, timeframe="1m")
    assert err.value.field == "timeframe"
    policies = {p["table"]: p for p in retention.retention_policies(conn)}
    assert policies["market.candle_rollups_1h"]["retention"] == dt.timedelta(days=365)
    assert policies["market.tickers"]["unit"] == "day"
    assert retention.premake_partitions(conn) == 0  # already made ahead at install


def test_query_frames_polars_pandas_and_exports(conn: psycopg.Connection, tmp_path: Path) -> None:
    rows = bars(180)
    rows[0]["open"] = rows[0]["high"] = "5.330000000000001e-05"
    rows[0]["low"] = rows[0]["close"] = "5.3e-05"
    ingest_candles(conn, rows, exchange="binance", symbol="ADA/BTC")
    frame = query.candles(conn, exchange="binance", symbol="ADA/BTC")
    assert frame.columns == [
        "time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "trade_count",
        "bar_count",
        "filled",
    ]
    assert isinstance(frame.schema["open"], pl.Decimal)
    assert frame["open"][0] == Decimal("0.00005330000000000001")
    hourly = query.candles(
        conn, exchange="binance", symbol="ADA/BTC", timeframe="1h", numeric="float"
    )
    assert hourly.schema["close"] == pl.Float64 and hourly.height == 3
    assert hourly["volume"].sum() == pytest.approx(float(sum(Decimal(r["volume"]) for r in rows)))

    pdf = query.candles_pandas(conn, exchange="binance", symbol="ADA/BTC", timeframe="1h")
    assert list(pdf.index) == hourly["time"].to_list()
    assert isinstance(pdf["close"].iloc[0], Decimal)

    csv = query.export(frame, tmp_path / "bars.csv")
    text = csv.read_text().splitlines()
    assert text[1].split(",")[1] == "0.00005330000000000001"  # exact, without padding zeros
    parquet = query.export(frame, tmp_path / "bars.parquet")
    assert pl.read_parquet(parquet)["open"][0] == Decimal("0.00005330000000000001")
    with pytest.raises(ValidationError):
        query.export(frame, tmp_path / "bars.xlsx")
    with pytest.raises(ValidationError) as err:
        query.candles(conn, exchange="binance", symbol="NOPE/BTC")
    assert err.value.field == "symbol"
