"""Equity and drawdown reports: PNG and offline interactive HTML under TRADESTORE_HOME,
found again by run id (made from the stored curve when missing)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from tests.strategy.market import SPOT_RULES, listing, load, random_walk, user, utc
from tradestore.strategy import store
from tradestore.strategy.reports import reports_dir, run_report, standalone_html, write_run_report
from tradestore.strategy.runner import BacktestRequest, run_backtest


def test_write_report_png_and_offline_html(tmp_path: Path) -> None:
    times = np.datetime64("2024-01-01") + np.arange(500).astype("timedelta64[h]")
    equity = 1000 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 500)))
    report = write_run_report(7, times, equity, 1000.0, directory=reports_dir(tmp_path))
    assert report.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = report.html_text()
    # No script from the network (plotly.js's own geo default URL is never fetched here).
    assert not re.search(r'<script[^>]+src="https?:', html)
    assert 'src="plotly.min.js"' in html
    vendored = report.html.parent / "plotly.min.js"
    assert vendored.stat().st_size > 1_000_000  # plotly.js itself, beside the page
    assert report.html.parent == tmp_path / "reports" / "backtests"


def test_run_report_by_id_regenerates_from_the_stored_curve(
    conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    user(conn)
    lid = listing(conn, "BTC/USDT", SPOT_RULES)
    load(conn, lid, random_walk(5000, seed=4))
    req = BacktestRequest(strategy="bollinger_breakout", symbols=("BTCUSDT",), timeframe="1m",
                          start=utc("2024-01-01"), end=utc("2024-01-05"),
                          fee_rate=Decimal("0.0005"), write_report=False)  # fmt: skip
    outcome = run_backtest(conn, req, home=tmp_path)
    assert outcome.report is None
    report = run_report(conn, outcome.run_id, home=tmp_path)
    assert report.png.exists() and report.html.exists()
    curve = store.get_run(conn, outcome.run_id)["equity_curve"]
    assert len(curve) <= store.MAX_EQUITY_POINTS
    assert curve[-1]["equity"] == float(outcome.result.equity[-1])
    page = standalone_html(conn, outcome.run_id)
    assert not re.search(r"<script[^>]+src=", page) and len(page) > 1_000_000  # inline


def test_equity_points_keep_the_deepest_drawdown() -> None:
    n = 100_000
    equity = np.linspace(100, 200, n)
    equity[54_321] = 50.0
    times = np.datetime64("2024-01-01") + np.arange(n).astype("timedelta64[m]")
    points = store.equity_points(times, equity, max_points=500)
    assert len(points) <= 500 and min(p["equity"] for p in points) == 50.0
    assert points[0]["t"] == "2024-01-01T00:00:00Z" and points[-1]["equity"] == 200.0


def test_reports_mark_the_trades_and_carry_a_metrics_box(
    conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    from tradestore.strategy.reports import _figure, _stored_curve, _stored_marks

    user(conn)
    lid = listing(conn, "BTC/USDT", SPOT_RULES)
    load(conn, lid, random_walk(3000, seed=4))
    req = BacktestRequest(strategy="sma_crossover", symbols=("BTCUSDT",), timeframe="1m",
                          start=utc("2024-01-01"), end=utc("2024-01-03"),
                          parameters={"fast": 5, "slow": 20}, write_report=False)  # fmt: skip
    outcome = run_backtest(conn, req, home=tmp_path)
    row = store.get_run(conn, outcome.run_id)
    marks = _stored_marks(row)
    trades = outcome.result.trades
    assert len(marks.entries) == len(trades.entry_t) > 0
    assert len(marks.exits) == int(trades.closed.sum())
    assert any(line.startswith("SQN ") and line != "SQN -" for line in marks.summary)
    assert any(line.startswith("Buy & Hold ") for line in marks.summary)
    times, equity = _stored_curve(row)
    fig = _figure(times, equity, 10000.0, "t", marks)
    names = {trace.name: len(trace.x) for trace in fig.data}
    assert names["entry"] == len(marks.entries) and names["exit"] == len(marks.exits)
    assert "SQN" in fig.layout.annotations[-1].text
    report = run_report(conn, outcome.run_id, home=tmp_path)
    plain = write_run_report(99, times, equity, 10000.0, directory=reports_dir(tmp_path / "plain"))
    assert report.png.read_bytes() != plain.png.read_bytes()
