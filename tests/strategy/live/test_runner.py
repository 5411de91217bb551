"""The live runner on closed bars as they are stored: parity with a backtest over the same
bars (simulated fills), the database's limits on the orders it places, halt and resume."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
import pytest

from tests.strategy.market import insert_candles
from tests.trading.desk import Desk, build_desk
from tradestore.db.errors import NotFound, ValidationError
from tradestore.db.query import translated
from tradestore.strategy.live import store
from tradestore.strategy.live.runner import LiveRunner
from tradestore.strategy.registry import create_strategy
from tradestore.strategy.runner import BacktestRequest, run_backtest
from tradestore.trading import orders

START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def _series(n: int, seed: int = 7) -> tuple[np.ndarray, ...]:
    """Waves plus noise on a 0.01 tick: many SMA crossovers, prices near 100."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    close = np.round(100 + 3 * np.sin(i / 9) + np.cumsum(rng.normal(0, 0.15, n)), 2)
    open_ = np.round(np.concatenate([[close[0]], close[:-1]]) + rng.normal(0, 0.05, n), 2)
    high = np.maximum(open_, close) + 0.05
    low = np.minimum(open_, close) - 0.05
    times = np.array([np.datetime64(START.replace(tzinfo=None)) + np.timedelta64(k, "m")
                      for k in range(n)])  # fmt: skip
    return times, open_, np.round(high, 2), np.round(low, 2), close


def _desk(conn: psycopg.Connection[Any], cash: int = 10_000) -> Desk:
    return build_desk(conn, cash=cash)


def _runner(conn: psycopg.Connection[Any], desk: Desk, **limits: Any) -> int:
    create_strategy(conn, user_id=desk.user_id, name="golden", implementation="sma_crossover",
                    parameters={"fast": 5, "slow": 20})  # fmt: skip
    return store.add_runner(conn, "golden", desk.account_id, ["BTCUSDT"], mode="simulated",
                            limits=limits, position_size_pct=Decimal(50),
                            fee_rate=Decimal("0.001"))  # fmt: skip


def test_replaying_stored_bars_matches_a_backtest(conn: psycopg.Connection[Any]) -> None:
    desk = _desk(conn)
    runner_id = _runner(conn, desk)
    runner = LiveRunner(conn, runner_id)
    runner.start()
    times, o, h, lo, c = _series(240)
    for k in range(len(times)):  # one closed bar at a time, as a collector stores them
        insert_candles(conn, desk.btc, times[k:k + 1], o[k:k + 1], h[k:k + 1], lo[k:k + 1],
                       c[k:k + 1])  # fmt: skip
        assert runner.process() == 1
    runner.stop()

    outcome = run_backtest(conn, BacktestRequest(
        strategy="golden", symbols=("BTCUSDT",), timeframe="1m", start=START,
        end=START + dt.timedelta(minutes=239), initial_capital=Decimal(10_000),
        fee_rate=Decimal("0.001"), position_size_pct=Decimal(50), write_report=False,
    ))  # fmt: skip
    fills = outcome.result.fills
    assert len(fills) >= 6  # the series trades
    got = conn.execute(
        """SELECT o.side, e.quantity, e.price, e.executed_at, o.strategy_id
             FROM trade.executions e JOIN trade.orders o ON o.id = e.order_id
            WHERE o.account_id = %s ORDER BY e.executed_at, e.id""",
        (desk.account_id,),
    ).fetchall()
    want = []
    for i in range(len(fills)):
        qty, price, _fee, _realized = fills.decimal(i)
        when = START + dt.timedelta(minutes=int(fills.t[i]))
        want.append(("BUY" if fills.side[i] > 0 else "SELL", qty, price, when))
    assert [(s, q, p, t) for s, q, p, t, _ in got] == want
    assert {sid for *_, sid in got} == {runner.row.strategy_id}
    equity = conn.execute(
        "SELECT total_value FROM account.account_valuation(%s)", (desk.account_id,)
    ).fetchone()[0]
    assert equity == outcome.result.final_value
    stats = conn.execute(
        "SELECT total_trades, winning_trades, losing_trades, last_executed IS NOT NULL, "
        "total_pnl FROM analytics.strategies WHERE name = 'golden'"
    ).fetchone()
    # run_backtest set the stats from the backtest after the runner: the counts agree.
    assert stats[:3] == (outcome.metrics.total_trades, outcome.metrics.winning_trades,
                         outcome.metrics.losing_trades)  # fmt: skip
    kinds = dict(conn.execute(
        "SELECT execution_type, count(*) FROM analytics.strategy_executions "
        "WHERE backtest_run_id IS NULL GROUP BY 1").fetchall())  # fmt: skip
    assert kinds["order"] == len(fills) and kinds["signal"] >= len(fills)


def test_live_stats_follow_the_runner(conn: psycopg.Connection[Any]) -> None:
    desk = _desk(conn)
    runner = LiveRunner(conn, _runner(conn, desk))
    runner.start()
    times, o, h, lo, c = _series(120)
    for k in range(len(times)):
        insert_candles(conn, desk.btc, times[k:k + 1], o[k:k + 1], h[k:k + 1], lo[k:k + 1],
                       c[k:k + 1])  # fmt: skip
        runner.process()
    trades, pnl, last = conn.execute(
        "SELECT total_trades, total_pnl, last_executed FROM analytics.strategies"
    ).fetchone()
    equity = conn.execute(
        "SELECT total_value FROM account.account_valuation(%s)", (desk.account_id,)
    ).fetchone()[0]
    assert last is not None and trades > 0
    assert pnl == equity - 10_000
    row = store.get_runner(conn, runner.runner_id)
    assert row.state == "RUNNING" and row.last_bar_at is not None and row.last_message


def _order(conn: psycopg.Connection[Any], desk: Desk, strategy_id: int | None, qty: str,
           side: str = "BUY") -> int:  # fmt: skip
    with translated():
        return int(conn.execute(
            "SELECT trade.place_order(%s, %s, %s, 'LIMIT', %s, 100, NULL, NULL, NULL, NULL, %s)",
            (desk.account_id, desk.btc, side, Decimal(qty), strategy_id),
        ).fetchone()[0])  # fmt: skip


def _strategy_id(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT id FROM analytics.strategies").fetchone()[0])


def test_runner_limits_are_enforced_on_the_order_insert(conn: psycopg.Connection[Any]) -> None:
    desk = _desk(conn)
    _runner(conn, desk, max_order_notional=Decimal(500), max_position_notional=Decimal(800),
            max_open_orders=2)  # fmt: skip
    sid = _strategy_id(conn)
    with pytest.raises(ValidationError) as err:
        _order(conn, desk, sid, "6")  # 600 > 500
    assert err.value.field == "max_order_notional"
    _order(conn, desk, None, "6")  # not the runner's order: its limits do not apply
    first = _order(conn, desk, sid, "4")
    conn.execute("SELECT apply_fill(%s, 'f1', 4, 100)", (first,))
    with pytest.raises(ValidationError) as err:
        _order(conn, desk, sid, "4.5")  # the position after: 8.5 x 100 > 800
    assert err.value.field == "max_position"
    _order(conn, desk, sid, "3")
    _order(conn, desk, sid, "0.5")
    with pytest.raises(ValidationError) as err:
        _order(conn, desk, sid, "0.1")  # a third open order of the runner
    assert err.value.field == "max_open_orders"
    _order(conn, desk, sid, "4", side="SELL")  # reducing the position is always allowed


def test_account_limits_apply_to_every_order(conn: psycopg.Connection[Any]) -> None:
    desk = _desk(conn)
    conn.execute("INSERT INTO trade.account_limits (account_id, max_open_orders) VALUES (%s, 1)",
                 (desk.account_id,))  # fmt: skip
    _order(conn, desk, None, "1")
    with pytest.raises(ValidationError) as err:
        _order(conn, desk, None, "1")
    assert err.value.field == "max_open_orders"


def test_daily_loss_halts_the_runner_and_cancels_its_orders(
    conn: psycopg.Connection[Any],
) -> None:
    desk = _desk(conn)
    runner_id = _runner(conn, desk, daily_loss_limit=Decimal(100))
    sid = _strategy_id(conn)
    conn.execute(
        "INSERT INTO account.equity_snapshots VALUES (%s, now(), 10000, 10000, 0)",
        (desk.account_id,),
    )
    open_id = _order(conn, desk, sid, "1")
    conn.execute("UPDATE analytics.strategy_runners SET state = 'RUNNING'")
    assert conn.execute("SELECT analytics.enforce_runner_limits(%s)", (runner_id,)).fetchone()[0] \
        == "RUNNING"  # fmt: skip
    conn.execute("SELECT post_ledger_entry(%s, 'FEE', 'USDT', -150, 'a loss')", (desk.account_id,))
    with pytest.raises(ValidationError) as err:
        _order(conn, desk, sid, "1")
    assert err.value.field == "daily_loss_limit"
    assert conn.execute("SELECT analytics.enforce_runner_limits(%s)", (runner_id,)).fetchone()[0] \
        == "HALTED"  # fmt: skip
    assert orders.get_order(conn, open_id).status == "CANCELED"
    alert = conn.execute(
        "SELECT severity FROM system.alerts WHERE dedupe_key = %s", (f"runner-halted:{runner_id}",)
    ).fetchone()
    assert alert == ("HIGH",)


def test_halt_refuses_new_exposure_and_resume_undoes_it(conn: psycopg.Connection[Any]) -> None:
    desk = _desk(conn)
    runner_id = _runner(conn, desk)
    conn.execute("UPDATE analytics.strategy_runners SET state = 'RUNNING'")
    held = _order(conn, desk, None, "2")
    conn.execute("SELECT apply_fill(%s, 'h1', 1, 100)", (held,))
    pending = _order(conn, desk, None, "1")
    assert store.halt(conn, "test") == 2
    assert orders.get_order(conn, pending).status == "CANCELED"
    assert store.get_runner(conn, runner_id).state == "HALTED"
    with pytest.raises(ValidationError) as err:
        _order(conn, desk, None, "1")
    assert err.value.field == "trading_halt"
    _order(conn, desk, None, "1", side="SELL")  # reduce-only is accepted
    assert store.resume(conn) == 1
    assert store.get_runner(conn, runner_id).state == "RUNNING"
    _order(conn, desk, None, "1")


def test_one_process_per_runner(conn: psycopg.Connection[Any]) -> None:
    desk = _desk(conn)
    runner_id = _runner(conn, desk)
    first = LiveRunner(conn, runner_id, holder="host-a:1")
    first.start()
    with pytest.raises(ValidationError) as err:
        LiveRunner(conn, runner_id, holder="host-b:2").start()
    assert err.value.field == "runner"
    first.stop()
    LiveRunner(conn, runner_id, holder="host-b:2").start()


def test_a_stored_bar_notifies_the_runners_of_its_series(
    conn: psycopg.Connection[Any], db: str
) -> None:
    desk = _desk(conn)
    _runner(conn, desk)
    from tradestore.db.connect import connect

    with connect(db, autocommit=True) as listener:
        listener.execute("LISTEN tradestore_bars")
        times, o, h, lo, c = _series(3)
        insert_candles(conn, desk.eth, times, o, h, lo, c)  # no runner trades ETH: silent
        insert_candles(conn, desk.btc, times, o, h, lo, c)
        notes = list(listener.notifies(timeout=10, stop_after=1))
    assert len(notes) == 1
    payload = json.loads(notes[0].payload)
    assert (payload["listing"], payload["timeframe"]) == (desk.btc, "1m")
    assert payload["time"].startswith("2024-03-01T00:02:00")


def test_an_unknown_runner_is_not_found(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(NotFound) as err:
        store.get_runner(conn, 999)
    assert (err.value.what, err.value.key) == ("runner", 999)
