"""The numba fast path makes the same trades as the exact event path: same bars, sides,
quantities, prices, reasons and refusals, on real Binance candles and generated series,
one or many symbols, long only or with shorts, stops, slippage and trading rules."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from tests.strategy.market import random_walk, read_csv_bars
from tradestore.strategy.engine import run_event
from tradestore.strategy.fast import run_fast
from tradestore.strategy.model import BacktestConfig, Instrument, MarketData, SimResult
from tradestore.strategy.rules import parse_rules
from tradestore.strategy.signals import compute_signals
from tradestore.strategy.strategies import make_strategy

D = Decimal

CONFIGS = {
    "all_in": BacktestConfig(position_size_pct=D(100)),
    "risk_stops_short": BacktestConfig(risk_per_trade=D(1), stop_loss_pct=D("0.8"),
                                       take_profit_pct=D("1.6"), allow_short=True),
    "slippage_short": BacktestConfig(position_size_pct=D(60), slippage=D("0.0007"),
                                     allow_short=True, stop_loss_pct=D(3)),
}  # fmt: skip
STRATEGIES = {
    "sma_crossover": {"fast": 7, "slow": 25},
    "ema_crossover": {"fast": 5, "slow": 13},
    "rsi_mean_reversion": {"period": 9, "lower": 35.0, "upper": 65.0},
    "bollinger_breakout": {"period": 15, "std": 1.5},
}


def assert_same_trades(ev: SimResult, fa: SimResult) -> None:
    assert len(ev.fills) == len(fa.fills)
    for key in ("t", "s", "side", "reason", "quantity", "price"):
        assert np.array_equal(getattr(ev.fills, key), getattr(fa.fills, key)), key
    np.testing.assert_allclose(ev.fills.fee, fa.fills.fee, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ev.fills.realized, fa.fills.realized, rtol=1e-9, atol=1e-9)
    assert [(r.t, r.s, r.code) for r in ev.rejections] == [
        (r.t, r.s, r.code) for r in fa.rejections]  # fmt: skip
    assert ev.signal_events == fa.signal_events
    for key in ("entry_t", "exit_t", "direction", "exit_reason"):
        assert np.array_equal(getattr(ev.trades, key), getattr(fa.trades, key)), key
    np.testing.assert_allclose(ev.equity, fa.equity, rtol=1e-9)
    assert float(ev.final_value) == pytest.approx(float(fa.final_value), rel=1e-9)


def _check(data: MarketData, strategy: str, config: BacktestConfig) -> SimResult:
    sig = compute_signals(make_strategy(strategy, STRATEGIES[strategy]), data)
    ev, fa = run_event(data, sig, config), run_fast(data, sig, config)
    assert_same_trades(ev, fa)
    return ev


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_generated_series(strategy: str, config: str) -> None:
    bars = random_walk(20_000, seed=5)
    rules = parse_rules('{"tick_size": "0.01", "step_size": "0.001", "min_notional": "10"}')
    data = MarketData.single(bars["times"], bars["open"], bars["high"], bars["low"],
                             bars["close"], instrument=Instrument(1, "GEN", rules=rules),
                             fee_rate=0.001)  # fmt: skip
    ev = _check(data, strategy, CONFIGS[config])
    assert len(ev.fills) > 50


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
def test_real_binance_minutes(config: str) -> None:
    """13,681 real 1m bars of a BTC-quoted pair: prices like 0.00162008, float noise."""
    bars = read_csv_bars("binance_UNITTEST_BTC-1m.csv")
    rules = parse_rules(
        '{"tick_size": "0.00000001", "step_size": "0.01", "min_notional": "0.0001"}'
    )
    data = MarketData.single(bars["times"], bars["open"], bars["high"], bars["low"],
                             bars["close"], bars["volume"],
                             instrument=Instrument(1, "UNITTESTBTC", rules=rules),
                             fee_rate=0.00075)  # fmt: skip
    ev = _check(data, "sma_crossover", BacktestConfig(**{**CONFIGS[config].__dict__,
                                                       "initial_capital": D(1)}))  # fmt: skip
    assert len(ev.fills) > 50


def test_real_binance_five_minutes_many_symbols_with_gaps() -> None:
    """Seven 5m series with missing bars, one account, max 3 positions, price bands."""
    names = ["ADA", "ETC", "LTC", "NXT", "TRX", "XLM", "ZEC"]
    series = [read_csv_bars(f"binance_{n}_BTC-5m.csv") for n in names]
    times = np.unique(np.concatenate([s["times"] for s in series]))
    cols = {k: np.full((len(times), len(names)), np.nan)
            for k in ("open", "high", "low", "close", "volume")}  # fmt: skip
    for j, s in enumerate(series):
        rows = np.searchsorted(times, s["times"])
        for k in cols:
            cols[k][rows, j] = s[k]
    banded = parse_rules(
        '{"price_bands": [{"min_price": 0, "tick_size": "0.00000001"}, '
        '{"min_price": "0.001", "tick_size": "0.000001"}], "step_size": "1"}'
    )
    plain = parse_rules('{"tick_size": "0.00000001", "step_size": "1"}')
    instruments = [Instrument(j, n, rules=banded if j % 2 else plain) for j, n in enumerate(names)]
    data = MarketData(timeframe="5m", times=times.astype("datetime64[ns]"),
                      instruments=instruments, **cols,
                      fee_rates=np.full((len(times), len(names)), 0.001))  # fmt: skip
    assert np.isnan(data.open).any()  # there are gaps
    config = BacktestConfig(initial_capital=D(10), position_size_pct=D(30), max_positions=3,
                            stop_loss_pct=D(2), take_profit_pct=D(4), allow_short=True)  # fmt: skip
    ev = _check(data, "rsi_mean_reversion", config)
    assert len(set(ev.fills.s.tolist())) == len(names)
    assert any(r.field == "max_positions" for r in ev.rejections)
