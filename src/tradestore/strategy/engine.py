"""The event path: an exact, bar-by-bar simulation in Decimal arithmetic.

Each bar t of the timeline, for the symbols that have a bar at t:

1. Pending closes (signals of the symbol's previous bar) fill at the open.
2. Pending entries fill at the open: sized from equity and free cash, refused when
   max_positions are open. Closes go first, so a slot freed at this open can be reused.
3. Stop loss and take profit are checked on the bar's low and high (a position opened at
   this open included). A gap through the level fills at the open; when both levels lie
   inside one bar the stop is assumed first (the pessimistic reading).
4. Equity is marked at the close.
5. The strategy's signals at the close become pending orders for the next bar.

Perpetuals pay funding as market.settle_funding books it: at each funding time F, the
position held then (every fill executed at or before F: fills happen at their bar's time)
pays settlement.funding_amount(quantity, mark, rate, contract size) into cash. It is
booked at the last bar at or before F, after that bar's fills and before its equity mark;
funding times before the first bar find no position.

Every order goes through the same checks as the live SQL API (trading/sql/order_rules.sql):
the quantity is truncated to step_size (to rules.SIZE_DECIMALS decimals on a listing
without one) and checked against min_qty / max_qty, the
notional against min_notional / max_notional at the fill price, and the fill price is
rounded to the tick grid (normalize_price, nearest tick after slippage). Fills update
cash and netting positions through accounting.Book, the mirror of apply_fill. A refused
order is recorded with the field and rule the live API would name.

Fill prices: market orders fill at the open x (1 + slippage) for a buy, x (1 - slippage)
for a sell; stop and take-profit orders fill at their level (or the open on a gap), with
the same slippage. The fee is quantity x price x contract size x the taker fee.

Quantities are exact end to end: a close fills exactly the held quantity, so a position
is flat after it to the last digit (no dust to block the next entry).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal, localcontext
from typing import Any

import numpy as np

from tradestore.strategy.accounting import Book
from tradestore.strategy.model import (
    BacktestConfig,
    FillTable,
    MarketData,
    Rejection,
    SignalMatrix,
    SimResult,
    to_decimal,
)
from tradestore.strategy.rules import EXACT, entry_size, normalize_price, rule
from tradestore.strategy.strategies import BarContext, Strategy
from tradestore.strategy.trades import build_trades
from tradestore.trading.settlement import funding_amount

__all__ = ["ACTIONS", "Progress", "run_event"]

Progress = Callable[[int, int], None]
ACTIONS = ("hold", "open_long", "open_short", "close", "reverse_to_long", "reverse_to_short")
_PROGRESS_EVERY = 1 << 16
_ONE = Decimal(1)
_HUNDRED = Decimal(100)


def decide(
    pos: int, entry: bool, exit_: bool, short_entry: bool, short_exit: bool, allow_short: bool
) -> tuple[bool, int, str]:
    """(close?, open direction, action) for a position sign and a bar's signals."""
    if pos > 0:
        reverse = allow_short and short_entry
        if exit_ or reverse:
            return True, (-1 if reverse else 0), ("reverse_to_short" if reverse else "close")
    elif pos < 0:
        if short_exit or entry:
            return True, (1 if entry else 0), ("reverse_to_long" if entry else "close")
    elif entry:
        return False, 1, "open_long"
    elif allow_short and short_entry:
        return False, -1, "open_short"
    return False, 0, "hold"


class _EventSim:
    def __init__(self, data: MarketData, config: BacktestConfig, strategy: Strategy | None):
        self.data = data
        self.config = config
        self.strategy = strategy
        self.book = Book(cash=config.initial_capital)
        self.n_sym = data.n_symbols
        self.rules = [i.rules for i in data.instruments]
        self.mult = [i.multiplier for i in data.instruments]
        self.mult_f = [float(m) for m in self.mult]
        self.deriv = [i.derivative for i in data.instruments]
        self.frac = config.size_fraction(data.n_symbols)
        self.slots = config.position_limit(data.n_symbols)
        # Whether the last entry sized was capped by the free cash (else by the size).
        self.cash_bound = False
        self.slip = config.slippage
        self.fee_cache: dict[float, Decimal] = {}
        # Float mirrors of the exact state, for marking equity each bar.
        self.cash_f = float(config.initial_capital)
        self.qty_f = [0.0] * self.n_sym
        self.avg_f = [0.0] * self.n_sym
        self.pos_sign = [0] * self.n_sym
        self.last_close = [float("nan")] * self.n_sym
        self.sl: list[Decimal | None] = [None] * self.n_sym
        self.tp: list[Decimal | None] = [None] * self.n_sym
        self.sl_f = [float("nan")] * self.n_sym
        self.tp_f = [float("nan")] * self.n_sym
        self.fills: dict[str, list[Any]] = {
            k: [] for k in ("t", "s", "side", "qty", "price", "fee", "realized", "reason", "sec")
        }
        self.exact: list[tuple[Decimal, Decimal, Decimal, Decimal]] = []
        self.rejections: list[Rejection] = []
        # Funding times of every symbol in time order: (ns since epoch, symbol, funding).
        self.funding = sorted(
            (
                (int(f.time.astype("datetime64[ns]").astype(np.int64)), s, f)
                for s, events in enumerate(data.funding)
                for f in events
            ),
            key=lambda e: (e[0], e[1]),
        )
        self.next_funding = 0
        self.funding_paid = Decimal(0)
        self.funding_payments = 0

    # ----------------------------------------------------------------- funding
    def pay_funding(self, before: int | None) -> None:
        """Book every funding time earlier than `before` (ns; None: all that are left)
        on the positions held then, as market.settle_funding does."""
        events, i = self.funding, self.next_funding
        while i < len(events) and (before is None or events[i][0] < before):
            _, s, f = events[i]
            i += 1
            pos = self.book.positions.get(s)
            if pos is None or pos.quantity == 0:
                continue
            amount = funding_amount(pos.quantity, f.mark, f.rate, self.mult[s])
            self.book.cash += amount
            self.funding_paid += amount
            self.funding_payments += 1
        self.next_funding = i
        self.cash_f = float(self.book.cash)

    # ----------------------------------------------------------------- pricing and rules
    def fee_rate(self, t: int, s: int) -> Decimal:
        value = float(self.data.fee_rates[t, s])
        cached = self.fee_cache.get(value)
        if cached is None:
            cached = self.fee_cache[value] = to_decimal(value)
        return cached

    def exec_price(self, s: int, ref: Decimal, side: int) -> Decimal:
        slipped = ref * (_ONE + self.slip) if side > 0 else ref * (_ONE - self.slip)
        return normalize_price(self.rules[s], slipped) or Decimal(0)

    def check(self, s: int, qty: Decimal, price: Decimal) -> int | None:
        """The rejection code the live order rules would give, or None."""
        rules = self.rules[s]
        if price <= 0:
            return 6
        if qty <= 0:
            return 0
        min_qty, max_qty = rule(rules, "min_qty"), rule(rules, "max_qty")
        if min_qty is not None and qty < min_qty:
            return 1
        if max_qty is not None and qty > max_qty:
            return 2
        notional = qty * price * self.mult[s]
        min_notional, max_notional = rule(rules, "min_notional"), rule(rules, "max_notional")
        if min_notional is not None and notional < min_notional:
            return 3
        if max_notional is not None and notional > max_notional:
            return 4
        return None

    def marks(self) -> tuple[Decimal, Decimal]:
        """(equity, exposure) at the last closes: exposure is the open notional."""
        equity = self.book.cash
        exposure = Decimal(0)
        for s, pos in self.book.positions.items():
            if pos.quantity == 0:
                continue
            mark = to_decimal(self.last_close[s])
            if self.deriv[s]:
                equity += pos.quantity * (mark - pos.avg_entry_price) * self.mult[s]
            else:
                equity += pos.quantity * mark * self.mult[s]
            exposure += pos.quantity.copy_abs() * mark * self.mult[s]
        return equity, exposure

    def size(self, t: int, s: int, price: Decimal) -> Decimal:
        """Quantity of an entry: spend equity x size_fraction (fees included), at most
        the free cash (equity less the open notional), truncated to the step."""
        equity, exposure = self.marks()
        wanted, free = equity * self.frac, equity - exposure
        self.cash_bound = free < wanted
        spend = min(wanted, free)
        if spend <= 0:
            return Decimal(0)
        unit = price * self.mult[s]
        qty = spend / (_ONE + self.fee_rate(t, s)) / unit
        max_notional = rule(self.rules[s], "max_notional")
        if max_notional is not None:
            qty = min(qty, max_notional / unit)
        max_qty = rule(self.rules[s], "max_qty")
        if max_qty is not None:
            qty = min(qty, max_qty)
        return entry_size(self.rules[s], qty)

    # ----------------------------------------------------------------- fills
    def fill(
        self, t: int, s: int, side: int, qty: Decimal, price: Decimal, reason: int, started: float
    ) -> bool:
        code = self.check(s, qty, price)
        if code is not None:
            self.reject(t, s, side, qty, price, code, started)
            return False
        fee = qty * price * self.mult[s] * self.fee_rate(t, s)
        effect = self.book.apply_fill(
            s,
            "BUY" if side > 0 else "SELL",
            qty,
            price,
            fee,
            multiplier=self.mult[s],
            derivative=self.deriv[s],
        )
        pos = self.book.positions[s]
        self.qty_f[s] = float(pos.quantity)
        self.avg_f[s] = float(pos.avg_entry_price)
        self.pos_sign[s] = (pos.quantity > 0) - (pos.quantity < 0)
        self.cash_f = float(self.book.cash)
        if pos.quantity == 0:
            self.sl[s] = self.tp[s] = None
            self.sl_f[s] = self.tp_f[s] = float("nan")
        f = self.fills
        f["t"].append(t)
        f["s"].append(s)
        f["side"].append(side)
        f["qty"].append(float(qty))
        f["price"].append(float(price))
        f["fee"].append(float(fee))
        f["realized"].append(float(effect.realized_pnl))
        f["reason"].append(reason)
        f["sec"].append(time.perf_counter() - started)
        self.exact.append((qty, price, fee, effect.realized_pnl))
        return True

    def reject(
        self, t: int, s: int, side: int, qty: Decimal, price: Decimal, code: int, started: float
    ) -> None:
        self.rejections.append(
            Rejection(t, s, side, float(qty), float(price), code, time.perf_counter() - started)
        )

    def close(self, t: int, s: int, ref: Decimal, reason: int) -> bool:
        started = time.perf_counter()
        pos = self.book.positions[s]
        side = -1 if pos.quantity > 0 else 1
        # Close exactly what is held (copy_abs never rounds).
        held = pos.quantity.copy_abs()
        done = self.fill(t, s, side, held, self.exec_price(s, ref, side), reason, started)
        if not done and reason:
            # A refused stop or take-profit order no longer exists (as live): drop both.
            self.sl[s] = self.tp[s] = None
            self.sl_f[s] = self.tp_f[s] = float("nan")
        return done

    def open(self, t: int, s: int, direction: int, ref: Decimal) -> None:
        started = time.perf_counter()
        price = self.exec_price(s, ref, direction)
        if sum(1 for p in self.pos_sign if p) >= self.slots:
            self.reject(t, s, direction, Decimal(0), price, 5, started)
            return
        qty = self.size(t, s, price) if price > 0 else Decimal(0)
        if price > 0 and qty <= 0 and not self.cash_bound:
            # The cash was there: the position size is what buys less than one step.
            self.reject(t, s, direction, qty, price, 7, started)
            return
        if self.fill(t, s, direction, qty, price, 0, started):
            self.set_exits(s, direction)

    def set_exits(self, s: int, direction: int) -> None:
        entry = self.book.positions[s].avg_entry_price
        cfg = self.config
        if cfg.stop_loss_pct:
            level = entry * (_ONE - direction * cfg.stop_loss_pct / _HUNDRED)
            self.sl[s] = normalize_price(self.rules[s], level)
            self.sl_f[s] = float(self.sl[s])  # type: ignore[arg-type]
        if cfg.take_profit_pct:
            level = entry * (_ONE + direction * cfg.take_profit_pct / _HUNDRED)
            self.tp[s] = normalize_price(self.rules[s], level)
            self.tp_f[s] = float(self.tp[s])  # type: ignore[arg-type]

    def check_exits(self, t: int, s: int, o: float, h: float, lo: float) -> None:
        sign = self.pos_sign[s]
        sl, tp = self.sl[s], self.tp[s]
        if sign > 0:
            if sl is not None and lo <= self.sl_f[s]:
                ref = to_decimal(o) if o <= self.sl_f[s] else sl
                self.close(t, s, ref, 1)
            elif tp is not None and h >= self.tp_f[s]:
                ref = to_decimal(o) if o >= self.tp_f[s] else tp
                self.close(t, s, ref, 2)
        elif sign < 0:
            if sl is not None and h >= self.sl_f[s]:
                ref = to_decimal(o) if o >= self.sl_f[s] else sl
                self.close(t, s, ref, 1)
            elif tp is not None and lo <= self.tp_f[s]:
                ref = to_decimal(o) if o <= self.tp_f[s] else tp
                self.close(t, s, ref, 2)

    # ----------------------------------------------------------------- the loop
    def run(self, signals: SignalMatrix | None, progress: Progress | None) -> SimResult:
        started = time.perf_counter()
        data, n_sym, n_bars = self.data, self.n_sym, self.data.n_bars
        opens = [data.open[:, s].tolist() for s in range(n_sym)]
        highs = [data.high[:, s].tolist() for s in range(n_sym)]
        lows = [data.low[:, s].tolist() for s in range(n_sym)]
        closes = [data.close[:, s].tolist() for s in range(n_sym)]
        event_only = self.strategy is not None and self.strategy.event_only
        if event_only:
            bars = [data.bars(s) for s in range(n_sym)]
            bar_index = [-1] * n_sym
        else:
            if signals is None:
                raise ValueError("signals are required unless the strategy decides in on_bar")
            flags = [
                (
                    signals.entries[:, s].tolist(),
                    signals.exits[:, s].tolist(),
                    signals.short_entries[:, s].tolist(),
                    signals.short_exits[:, s].tolist(),
                )
                for s in range(n_sym)
            ]
            any_flag = [signals.any()[:, s].tolist() for s in range(n_sym)]
        allow_short = self.config.allow_short
        pend_close = [False] * n_sym
        pend_open = [0] * n_sym
        equity = np.empty(n_bars, dtype=np.float64)
        events: list[tuple[int, int, str]] = []
        pos_sign, last_close, qty_f, avg_f, mult_f, deriv = (
            self.pos_sign,
            self.last_close,
            self.qty_f,
            self.avg_f,
            self.mult_f,
            self.deriv,
        )
        symbols = range(n_sym)
        bar_ns = data.times.astype("datetime64[ns]").astype(np.int64).tolist()
        funded = bool(self.funding)
        if funded and n_bars:
            self.pay_funding(bar_ns[0])  # before the first bar: no position, nothing paid

        for t in range(n_bars):
            # 1-2. orders placed at the previous close fill at this open; closes first.
            for s in symbols:
                if pend_close[s] and opens[s][t] == opens[s][t]:
                    pend_close[s] = False
                    if pos_sign[s]:
                        self.close(t, s, to_decimal(opens[s][t]), 0)
            for s in symbols:
                if pend_open[s] and opens[s][t] == opens[s][t]:
                    direction, pend_open[s] = pend_open[s], 0
                    if not pos_sign[s]:
                        self.open(t, s, direction, to_decimal(opens[s][t]))
            # 3-4. stops inside the bar, then the mark at the close.
            for s in symbols:
                o = opens[s][t]
                if o == o:
                    if pos_sign[s] and (self.sl[s] is not None or self.tp[s] is not None):
                        self.check_exits(t, s, o, highs[s][t], lows[s][t])
                    last_close[s] = closes[s][t]
            # Funding times from this bar's time to the next bar's (all at the last bar):
            # the position then is this bar's, since every fill so far is at or before them.
            if funded:
                self.pay_funding(bar_ns[t + 1] if t + 1 < n_bars else None)
            value = self.cash_f
            for s in symbols:
                if pos_sign[s]:
                    if deriv[s]:
                        value += qty_f[s] * (last_close[s] - avg_f[s]) * mult_f[s]
                    else:
                        value += qty_f[s] * last_close[s] * mult_f[s]
            equity[t] = value
            # 5. signals at the close.
            for s in symbols:
                if opens[s][t] != opens[s][t]:
                    continue
                if event_only:
                    bar_index[s] += 1
                    intent = self.strategy.on_bar(  # type: ignore[union-attr]
                        BarContext(
                            t,
                            s,
                            data.instruments[s].symbol,
                            bar_index[s],
                            bars[s],
                            self.book.position(s).quantity,
                            self.book.cash,
                            Decimal(repr(value)),
                        )
                    )
                    if intent is None:
                        continue
                    e, x = intent == "long", intent == "close" and pos_sign[s] > 0
                    se, sx = intent == "short", intent == "close" and pos_sign[s] < 0
                elif any_flag[s][t]:
                    e, x, se, sx = (flags[s][0][t], flags[s][1][t], flags[s][2][t], flags[s][3][t])
                else:
                    continue
                do_close, direction, action = decide(pos_sign[s], e, x, se, sx, allow_short)
                pend_close[s], pend_open[s] = do_close, direction
                events.append((t, s, action))
            if progress is not None and (t + 1) % _PROGRESS_EVERY == 0:
                progress(t + 1, n_bars)
        if progress is not None:
            progress(n_bars, n_bars)

        final_equity, _ = self.marks() if n_bars else (self.book.cash, None)
        f = self.fills
        fills = FillTable(
            t=np.asarray(f["t"], dtype=np.int64),
            s=np.asarray(f["s"], dtype=np.int64),
            side=np.asarray(f["side"], dtype=np.int8),
            quantity=np.asarray(f["qty"], dtype=np.float64),
            price=np.asarray(f["price"], dtype=np.float64),
            fee=np.asarray(f["fee"], dtype=np.float64),
            realized=np.asarray(f["realized"], dtype=np.float64),
            reason=np.asarray(f["reason"], dtype=np.int8),
            exact=self.exact,
            seconds=np.asarray(f["sec"], dtype=np.float64),
        )
        return SimResult(
            engine="event",
            times=data.times,
            equity=equity,
            fills=fills,
            trades=build_trades(fills, np.asarray(self.mult_f)),
            rejections_=self.rejections,
            final_value=final_equity,
            initial_capital=self.config.initial_capital,
            seconds=time.perf_counter() - started,
            signal_events_=events,
            funding_paid=self.funding_paid,
            funding_payments=self.funding_payments,
        )


def run_event(
    data: MarketData,
    signals: SignalMatrix | None,
    config: BacktestConfig,
    *,
    strategy: Strategy | None = None,
    progress: Progress | None = None,
) -> SimResult:
    """Simulate exactly, bar by bar (see the module docstring for the rules). All Decimal
    arithmetic of the run happens in rules.EXACT, never in the ambient 28-digit context."""
    with localcontext(EXACT):
        return _EventSim(data, config, strategy).run(signals, progress)
