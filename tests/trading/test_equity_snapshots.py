"""Equity snapshots for every active account (the scheduler's start-of-day job): seed
003's portfolio daily_return, max_drawdown and sharpe_ratio come from the daily series,
and the daily-loss limit starts the day from the snapshot."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from decimal import Decimal
from pathlib import Path

from tests.trading.desk import Desk
from tradestore.config import load_settings
from tradestore.ops.scheduler import default_jobs
from tradestore.trading import apply_fill, submit_order
from tradestore.trading.valuation import snapshot_equity

DAY1 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def _value(desk: Desk) -> Decimal:
    return desk.conn.execute(
        "SELECT total_value FROM account.account_valuation(%s)", (desk.account_id,)
    ).fetchone()[0]


def test_portfolio_performance_from_daily_snapshots(desk: Desk) -> None:
    conn = desk.conn
    buy = submit_order(conn, desk.account_id, desk.btc, "BUY", "LIMIT", 10, 50000)
    apply_fill(conn, buy, "b1", 10, 50000)
    conn.execute("UPDATE account.accounts SET is_active = false WHERE id <> %s",
                 (desk.account_id,))  # fmt: skip
    values = []
    for day, price in enumerate(["50000", "55000", "44000", "46200", "47000"]):
        desk.set_price(desk.btc, price)
        assert snapshot_equity(conn, DAY1 + dt.timedelta(days=day)) == 1
        values.append(_value(desk))
        if day == 2:  # a runner's start later that day: not a day of its own
            desk.set_price(desk.btc, "1000")
            snapshot_equity(conn, DAY1 + dt.timedelta(days=day, hours=12))
    assert snapshot_equity(conn, DAY1) == 0  # taken already: kept

    rets = [float(b / a - 1) for a, b in itertools.pairwise(values)]
    peak, drawdown = values[0], Decimal(0)
    for v in values:
        peak = max(peak, v)
        drawdown = max(drawdown, 1 - v / peak)
    mean = sum(rets) / len(rets)
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / (len(rets) - 1))
    daily, dd, sharpe = conn.execute(
        "SELECT daily_return, max_drawdown, sharpe_ratio FROM bithumb.portfolios WHERE id = %s",
        (desk.account_id,),
    ).fetchone()
    assert math.isclose(float(daily), rets[-1], rel_tol=1e-12)
    assert math.isclose(float(dd), float(drawdown), rel_tol=1e-12)
    assert float(dd) > 0.1  # 55000 -> 44000 with 10 BTC held
    assert math.isclose(float(sharpe), mean / sd * math.sqrt(365), rel_tol=1e-9)


def test_the_day_starts_from_the_scheduled_snapshot(desk: Desk, db: str, tmp_path: Path) -> None:
    conn = desk.conn
    buy = submit_order(conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 50000)
    apply_fill(conn, buy, "b1", 1, 50000)
    desk.set_price(desk.btc, "50000")
    assert conn.execute("SELECT trade.daily_pnl(%s)", (desk.account_id,)).fetchone() == (None,)
    settings = load_settings(None, DATABASE_URL="postgresql://unused", TRADESTORE_HOME=tmp_path)
    job = {j.name: j for j in default_jobs(settings, embedded=False)}["equity_snapshots"]
    assert job.cadence.every == "day" and job.cadence.at == dt.timedelta(0)  # 00:00 UTC
    # db, not conn.info.dsn: the DSN psycopg reports carries no password
    assert job.run(db, settings) == {"accounts": 1}
    desk.set_price(desk.btc, "49000")
    assert conn.execute("SELECT trade.daily_pnl(%s)", (desk.account_id,)).fetchone() == (-1000,)
