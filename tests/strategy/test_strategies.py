"""The strategy interface, the built-in strategies' signals and the registry."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
import pytest
import talib

from tests.strategy.market import random_walk, user
from tradestore.db.errors import Conflict, NotFound, ValidationError
from tradestore.strategy.model import Bars
from tradestore.strategy.registry import create_strategy, find_user, get_strategy, list_strategies
from tradestore.strategy.strategies import (
    IMPLEMENTATIONS,
    crossed_above,
    crossed_below,
    make_strategy,
)


def _bars(n: int = 2000) -> Bars:
    b = random_walk(n, seed=9)
    return Bars(b["times"], b["open"], b["high"], b["low"], b["close"], b["volume"])


def test_crossings() -> None:
    a = np.array([1.0, 2.0, 3.0, 2.0, np.nan, 5.0])
    b = np.array([2.0, 2.0, 2.0, 2.5, 2.0, 2.0])
    assert crossed_above(a, b).tolist() == [False, False, True, False, False, False]
    assert crossed_below(a, b).tolist() == [False, False, False, True, False, False]
    assert crossed_above(a, 2.5).tolist() == [False, False, True, False, False, False]


def test_built_in_strategies_signal_on_their_indicator_events() -> None:
    bars = _bars()
    close = bars.close
    sma = make_strategy("sma_crossover", {"fast": 5, "slow": 20}).signals(bars)
    fast, slow = talib.SMA(close, 5), talib.SMA(close, 20)
    for i in np.flatnonzero(sma.entries):
        assert fast[i] > slow[i] and fast[i - 1] <= slow[i - 1]
    assert sma.entries.sum() > 10 and np.array_equal(sma.exits, sma.short_entries)
    ema = make_strategy("ema_crossover").signals(bars)
    assert not np.array_equal(ema.entries, sma.entries)
    rsi = make_strategy("rsi_mean_reversion", {"period": 7}).signals(bars)
    values = talib.RSI(close, 7)
    for i in np.flatnonzero(rsi.entries):
        assert values[i] < 30 <= values[i - 1]
    for i in np.flatnonzero(rsi.exits):
        assert values[i] > 70 >= values[i - 1]
    bb = make_strategy("bollinger_breakout", {"period": 10, "std": 1.5}).signals(bars)
    upper, middle, _ = talib.BBANDS(close, 10, 1.5, 1.5)
    for i in np.flatnonzero(bb.entries):
        assert close[i] > upper[i] and close[i - 1] <= upper[i - 1]
    for i in np.flatnonzero(bb.exits):
        assert close[i] < middle[i]
    assert set(IMPLEMENTATIONS) >= {"sma_crossover", "ema_crossover", "rsi_mean_reversion",
                                    "bollinger_breakout"}  # fmt: skip


def test_parameters_are_typed_and_checked() -> None:
    s = make_strategy("rsi_mean_reversion", {"period": "9", "lower": "25"})
    assert s.params == {"period": 9, "lower": 25.0, "upper": 70.0}
    for params, field in (
        ({"fast": "x"}, "parameters.fast"),
        ({"fast": 20, "slow": 10}, "parameters.fast"),
        ({"window": 3}, "parameters.window"),
        ({"fast": 1}, "parameters.fast"),
    ):
        with pytest.raises(ValidationError) as err:
            make_strategy("sma_crossover", params)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        make_strategy("rsi_mean_reversion", {"lower": 80})
    assert err.value.field == "parameters.lower"
    with pytest.raises(ValidationError) as err:
        make_strategy("nope")
    assert err.value.field == "implementation"


def test_registry(conn: psycopg.Connection[Any]) -> None:
    uid = user(conn)
    assert find_user(conn, None) == uid == find_user(conn, "quant") == find_user(conn, str(uid))
    rec = create_strategy(conn, user_id=uid, name="trend", implementation="ema_crossover",
                          parameters={"fast": "8"}, take_profit_pct=Decimal(6))  # fmt: skip
    assert rec.parameters == {"fast": 8, "slow": 30} and rec.strategy_type == "swing_trading"
    # Only what was given is stored: no hidden stop, risk or position limit.
    assert rec.take_profit_pct == Decimal(6)
    assert rec.risk_per_trade is None and rec.stop_loss_pct is None and rec.max_positions is None
    assert get_strategy(conn, "trend").id == rec.id == get_strategy(conn, rec.id).id
    assert [r.name for r in list_strategies(conn, user_id=uid)] == ["trend"]
    with pytest.raises(Conflict):
        create_strategy(conn, user_id=uid, name="trend", implementation="sma_crossover")
    with pytest.raises(ValidationError) as err:
        create_strategy(conn, user_id=uid, name="x", implementation="sma_crossover",
                        risk_per_trade=Decimal(150))  # fmt: skip
    assert err.value.field == "risk_per_trade"
    with pytest.raises(ValidationError) as err:
        create_strategy(conn, user_id=uid, name="y", implementation="sma_crossover",
                        strategy_type="hodl")  # fmt: skip
    assert err.value.field == "strategy_type"
    with pytest.raises(NotFound):
        get_strategy(conn, "missing")
    with pytest.raises(ValidationError) as err:
        find_user(conn, "nobody")
    assert err.value.field == "user"


def test_is_backtesting_follows_pending_and_running_runs(conn: psycopg.Connection[Any]) -> None:
    uid = user(conn)
    rec = create_strategy(conn, user_id=uid, name="s", implementation="sma_crossover")
    insert = ("INSERT INTO analytics.backtest_runs (user_id, strategy_id, strategy_name, "
              "start_date, end_date, symbols, initial_capital, status) VALUES (%s, %s, 's', "
              "'2024-01-01', '2024-01-02', '{X}', 100, %s) RETURNING id")  # fmt: skip
    first = conn.execute(insert, (uid, rec.id, "RUNNING")).fetchone()[0]
    second = conn.execute(insert, (uid, rec.id, "PENDING")).fetchone()[0]
    assert get_strategy(conn, "s").is_backtesting
    conn.execute("UPDATE analytics.backtest_runs SET status = 'COMPLETED' WHERE id = %s", (first,))
    assert get_strategy(conn, "s").is_backtesting  # the second is still pending
    conn.execute("DELETE FROM analytics.backtest_runs WHERE id = %s", (second,))
    assert not get_strategy(conn, "s").is_backtesting
