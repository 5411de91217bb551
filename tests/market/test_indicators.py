"""Technical indicators: TA-Lib values, the VWAP and Keltner variants, incremental runs
equal to a full recompute (TA-Lib's unstable-period indicators included), corrections,
and the seed 002 long and seed 003 wide forms."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import polars as pl
import psycopg
import pytest
import talib

from tests.market.helpers import T0, bars, make_listing, real_file
from tradestore.market.indicators import INDICATOR_COLUMNS, update_indicators, warmup_bars
from tradestore.market.ingest import ingest_candles
from tradestore.market.query import indicators
from tradestore.market.rollups import refresh_rollups


def wide(conn: psycopg.Connection, listing: int, timeframe: str = "1m") -> pl.DataFrame:
    return indicators(conn, listing_id=listing, timeframe=timeframe)


def ohlcv(rows: list[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    return tuple(
        np.array([float(r[k]) for r in rows]) for k in ("open", "high", "low", "close", "volume")
    )


def assert_same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    """Equal to floating-point rounding (TA-Lib's running sums start at different bars)."""
    assert a["time"].to_list() == b["time"].to_list()
    for column in INDICATOR_COLUMNS:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        assert np.array_equal(np.isnan(x), np.isnan(y)), column
        scale = np.nanmax(np.abs(y)) if np.isfinite(y).any() else 1.0
        np.testing.assert_allclose(
            x, y, rtol=1e-9, atol=1e-12 * scale, equal_nan=True, err_msg=column
        )


def test_values_are_talibs_with_the_seed_parameters(conn: psycopg.Connection) -> None:
    rows = bars(3000)  # two UTC days and a bit
    report = ingest_candles(conn, rows, exchange="binance", symbol="BTC/USDT")
    result = update_indicators(conn, report.listing_id, "1m")
    assert (result.rows_written, result.full) == (3000, True)
    got = wide(conn, report.listing_id)
    _, h, lo, c, v = ohlcv(rows)

    def same(column: str, expected: np.ndarray) -> None:
        np.testing.assert_allclose(
            got[column].to_numpy(), expected, rtol=1e-12, equal_nan=True, err_msg=column
        )

    same("ma_200", talib.SMA(c, 200))
    same("ema_200", talib.EMA(c, 200))
    same("rsi_14", talib.RSI(c, 14))
    same("atr_14", talib.ATR(h, lo, c, 14))
    same("cci_20", talib.CCI(h, lo, c, 20))
    same("macd_signal", talib.MACD(c, 12, 26, 9)[1])
    same("stochastic_d", talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)[1])
    same("volume_ma_20", talib.SMA(v, 20))
    same("obv", talib.OBV(c, v))
    upper, middle, _ = talib.BBANDS(c, timeperiod=20, nbdevup=2, nbdevdn=2)
    same("bollinger_upper", upper)
    same("bollinger_middle", middle)
    # Older TA-Lib releases default BBANDS to 5 periods (0.8 to 20): 20 is passed explicitly.
    five = talib.BBANDS(c, timeperiod=5)[0]
    assert not np.allclose(got["bollinger_upper"].to_numpy()[30:], five[30:])
    # Keltner: EMA(20) +/- 2 x ATR(10).
    same("keltner_middle", talib.EMA(c, 20))
    same("keltner_upper", talib.EMA(c, 20) + 2 * talib.ATR(h, lo, c, 10))
    # VWAP resets every UTC day: the first bar of a day is its own typical price.
    typical = (h + lo + c) / 3
    vwap = got["vwap"].to_numpy()
    assert vwap[1440] == pytest.approx(typical[1440], rel=1e-12)
    assert vwap[1441] == pytest.approx(
        (typical[1440] * v[1440] + typical[1441] * v[1441]) / (v[1440] + v[1441]), rel=1e-12
    )
    assert vwap[1439] == pytest.approx(
        float(np.sum(typical[:1440] * v[:1440]) / np.sum(v[:1440])), rel=1e-9
    )


def test_incremental_runs_equal_a_full_recompute(conn: psycopg.Connection) -> None:
    rows = bars(4600, seed=3)
    listing = make_listing(conn)
    done = 0
    for size in (3100, 1, 17, 900, 582):  # the first run is full, the rest incremental
        ingest_candles(conn, rows[done : done + size], listing_id=listing)
        report = update_indicators(conn, listing, "1m")
        assert report.rows_written == size and report.full == (done == 0)
        done += size
    incremental = wide(conn, listing)
    assert update_indicators(conn, listing, "1m", full=True).rows_written == 4600
    assert_same(incremental, wide(conn, listing))


def test_a_short_warm_up_would_not_equal_a_full_recompute(conn: psycopg.Connection) -> None:
    """Why the warm-up is ~3,000 bars: with 100, EMA 200 (recursive) visibly drifts."""
    assert warmup_bars() == 2964
    rows = bars(2000, seed=4)
    listing = make_listing(conn)
    # Past a UTC day boundary, so the VWAP session does not stretch the window.
    ingest_candles(conn, rows[:1450], listing_id=listing)
    update_indicators(conn, listing, "1m")
    ingest_candles(conn, rows[1450:], listing_id=listing)
    update_indicators(conn, listing, "1m", warmup=100)
    short = wide(conn, listing)
    update_indicators(conn, listing, "1m", full=True)
    full = wide(conn, listing)
    drift = np.nanmax(np.abs(short["ema_200"].to_numpy() - full["ema_200"].to_numpy()))
    assert drift > 1e-6
    with pytest.raises(AssertionError):
        assert_same(short, full)


def test_a_corrected_bar_recomputes_from_it(conn: psycopg.Connection) -> None:
    rows = bars(800, seed=5)
    report = ingest_candles(conn, rows, exchange="binance", symbol="BTC/USDT")
    listing = report.listing_id
    update_indicators(conn, listing, "1m")
    fixed = dict(rows[500], close=rows[500]["high"])
    ingest_candles(conn, [fixed], listing_id=listing)
    assert conn.execute(
        "SELECT dirty_from FROM market.indicator_series WHERE exchange_instrument_id = %s",
        (listing,),
    ).fetchone()[0] == T0 + dt.timedelta(minutes=500)
    again = update_indicators(conn, listing, "1m")
    assert (again.full, again.rows_written, again.computed_from) == (
        False,
        300,
        T0 + dt.timedelta(minutes=500),
    )
    incremental = wide(conn, listing)
    update_indicators(conn, listing, "1m", full=True)
    assert_same(incremental, wide(conn, listing))


def test_long_and_wide_forms_and_rollup_timeframes(conn: psycopg.Connection) -> None:
    rows = bars(3 * 1440, seed=6)
    report = ingest_candles(conn, rows, exchange="bithumb", symbol="BTC_KRW")
    listing = report.listing_id
    update_indicators(conn, listing, "1m")
    hourly = update_indicators(conn, listing, "1h")  # refreshes the rollup first
    assert (hourly.rows_written, hourly.computed_through) == (72, T0 + dt.timedelta(hours=71))
    last = T0 + dt.timedelta(minutes=3 * 1440 - 1)
    long = conn.execute(
        "SELECT indicator_type, value, parameters FROM christmas.technical_indicators "
        "WHERE symbol = 'BTC_KRW' AND timeframe = '1m' AND \"timestamp\" = %s ORDER BY indicator_type",
        (last,),
    ).fetchall()
    assert len(long) == 28
    kinds = {k: (value, params) for k, value, params in long}
    assert isinstance(kinds["rsi_14"][0], Decimal)
    assert kinds["bollinger_upper"][1] == {"period": 20, "stddev": 2}
    assert kinds["vwap"][1] == {"anchor": "session"}
    frame = indicators(conn, listing_id=listing, timeframe="1m", form="long", start=last)
    assert frame.height == 28 and set(frame.columns) == {
        "time",
        "indicator_type",
        "value",
        "parameters",
    }
    candle = conn.execute(
        "SELECT rsi, macd, bollinger_middle, vwap FROM bithumb.candles "
        "WHERE symbol = 'BTC_KRW' AND timeframe = '1h' ORDER BY \"timestamp\" DESC LIMIT 1"
    ).fetchone()
    assert all(value is not None for value in candle)
    # The newest hourly indicators are for the last complete hour, not the live one.
    ingest_candles(conn, bars(30, start=T0 + dt.timedelta(days=3), seed=9), listing_id=listing)
    assert update_indicators(conn, listing, "1h").rows_written == 0
    refresh_rollups(conn, listing)


@pytest.mark.parametrize("name", ["binance_UNITTEST_BTC-1m.csv", "binance_XRP_ETH-1m.csv"])
def test_real_data_incremental_equals_full(conn: psycopg.Connection, name: str) -> None:
    path = real_file(name)
    frame = pl.read_csv(path, infer_schema=False)
    listing = make_listing(conn, symbol="REAL/X")
    cut = frame.height - 700
    ingest_candles(conn, frame.head(cut), listing_id=listing)
    update_indicators(conn, listing, "1m")
    for chunk in frame.tail(700).iter_slices(250):
        ingest_candles(conn, chunk, listing_id=listing)
        update_indicators(conn, listing, "1m")
    incremental = wide(conn, listing)
    assert incremental.height == frame.height
    update_indicators(conn, listing, "1m", full=True)
    assert_same(incremental, wide(conn, listing))


def test_rollup_indicators_on_old_data_make_their_own_partitions(conn: psycopg.Connection) -> None:
    start = dt.datetime(2019, 3, 1, tzinfo=dt.UTC)  # no partitions of 2019 exist beforehand
    report = ingest_candles(conn, bars(2 * 1440, start=start), exchange="binance", symbol="OLD/USD")
    hourly = update_indicators(conn, report.listing_id, "1h")
    assert (hourly.rows_written, hourly.full) == (48, True)
    assert wide(conn, report.listing_id, "1h")["time"].min() == start
