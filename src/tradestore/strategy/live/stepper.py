"""The event engine one bar at a time.

`Stepper` drives the backtest's own simulation object (`engine._EventSim`: sizing, order
checks, fill prices, fees, stops and the netting book) through the same five phases as
`_EventSim.run`, for bars that arrive one by one. Nothing about fills is defined here, so
a runner that fills in process fills exactly as a backtest over the same bars does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

import numpy as np

from tradestore.strategy.accounting import Position
from tradestore.strategy.engine import _EventSim, decide
from tradestore.strategy.model import (
    BacktestConfig,
    Instrument,
    MarketData,
    Rejection,
    to_decimal,
)
from tradestore.strategy.rules import EXACT
from tradestore.strategy.signals import compute_signals
from tradestore.strategy.strategies import Strategy

__all__ = ["Fill", "Intent", "Step", "Stepper"]

Bar = tuple[float, float, float, float, float]  # open, high, low, close, volume


@dataclass(frozen=True)
class Fill:
    s: int
    side: int
    quantity: Decimal
    price: Decimal
    fee: Decimal
    realized: Decimal
    reason: int


@dataclass(frozen=True)
class Intent:
    """A decision at a bar's close: close the position and/or open one (+1 / -1)."""

    s: int
    close: bool
    direction: int
    action: str


@dataclass
class Step:
    t: int
    fills: list[Fill] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    intents: list[Intent] = field(default_factory=list)
    flags: dict[int, dict[str, bool]] = field(default_factory=dict)
    indicators: dict[int, dict[str, float]] = field(default_factory=dict)
    equity: float = 0.0


class Stepper:
    """One strategy over a fixed set of listings, fed closed bars in time order."""

    def __init__(
        self,
        strategy: Strategy,
        instruments: list[Instrument],
        timeframe: str,
        config: BacktestConfig,
        fee_rate: Decimal,
    ) -> None:
        n = len(instruments)
        empty = np.empty((0, n), dtype=np.float64)
        self.strategy = strategy
        self.fee = float(fee_rate)
        self.data = MarketData(
            timeframe, np.empty(0, dtype="datetime64[ns]"), list(instruments),
            empty, empty.copy(), empty.copy(), empty.copy(), empty.copy(), empty.copy(),
        )  # fmt: skip
        self.sim = _EventSim(self.data, config, strategy)
        self.pend_close = [False] * n
        self.pend_open = [0] * n
        self.bar_index = [-1] * n
        self.simulating = 0  # first row simulated (rows before it are history only)

    @property
    def n_symbols(self) -> int:
        return self.data.n_symbols

    def _append(self, time: dt.datetime, bars: dict[int, Bar]) -> int:
        d, n = self.data, self.n_symbols
        row = np.full((5, n), np.nan)
        for s, bar in bars.items():
            row[:, s] = bar
        stamp = np.datetime64(time.astimezone(dt.UTC).replace(tzinfo=None), "ns")
        d.times = np.append(d.times, stamp)
        d.open = np.vstack([d.open, row[0]])
        d.high = np.vstack([d.high, row[1]])
        d.low = np.vstack([d.low, row[2]])
        d.close = np.vstack([d.close, row[3]])
        d.volume = np.vstack([d.volume, row[4]])
        d.fee_rates = np.vstack([d.fee_rates, np.full(n, self.fee)])
        return d.n_bars - 1

    def history(self, time: dt.datetime, bars: dict[int, Bar]) -> None:
        """A bar from before the runner started: indicators see it, nothing trades."""
        self._append(time, bars)
        for s in bars:
            self.bar_index[s] += 1
            self.sim.last_close[s] = bars[s][3]
        self.simulating = self.data.n_bars

    def step(self, time: dt.datetime, bars: dict[int, Bar], *, fill: bool = True) -> Step:
        """Phases 1-5 of the event engine for one closed bar. With fill=False pending
        orders are not filled by the model (a routed runner's orders fill on the exchange)."""
        with localcontext(EXACT):
            return self._step(time, bars, fill)

    def _step(self, time: dt.datetime, bars: dict[int, Bar], fill: bool) -> Step:
        sim = self.sim
        t = self._append(time, bars)
        out = Step(t)
        n_fills, n_rej = len(sim.exact), len(sim.rejections)
        present = [s for s in range(self.n_symbols) if s in bars]
        if fill:
            for s in present:  # 1. closes at the open
                if self.pend_close[s]:
                    self.pend_close[s] = False
                    if sim.pos_sign[s]:
                        sim.close(t, s, to_decimal(bars[s][0]), 0)
            for s in present:  # 2. entries at the open
                if self.pend_open[s]:
                    direction, self.pend_open[s] = self.pend_open[s], 0
                    if not sim.pos_sign[s]:
                        sim.open(t, s, direction, to_decimal(bars[s][0]))
        for s in present:  # 3. stops inside the bar, 4. the mark
            o, h, lo, c = bars[s][:4]
            if fill and sim.pos_sign[s] and (sim.sl[s] is not None or sim.tp[s] is not None):
                sim.check_exits(t, s, o, h, lo)
            sim.last_close[s] = c
        equity, _ = sim.marks()
        out.equity = float(equity)
        signals = None if self.strategy.event_only else compute_signals(self.strategy, self.data)
        for s in present:  # 5. signals at the close
            self.bar_index[s] += 1
            if signals is None:
                from tradestore.strategy.strategies import BarContext

                intent = self.strategy.on_bar(
                    BarContext(t, s, self.data.instruments[s].symbol, self.bar_index[s],
                               self.data.bars(s), sim.book.position(s).quantity, sim.book.cash,
                               equity)
                )  # fmt: skip
                if intent is None:
                    continue
                sign = sim.pos_sign[s]
                e, x = intent == "long", intent == "close" and sign > 0
                se, sx = intent == "short", intent == "close" and sign < 0
            else:
                e, x = bool(signals.entries[t, s]), bool(signals.exits[t, s])
                se, sx = bool(signals.short_entries[t, s]), bool(signals.short_exits[t, s])
                out.flags[s] = {"entry": e, "exit": x, "short_entry": se, "short_exit": sx}
                out.indicators[s] = {
                    k: float(v[-1]) for k, v in signals.indicators[s].items() if len(v)
                }
                if not (e or x or se or sx):
                    continue
            close, direction, action = decide(sim.pos_sign[s], e, x, se, sx, sim.config.allow_short)
            self.pend_close[s], self.pend_open[s] = close, direction
            out.intents.append(Intent(s, close, direction, action))
        for i in range(n_fills, len(sim.exact)):
            qty, price, fee, realized = sim.exact[i]
            f = sim.fills
            out.fills.append(
                Fill(f["s"][i], f["side"][i], qty, price, fee, realized, f["reason"][i])
            )
        out.rejections = sim.rejections[n_rej:]
        return out

    def take_pending(self, s: int) -> tuple[bool, int]:
        """Hand the pending orders of symbol s to the caller (a routed runner places them
        now), so the model does not fill them at the next open."""
        pending = (self.pend_close[s], self.pend_open[s])
        self.pend_close[s], self.pend_open[s] = False, 0
        return pending

    def entry_quantity(self, s: int, direction: int, reference: Decimal) -> Decimal:
        """What the model would buy or sell to open a position at `reference`."""
        with localcontext(EXACT):
            price = self.sim.exec_price(s, reference, direction)
            return self.sim.size(self.data.n_bars - 1, s, price) if price > 0 else Decimal(0)

    def sync(self, cash: Decimal, positions: dict[int, tuple[Decimal, Decimal]]) -> None:
        """Set the model's book to the account's (cash, and quantity / average price per
        symbol), so sizing follows what the account really holds."""
        sim = self.sim
        sim.book.cash = cash
        sim.cash_f = float(cash)
        for s in range(self.n_symbols):
            qty, avg = positions.get(s, (Decimal(0), Decimal(0)))
            pos = sim.book.positions.setdefault(s, Position())
            pos.quantity, pos.avg_entry_price = qty, avg
            sim.qty_f[s], sim.avg_f[s] = float(qty), float(avg)
            sim.pos_sign[s] = (qty > 0) - (qty < 0)
