"""Event-path semantics on hand-made bars: when orders fill, at what price and size, stop
loss and take profit, slippage, trading rules, max positions, shorts, gaps, on_bar."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
import pytest

from tradestore.db.errors import ValidationError
from tradestore.strategy.engine import run_event
from tradestore.strategy.fast import run_fast
from tradestore.strategy.model import (
    BacktestConfig,
    Instrument,
    MarketData,
    SignalMatrix,
)
from tradestore.strategy.rules import parse_rules
from tradestore.strategy.strategies import BarContext, Intent, Signals, Strategy

D = Decimal
RULES = parse_rules('{"tick_size": "0.01", "step_size": "0.001", "min_notional": "5"}')


def bars(rows: list[tuple[float, float, float, float]], rules: dict | None = None,
         fee: float = 0.0) -> MarketData:  # fmt: skip
    arr = np.array(rows, dtype=np.float64)
    times = np.datetime64("2024-01-01T00:00") + np.arange(len(rows)).astype("timedelta64[m]")
    return MarketData.single(
        times, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3],
        instrument=Instrument(1, "TEST", rules=RULES if rules is None else rules), fee_rate=fee,
    )  # fmt: skip


def signals(n: int, entries: list[int] = (), exits: list[int] = (), short_entries: list[int] = (),
            short_exits: list[int] = (), n_sym: int = 1, s: int = 0) -> SignalMatrix:  # fmt: skip
    sig = SignalMatrix.empty(n, n_sym)
    for arr, idx in ((sig.entries, entries), (sig.exits, exits),
                     (sig.short_entries, short_entries), (sig.short_exits, short_exits)):  # fmt: skip
        for i in idx:
            arr[i, s] = True
    return sig


FLAT = [(100.0, 100.5, 99.5, 100.0)] * 3


def both(data: MarketData, sig: SignalMatrix, config: BacktestConfig) -> Any:
    """Run both engines; they must agree on every fill (the fast path's contract)."""
    ev, fa = run_event(data, sig, config), run_fast(data, sig, config)
    for key in ("t", "s", "side", "quantity", "price", "reason"):
        assert np.array_equal(getattr(ev.fills, key), getattr(fa.fills, key)), key
    assert [(r.t, r.code) for r in ev.rejections] == [(r.t, r.code) for r in fa.rejections]
    np.testing.assert_allclose(ev.equity, fa.equity, rtol=1e-12)
    return ev


def test_signal_at_close_fills_at_next_open_all_in_with_fee() -> None:
    data = bars([*FLAT, (101.0, 102, 100, 101.5), (103.0, 104, 102, 103), *FLAT], fee=0.001)
    ev = both(data, signals(8, entries=[2], exits=[3]), BacktestConfig(position_size_pct=D(100)))
    assert list(ev.fills.t) == [3, 4]
    qty, price, fee, _ = ev.fills.decimal(0)
    assert price == D("101")
    # spend all 10000 including the fee, truncated to the 0.001 step
    assert qty == D("98.91")  # 10000 / 1.001 / 101 = 98.9109...
    assert qty * price * D("1.001") <= 10000 < (qty + D("0.001")) * price * D("1.001")
    assert fee == qty * price * D("0.001")
    _, exit_price, exit_fee, realized = ev.fills.decimal(1)
    assert exit_price == D(103) and realized == qty * 2
    assert ev.final_value == D(10000) - fee - exit_fee + realized
    assert ev.trades.pnl[0] == pytest.approx(float(realized - fee - exit_fee))


def test_risk_sizing_with_stop_loss() -> None:
    data = bars(FLAT * 3)
    config = BacktestConfig(risk_per_trade=D(1), stop_loss_pct=D(5))  # spend 20% of equity
    ev = both(data, signals(9, entries=[1]), config)
    qty, price, _, _ = ev.fills.decimal(0)
    assert qty * price == D("2000")


def test_stop_loss_take_profit_gap_and_same_bar() -> None:
    config = BacktestConfig(position_size_pct=D(100), stop_loss_pct=D(2), take_profit_pct=D(3))
    # entry at 100: stop 98, target 103
    stop = both(bars([*FLAT, (100, 100.5, 99, 99.5), (99, 99.5, 97.5, 98.5)]),
                signals(5, entries=[1]), config)  # fmt: skip
    assert stop.fills.decimal(1)[1] == D(98) and stop.fills.reason[1] == 1
    gap = both(bars([*FLAT, (96.5, 97, 95, 96)]), signals(4, entries=[1]), config)
    assert gap.fills.decimal(1)[1] == D("96.5")  # gapped through the stop: the open
    target = both(bars([*FLAT, (101, 104, 100.5, 103.5)]), signals(4, entries=[1]), config)
    assert target.fills.decimal(1)[1] == D(103) and target.fills.reason[1] == 2
    both_hit = both(bars([*FLAT, (100, 104, 97, 100)]), signals(4, entries=[1]), config)
    assert both_hit.fills.reason[1] == 1  # stop first: the pessimistic reading
    entry_bar = both(bars([*FLAT[:2], (100, 100.2, 97.9, 98)]), signals(3, entries=[1]), config)
    assert list(entry_bar.fills.t) == [2, 2]  # the stop can fire in the entry bar


def test_slippage_moves_fills_against_the_trader_then_rounds_to_the_tick() -> None:
    config = BacktestConfig(position_size_pct=D(50), slippage=D("0.001"))
    ev = both(bars(FLAT + [(100.004, 101, 99, 100)] * 2), signals(5, entries=[2], exits=[3]),
              config)  # fmt: skip
    assert ev.fills.decimal(0)[1] == D("100.10")  # 100.104004 -> nearest tick
    assert ev.fills.decimal(1)[1] == D("99.90")  # 99.903996 -> nearest tick


def test_trading_rules_refuse_orders_like_the_live_api() -> None:
    tiny = BacktestConfig(initial_capital=D(4), position_size_pct=D(100))
    ev = both(bars(FLAT * 2), signals(6, entries=[1]), tiny)
    assert not len(ev.fills)
    assert (ev.rejections[0].field, ev.rejections[0].rule) == ("notional", "min notional violation")
    rules = parse_rules('{"tick_size": "0.01", "step_size": "1", "min_qty": "2", "max_qty": "30"}')
    capped = both(bars(FLAT * 2, rules), signals(6, entries=[1]),
                  BacktestConfig(position_size_pct=D(100)))  # fmt: skip
    assert capped.fills.decimal(0)[0] == D(30)  # sized down to max_qty
    small = both(bars(FLAT * 2, rules), signals(6, entries=[1]),
                 BacktestConfig(initial_capital=D(150), position_size_pct=D(100)))  # fmt: skip
    assert small.rejections[0].rule == "must be >= min_qty"


def _two(rows_a: list, rows_b: list) -> MarketData:
    a, b = np.array(rows_a, dtype=float), np.array(rows_b, dtype=float)
    n = len(a)
    times = np.datetime64("2024-01-01T00:00") + np.arange(n).astype("timedelta64[m]")
    stack = np.stack([a, b], axis=2)  # (n, 4, 2)
    return MarketData(
        timeframe="1m", times=times.astype("datetime64[ns]"),
        instruments=[Instrument(1, "A", rules=RULES), Instrument(2, "B", rules=RULES)],
        open=stack[:, 0].copy(), high=stack[:, 1].copy(), low=stack[:, 2].copy(),
        close=stack[:, 3].copy(), volume=np.ones((n, 2)), fee_rates=np.zeros((n, 2)),
    )  # fmt: skip


def test_max_positions_and_closes_before_entries() -> None:
    data = _two(FLAT * 3, FLAT * 3)
    sig = signals(9, entries=[1], n_sym=2)
    sig.entries[2, 1] = True  # B wants in while A holds the only slot
    sig.exits[5, 0] = True  # A leaves at bar 6's open ...
    sig.entries[5, 1] = True  # ... and B's entry at that same open gets the slot
    config = BacktestConfig(position_size_pct=D(40), max_positions=1)
    ev = both(data, sig, config)
    assert [(r.t, r.s, r.field) for r in ev.rejections] == [(3, 1, "max_positions")]
    assert [(int(t), int(s)) for t, s in zip(ev.fills.t, ev.fills.s, strict=True)] == [
        (2, 0), (6, 0), (6, 1)]  # fmt: skip


def test_gaps_delay_orders_to_the_symbols_next_bar() -> None:
    nan = (np.nan,) * 4
    data = _two(FLAT * 3, [FLAT[0], FLAT[0], nan, nan, FLAT[0], FLAT[0], FLAT[0], nan, FLAT[0]])
    sig = signals(9, entries=[1], n_sym=2, s=1)
    ev = both(data, sig, BacktestConfig(position_size_pct=D(50)))
    assert list(ev.fills.t) == [4] and list(ev.fills.s) == [1]
    # B has no bar at t=7: it is marked at its last close
    assert ev.equity[7] == pytest.approx(ev.equity[6])


def test_shorts_reverse_through_zero() -> None:
    data = bars(FLAT * 3)
    sig = signals(9, entries=[1], short_entries=[3], short_exits=[5])
    ev = both(data, sig, BacktestConfig(position_size_pct=D(50), allow_short=True))
    assert [(int(t), int(side)) for t, side in zip(ev.fills.t, ev.fills.side, strict=True)] == [
        (2, 1), (4, -1), (4, -1), (6, 1)]  # fmt: skip
    assert list(ev.trades.direction) == [1, -1]
    long_only = both(data, sig, BacktestConfig(position_size_pct=D(50)))
    assert len(long_only.fills) == 1  # short entries ignored, the long stays open
    assert list(long_only.trades.exit_t) == [-1]


class BuyThirdBarSellSixth(Strategy):
    """An event-only strategy: decides from its own bar count and position."""

    name = "test_event_only"
    description = "test"
    defaults: ClassVar[dict[str, Any]] = {}

    def signals(self, bars_: Any) -> Signals:  # pragma: no cover - event only
        raise NotImplementedError

    def on_bar(self, ctx: BarContext) -> Intent | None:
        if ctx.bar_index == 2 and ctx.position == 0:
            return "long"
        if ctx.bar_index == 5 and ctx.position > 0:
            return "close"
        return None


def test_on_bar_strategy_runs_on_the_event_path_only() -> None:
    from tradestore.strategy.metrics import Conventions
    from tradestore.strategy.runner import Prepared, simulate

    strategy = BuyThirdBarSellSixth()
    assert strategy.event_only
    data = bars(FLAT * 3)
    ev = run_event(data, None, BacktestConfig(position_size_pct=D(10)), strategy=strategy)
    assert list(ev.fills.t) == [3, 6]
    prepared = Prepared(None, None, BuyThirdBarSellSixth, {}, BacktestConfig(), data, {},  # type: ignore[arg-type]
                        Conventions(525600), None)  # fmt: skip
    with pytest.raises(ValidationError) as err:
        simulate(prepared, strategy, engine="fast")
    assert err.value.field == "engine"


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError) as err:
        BacktestConfig(slippage=D("1.5"))
    assert err.value.field == "slippage"
    with pytest.raises(ValidationError) as err:
        BacktestConfig(initial_capital=D(0))
    assert err.value.field == "initial_capital"
    assert BacktestConfig(risk_per_trade=D(2), stop_loss_pct=D(2)).size_fraction() == 1
    assert BacktestConfig(risk_per_trade=D(2)).size_fraction() == D("0.02")
    assert BacktestConfig().size_fraction() == 1  # nothing set: all equity, one symbol


def test_default_sizing_is_an_equal_share_of_equity_per_symbol() -> None:
    """No size, risk or position limit set: one symbol spends all equity (fee included),
    two symbols half each; the config says so in words."""
    one = both(bars(FLAT * 3), signals(9, entries=[1]), BacktestConfig())
    qty, price, _, _ = one.fills.decimal(0)
    assert qty * price == D(10000)
    assert BacktestConfig().size_fraction(2) == D("0.5")
    assert BacktestConfig(max_positions=4).size_fraction(2) == D("0.25")
    assert "100% of equity" in BacktestConfig().sizing_text(1)
    sig = signals(9, entries=[1], n_sym=2)
    sig.entries[1, 1] = True
    two = both(_two(FLAT * 3, FLAT * 3), sig, BacktestConfig())
    assert [two.fills.decimal(i)[0] * two.fills.decimal(i)[1] for i in (0, 1)] == [5000, 5000]


def test_a_size_below_one_step_is_not_called_a_cash_shortage() -> None:
    """1 % of 10000 buys 1 unit at 100, less than the step of 5: the refusal says the
    position size is too small, not that cash ran out (it did not)."""
    rules = parse_rules('{"tick_size": "0.01", "step_size": "5"}')
    small = both(bars(FLAT * 2, rules), signals(6, entries=[1]),
                 BacktestConfig(position_size_pct=D(1)))  # fmt: skip
    assert not len(small.fills)
    assert small.rejections[0].rule == (
        "must be at least one step_size (the position size buys less than one step)"
    )
    # With the cash spent on another position, the refusal is the cash one.
    data = _two(FLAT * 3, FLAT * 3)
    sig = signals(9, entries=[1], n_sym=2)
    sig.entries[2, 1] = True
    broke = both(data, sig, BacktestConfig(position_size_pct=D(100)))
    assert [r.rule for r in broke.rejections] == [
        "must be at least one step_size (not enough free cash)"
    ]
