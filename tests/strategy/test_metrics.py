"""Each metric against an established library under the same convention, on the same
returns: empyrical-reloaded for the return metrics (given our periods per year and
risk-free rate), backtesting.py for the trade metrics and drawdown (fed the same
signals, it makes the same trades)."""

from __future__ import annotations

import warnings
from decimal import Decimal

import empyrical
import numpy as np
import pandas as pd
import pytest

from tests.strategy.market import random_walk
from tradestore.strategy.engine import run_event
from tradestore.strategy.metrics import (
    Conventions,
    bar_returns,
    compute_metrics,
    monthly_returns,
    periods_per_year,
    profit_factor,
    sqn,
)
from tradestore.strategy.model import BacktestConfig, Instrument, MarketData
from tradestore.strategy.rules import parse_rules
from tradestore.strategy.signals import compute_signals
from tradestore.strategy.strategies import make_strategy

D = Decimal


def test_periods_per_year_conventions() -> None:
    assert periods_per_year("1d") == 365
    assert periods_per_year("1h") == 8760
    assert periods_per_year("1m") == 525_600
    assert periods_per_year("4h") == 2190
    assert periods_per_year("1d", "equity") == 252
    assert periods_per_year("1h", "equity") == 252 * 6.5
    assert periods_per_year("1w", "equity") == 52
    assert periods_per_year("1d", "fx") == 260


def _run(n: int = 3000, timeframe: str = "1h", short: bool = False) -> tuple:
    bars = random_walk(n, seed=21, vol=0.01, minutes=60)
    rules = parse_rules('{"tick_size": "0.01", "step_size": "1"}')
    data = MarketData.single(bars["times"], bars["open"], bars["high"], bars["low"],
                             bars["close"], instrument=Instrument(1, "X", rules=rules),
                             fee_rate=0.001, timeframe=timeframe)  # fmt: skip
    strategy = make_strategy("sma_crossover", {"fast": 10, "slow": 40})
    sig = compute_signals(strategy, data)
    config = BacktestConfig(initial_capital=D(1_000_000), position_size_pct=D("99.99"),
                            allow_short=short)  # fmt: skip
    return data, sig, run_event(data, sig, config)


@pytest.mark.parametrize("rf", [0.0, 0.04])
def test_return_metrics_equal_empyrical(rf: float) -> None:
    _data, _, result = _run()
    conv = Conventions(periods_per_year("1h"), rf)
    m = compute_metrics(result, conv)
    r = bar_returns(result.equity, float(result.initial_capital))
    P, rfp = conv.periods_per_year, conv.rf_per_period
    assert m.sharpe_ratio == pytest.approx(
        empyrical.sharpe_ratio(r, rfp, annualization=P), rel=1e-10
    )
    assert m.sortino_ratio == pytest.approx(
        empyrical.sortino_ratio(r, rfp, annualization=P), rel=1e-10)  # fmt: skip
    assert m.downside_deviation == pytest.approx(
        empyrical.downside_risk(r, rfp, annualization=P), rel=1e-10)  # fmt: skip
    assert m.annual_volatility == pytest.approx(
        empyrical.annual_volatility(r, annualization=P), rel=1e-10)  # fmt: skip
    assert m.annual_return == pytest.approx(empyrical.annual_return(r, annualization=P), rel=1e-9)
    assert m.total_return == pytest.approx(empyrical.cum_returns_final(r), rel=1e-9)
    assert m.max_drawdown == pytest.approx(-empyrical.max_drawdown(r), rel=1e-10)
    assert m.calmar_ratio == pytest.approx(empyrical.calmar_ratio(r, annualization=P), rel=1e-9)
    assert m.max_drawdown > 0 and m.total_trades > 10


def test_monthly_returns_equal_empyrical_aggregation() -> None:
    data, _, result = _run(n=24 * 75)
    r = bar_returns(result.equity, float(result.initial_capital))
    series = pd.Series(r, index=pd.DatetimeIndex(data.times))
    expected = empyrical.aggregate_returns(series, "monthly")
    got = monthly_returns(data.times, result.equity, float(result.initial_capital))
    assert list(got) == ["2024-01", "2024-02", "2024-03"]
    assert list(got.values()) == pytest.approx(list(expected.values), rel=1e-9)


def _backtesting_py_stats() -> tuple:
    from backtesting import Backtest, Strategy

    data, sig, result = _run()
    entries, exits = sig.entries[:, 0], sig.exits[:, 0]

    class Fed(Strategy):
        def init(self) -> None:
            self.entry = self.I(lambda: entries.astype(float), name="entry")
            self.exit = self.I(lambda: exits.astype(float), name="exit")

        def next(self) -> None:
            if self.entry[-1] and not self.position:
                self.buy(size=0.9999)
            elif self.exit[-1] and self.position:
                self.position.close()

    frame = pd.DataFrame(
        {"Open": data.open[:, 0], "High": data.high[:, 0], "Low": data.low[:, 0],
         "Close": data.close[:, 0], "Volume": data.volume[:, 0]},
        index=pd.DatetimeIndex(data.times),
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(frame, Fed, cash=1_000_000, commission=0.001).run()
    return stats, result, data


def test_trade_metrics_equal_backtesting_py() -> None:
    stats, result, _data = _backtesting_py_stats()
    bt = stats["_trades"]
    m = compute_metrics(result, Conventions(8760))
    closed = result.trades.closed
    # the same trades
    assert len(bt) == m.total_trades == stats["# Trades"]
    assert np.array_equal(bt["EntryBar"].to_numpy(), result.trades.entry_t[closed])
    assert np.array_equal(bt["ExitBar"].to_numpy(), result.trades.exit_t[closed])
    assert np.array_equal(bt["Size"].to_numpy(), result.trades.quantity[closed])
    np.testing.assert_allclose(bt["PnL"].to_numpy(), result.trades.pnl[closed], rtol=1e-9)
    # the same metrics
    pnl = bt["PnL"].to_numpy()
    assert m.win_rate * 100 == pytest.approx(stats["Win Rate [%]"], rel=1e-12)
    assert m.max_drawdown * 100 == pytest.approx(-stats["Max. Drawdown [%]"], rel=1e-9)
    assert float(m.final_value) == pytest.approx(stats["Equity Final [$]"], rel=1e-12)
    assert m.total_return * 100 == pytest.approx(stats["Return [%]"], rel=1e-9)
    assert m.largest_win == pytest.approx(pnl.max(), rel=1e-9)
    assert m.largest_loss == pytest.approx(pnl.min(), rel=1e-9)
    assert m.avg_win == pytest.approx(pnl[pnl > 0].mean(), rel=1e-9)
    assert m.avg_loss == pytest.approx(pnl[pnl < 0].mean(), rel=1e-9)
    assert m.winning_trades == (pnl > 0).sum() and m.losing_trades == (pnl < 0).sum()
    # Profit factor: backtesting.py's is on % returns; the same formula on its money PnL
    # is ours.
    assert profit_factor(bt["ReturnPct"].to_numpy()) == pytest.approx(stats["Profit Factor"])
    assert m.profit_factor == pytest.approx(profit_factor(pnl), rel=1e-9)
    assert m.profit_factor != pytest.approx(stats["Profit Factor"], rel=1e-6)


def test_sqn_buy_and_hold_and_exposure_equal_backtesting_py() -> None:
    """SQN and Buy & Hold return as backtesting.py defines them; exposure differs from its
    "Exposure Time" by exactly the exit bars, which it counts and we do not."""
    stats, result, data = _backtesting_py_stats()
    m = compute_metrics(result, Conventions(8760), data.close)
    assert m.sqn == pytest.approx(stats["SQN"], rel=1e-9)
    assert m.buy_and_hold_return * 100 == pytest.approx(stats["Buy & Hold Return [%]"], rel=1e-12)
    closed = result.trades.closed
    exit_bars = len(np.unique(result.trades.exit_t[closed]))
    assert m.exposure * m.n_bars + exit_bars == pytest.approx(
        stats["Exposure Time [%]"] / 100 * m.n_bars, abs=1e-6
    )
    # Without closes there is no buy-and-hold figure; fewer than two trades, no SQN.
    assert compute_metrics(result, Conventions(8760)).buy_and_hold_return is None
    assert sqn(np.array([5.0])) is None and sqn(np.array([1.0, 1.0])) is None


def test_undefined_metrics_are_none() -> None:
    times = np.datetime64("2024-01-01") + np.arange(5).astype("timedelta64[D]")
    flat = np.full(5, 100.0)
    data = MarketData.single(times, flat, flat, flat, flat, timeframe="1d")
    from tradestore.strategy.model import SignalMatrix

    result = run_event(data, SignalMatrix.empty(5, 1), BacktestConfig())
    m = compute_metrics(result, Conventions(365))
    assert m.total_return == 0 and m.max_drawdown == 0 and m.total_trades == 0
    assert m.sharpe_ratio is None and m.sortino_ratio is None and m.profit_factor is None
    assert m.win_rate is None and m.avg_win is None
    assert profit_factor(np.array([1.0, 2.0])) is None  # no loss: undefined, not infinite
