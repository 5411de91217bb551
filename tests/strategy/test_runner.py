"""Backtests on stored candles, recorded in analytics.backtest_runs with the union of the
seeds' result fields, their execution log and their report."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from tests.strategy.market import SPOT_RULES, listing, load, random_walk, user, utc
from tradestore.db.errors import ValidationError
from tradestore.strategy import store
from tradestore.strategy.registry import create_strategy, get_strategy
from tradestore.strategy.runner import BacktestRequest, run_backtest


@pytest.fixture
def btc(conn: psycopg.Connection[Any]) -> int:
    user(conn, "owner")  # the only user: the owner of runs that name none
    lid = listing(conn, "BTC/USDT", SPOT_RULES)
    load(conn, lid, random_walk(3000, seed=11))
    return lid


def request(**kw: Any) -> BacktestRequest:
    base: dict[str, Any] = {
        "strategy": "sma_crossover",
        "symbols": ("BTCUSDT",),
        "timeframe": "1m",
        "start": utc("2024-01-01"),
        "end": utc("2024-01-03"),
        "parameters": {"fast": 5, "slow": 20},
        "position_size_pct": Decimal(100),
        "fee_rate": Decimal("0.001"),
    }
    base.update(kw)
    return BacktestRequest(**base)


def test_run_is_recorded_with_every_seed_field(
    conn: psycopg.Connection[Any], btc: int, tmp_path: Path
) -> None:
    outcome = run_backtest(conn, request(), home=tmp_path)
    row = store.get_run(conn, outcome.run_id)
    assert row["status"] == "COMPLETED"
    assert row["symbols"] == ["BTCUSDT"]
    owner = conn.execute("SELECT id FROM account.users WHERE username = 'owner'").fetchone()[0]
    assert row["user_id"] == owner  # no user named: the only user owns it
    assert row["total_trades"] == outcome.metrics.total_trades > 0
    assert row["final_value"] == outcome.result.final_value
    assert row["winning_trades"] + row["losing_trades"] <= row["total_trades"]
    trades = row["trade_history"]
    assert len([t for t in trades if t["status"] == "CLOSED"]) == row["total_trades"]
    assert row["monthly_returns"].keys() == {"2024-01"}
    assert row["results_data"]["conventions"]["periods_per_year"] == 525600
    assert row["results_data"]["fees"]["taker"] == {"BTCUSDT": "given"}
    # The seed-004 view shows ratios in percent.
    view = conn.execute(
        "SELECT total_return, max_drawdown, win_rate, test_period_start, symbol "
        "FROM analytics.backtest_results WHERE backtest_id = %s",
        (outcome.run_id,),
    ).fetchone()
    assert view[0] == round(row["total_return"] * 100, 4)
    assert view[1] == round(row["max_drawdown"] * 100, 4)
    assert str(view[3]) == "2024-01-01" and view[4] == "BTCUSDT"
    assert outcome.report.png.exists() and outcome.report.html.exists()


def test_registered_strategy_logs_executions_and_keeps_stats(
    conn: psycopg.Connection[Any], btc: int, tmp_path: Path
) -> None:
    uid = user(conn)
    create_strategy(conn, user_id=uid, name="fast sma", implementation="sma_crossover",
                    parameters={"fast": 5, "slow": 20}, stop_loss_pct=Decimal(1),
                    take_profit_pct=Decimal(2))  # fmt: skip
    outcome = run_backtest(conn, request(strategy="fast sma", parameters={}), home=tmp_path)
    row = store.get_run(conn, outcome.run_id)
    assert row["user_id"] == uid  # the registered strategy's owner, not the first user
    assert row["strategy_id"] is not None and row["parameters"] == {"fast": 5, "slow": 20}
    kinds = dict(
        conn.execute(
            "SELECT execution_type, count(*) FROM analytics.strategy_executions "
            "WHERE backtest_run_id = %s GROUP BY 1",
            (outcome.run_id,),
        ).fetchall()
    )
    result = outcome.result
    assert kinds["order"] == len(result.fills)
    assert kinds["signal"] == len(result.signal_events)
    assert kinds.get("error", 0) == len(result.rejections)
    first_order = conn.execute(
        "SELECT order_data, market_data, execution_time, event_time FROM analytics.strategy_executions "
        "WHERE backtest_run_id = %s AND execution_type = 'order' ORDER BY event_time, id LIMIT 1",
        (outcome.run_id,),
    ).fetchone()
    assert first_order[0]["side"] == "BUY" and first_order[0]["status"] == "FILLED"
    assert Decimal(str(first_order[0]["price"])) == result.fills.decimal(0)[1]
    assert first_order[2] >= 0 and first_order[3] is not None
    reasons = {t["exit_reason"] for t in row["trade_history"] if t["status"] == "CLOSED"}
    assert reasons & {"stop_loss", "take_profit"}
    strat = get_strategy(conn, "fast sma")
    assert strat.total_trades == row["total_trades"]
    assert strat.max_drawdown == row["max_drawdown"]
    assert strat.is_backtesting is False


def test_unknown_symbol_and_empty_range_are_refused(
    conn: psycopg.Connection[Any], btc: int
) -> None:
    with pytest.raises(ValidationError) as err:
        run_backtest(conn, request(symbols=("NOPE",)), home=None)
    assert err.value.field == "symbol"
    with pytest.raises(ValidationError) as err:
        run_backtest(conn, request(start=utc("2023-01-01"), end=utc("2023-01-02")))
    assert err.value.field == "symbol" and "no 1m candles" in err.value.rule
    with pytest.raises(ValidationError) as err:
        run_backtest(conn, request(parameters={"fast": 30, "slow": 20}))
    assert err.value.field == "parameters.fast"
    assert conn.execute("SELECT count(*) FROM analytics.backtest_runs").fetchone()[0] == 0


def test_fee_schedule_of_the_settlement_module_is_used(
    conn: psycopg.Connection[Any], btc: int, tmp_path: Path
) -> None:
    conn.execute(
        "INSERT INTO market.exchange_fee_schedules (exchange_id, effective_from, fee_schema) "
        "SELECT id, '2020-01-01', %s FROM market.exchanges WHERE code = 'binance'",
        (json.dumps({"maker": 0.0002, "taker": 0.0004}),),
    )
    outcome = run_backtest(conn, request(fee_rate=None), home=tmp_path)
    row = store.get_run(conn, outcome.run_id)
    assert row["fee_rate"] == Decimal("0.0004")
    assert row["results_data"]["fees"]["taker"] == {"BTCUSDT": "schedule"}
    fills = outcome.result.fills
    qty, price, fee, _ = fills.decimal(0)
    assert fee == qty * price * Decimal("0.0004")


def test_timeframe_not_ingested_runs_on_the_market_rollups(
    conn: psycopg.Connection[Any], btc: int, tmp_path: Path
) -> None:
    """Only 1m bars are stored; a 5m backtest reads the market module's rollups."""
    has = conn.execute(
        "SELECT to_regprocedure('market.candles_between(bigint,text,timestamptz,timestamptz,boolean)')"
        " IS NOT NULL"
    ).fetchone()[0]
    if not has:
        pytest.skip("market.candles_between (market-data rollups) is not installed")
    req = request(timeframe="5m", end=utc("2024-01-02T23:59:59"))
    outcome = run_backtest(conn, req, home=tmp_path)
    data_bars = outcome.result.times
    assert len(data_bars) == 2 * 288  # two days of the 3000 one-minute bars
    assert (np.diff(data_bars).astype("timedelta64[m]") == np.timedelta64(5, "m")).all()
    row = store.get_run(conn, outcome.run_id)
    assert (
        row["timeframe"] == "5m"
        and row["results_data"]["conventions"]["periods_per_year"] == 105120
    )


def test_stats_only_follow_runs_of_the_registered_parameters(
    conn: psycopg.Connection[Any], btc: int, tmp_path: Path
) -> None:
    uid = user(conn)
    create_strategy(conn, user_id=uid, name="s", implementation="sma_crossover",
                    parameters={"fast": 5, "slow": 20})  # fmt: skip
    run_backtest(conn, request(strategy="s", parameters={"fast": 8}, write_report=False))
    assert get_strategy(conn, "s").total_trades == 0
    outcome = run_backtest(conn, request(strategy="s", parameters={}, write_report=False))
    assert get_strategy(conn, "s").total_trades == outcome.metrics.total_trades > 0


def test_a_report_without_the_reports_extra_is_refused_before_the_run_is_recorded(
    conn: psycopg.Connection[Any], btc: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import tradestore.strategy
    from tradestore.extras import MissingExtra

    # As if reports had never been imported, and matplotlib were not installed.
    monkeypatch.delitem(sys.modules, "tradestore.strategy.reports", raising=False)
    monkeypatch.delattr(tradestore.strategy, "reports", raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    runs = conn.execute("SELECT count(*) FROM analytics.backtest_runs").fetchone()[0]
    with pytest.raises(MissingExtra, match=r"tradestore\[reports\]"):
        run_backtest(conn, request(), home=tmp_path)
    assert conn.execute("SELECT count(*) FROM analytics.backtest_runs").fetchone()[0] == runs
    # Without a report, the event engine needs no extra at all.
    outcome = run_backtest(conn, request(write_report=False), home=tmp_path)
    assert outcome.report is None
