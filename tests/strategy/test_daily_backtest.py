"""Backtests on daily prices: a KRX stock with market.daily_prices and no candles runs at
1d on its ingested days, each a bar at 00:00 Seoul time, annualized by the XKRX calendar."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import exchange_calendars as xcals
import numpy as np
import psycopg
import pytest

from tests.strategy.market import random_walk, user, utc
from tradestore.db.errors import ValidationError
from tradestore.market.daily import ingest_daily_prices
from tradestore.market.reference import upsert_exchange, upsert_instrument
from tradestore.strategy import store
from tradestore.strategy.metrics import periods_per_year
from tradestore.strategy.runner import BacktestRequest, prepare, run_backtest

SESSIONS = 120


@pytest.fixture
def samsung(conn: psycopg.Connection[Any], tmp_path: Path) -> list[dt.date]:
    """005930 on KRX (preset KRX, Seoul time) with a daily file over the first XKRX
    sessions of 2024; returns the trade dates."""
    user(conn, "owner")
    exchange = upsert_exchange(conn, "krx", "Korea Exchange", kind="EQUITY", timezone="Asia/Seoul")
    stock = upsert_instrument(
        conn, "005930", "Samsung Electronics", asset_class="EQUITY", quote_currency="KRW",
        market_type="KOSPI",
    )  # fmt: skip
    conn.execute(
        "INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, "
        "preset) VALUES (%s, %s, '005930', 'KRX')",
        (exchange, stock),
    )
    sessions = xcals.get_calendar("XKRX").sessions_in_range("2024-01-01", "2024-12-31")
    days = [d.date() for d in sessions]
    days = days[:SESSIONS]
    bars = random_walk(SESSIONS, seed=5, start=70000, vol=0.02, tick=100)
    lines = ["date,ticker,open,high,low,close,volume"]
    for i, day in enumerate(days):
        ohlc = (bars[k][i] for k in ("open", "high", "low", "close"))
        lines.append(f"{day},005930,{','.join(str(int(v)) for v in ohlc)},{1000 + i}")
    path = tmp_path / "005930.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = ingest_daily_prices(conn, path)
    assert (report.written, report.rejected) == (SESSIONS, [])
    return days


def request(**kw: Any) -> BacktestRequest:
    base: dict[str, Any] = {
        "strategy": "sma_crossover",
        "symbols": ("005930",),
        "exchange": "krx",
        "timeframe": "1d",
        "start": utc("2024-01-01"),
        "end": utc("2024-12-31"),
        "parameters": {"fast": 5, "slow": 20},
        "initial_capital": Decimal(100_000_000),
        "position_size_pct": Decimal(100),
        "fee_rate": Decimal("0.00015"),
        "write_report": False,
    }
    base.update(kw)
    return BacktestRequest(**base)


def test_daily_prices_are_the_bars_of_a_1d_backtest(
    conn: psycopg.Connection[Any], samsung: list[dt.date]
) -> None:
    data = prepare(conn, request()).data
    assert data.n_bars == SESSIONS
    # Each trade date at 00:00 in Seoul (UTC+9): 15:00 UTC the day before.
    seoul = dt.timezone(dt.timedelta(hours=9))
    first = dt.datetime.combine(samsung[0], dt.time(), seoul).astimezone(dt.UTC)
    assert data.times[0] == np.datetime64(first.replace(tzinfo=None), "ns")
    closes = conn.execute(
        "SELECT close_price FROM market.daily_prices ORDER BY trade_date"
    ).fetchall()
    assert data.close[:, 0].tolist() == [float(c) for (c,) in closes]
    # The window is exact: a start after the first bar's time leaves that day out.
    later = prepare(conn, request(start=first + dt.timedelta(seconds=1))).data
    assert later.n_bars == SESSIONS - 1


def test_daily_backtest_trades_and_annualizes_by_xkrx(
    conn: psycopg.Connection[Any], samsung: list[dt.date]
) -> None:
    outcome = run_backtest(conn, request())
    assert outcome.metrics.total_trades > 0
    row = store.get_run(conn, outcome.run_id)
    assert row["status"] == "COMPLETED" and row["timeframe"] == "1d"
    conventions = row["results_data"]["conventions"]
    assert conventions["calendar"] == "XKRX"
    assert conventions["periods_per_year"] == periods_per_year("1d", "XKRX")
    assert 240 < conventions["periods_per_year"] < 250  # not crypto's 365


def test_other_timeframes_and_empty_ranges_are_refused(
    conn: psycopg.Connection[Any], samsung: list[dt.date]
) -> None:
    with pytest.raises(ValidationError) as err:
        prepare(conn, request(timeframe="1h"))
    assert err.value.field == "symbol" and "no 1h candles" in err.value.rule
    with pytest.raises(ValidationError) as err:
        prepare(conn, request(start=utc("2025-01-01"), end=utc("2025-03-01")))
    assert err.value.field == "symbol" and "no 1d candles or daily prices" in err.value.rule
