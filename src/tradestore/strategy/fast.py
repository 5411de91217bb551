"""The fast path: the event path's rules (engine.py) compiled with numba, in float64.

It makes the same decisions in the same order as the event path, so its trades are the
same trades (tests/strategy/test_fast_path.py). It differs in arithmetic only: money is
float64 here, as in vectorbt, and equal to the exact event path to about 1e-12 relative.
Rounding to the tick and step grids is done in integers of the grid's decimal unit, so a
rounded price or quantity is the float nearest to the exact decimal the event path gets;
a 1e-9 tolerance at floor boundaries absorbs float noise (0.3 / 0.1 = 2.9999999999999996).

Use it for sweeps and long histories; single runs default to the exact path.
"""

from __future__ import annotations

import math
import time
from decimal import Decimal

import numpy as np

from tradestore.db.errors import ValidationError
from tradestore.extras import requires_extra
from tradestore.strategy.engine import ACTIONS
from tradestore.strategy.model import (
    BacktestConfig,
    Deferred,
    FillTable,
    MarketData,
    Rejection,
    SignalMatrix,
    SimResult,
    to_decimal,
)
from tradestore.strategy.trades import build_trades

with requires_extra("backtest", "the fast backtest engine"):
    import numba

__all__ = ["run_fast", "warm_up"]

_NAN = np.nan


def _grid(value: float) -> tuple[float, float]:
    """A grid step as (integer units, 10**decimals), or (NaN, NaN) without a step."""
    if value is None or math.isnan(value):
        return _NAN, _NAN
    dec = Decimal(repr(value)).normalize()
    decimals = max(0, -int(dec.as_tuple().exponent))
    if decimals > 22:
        return value, 1.0
    return float(dec.scaleb(decimals)), float(10**decimals)


@numba.njit(cache=True, inline="always")
def _round_price(p, s, tick_m, tick_scale, band_floor, band_m, band_scale, n_band):
    m = tick_m[s]
    scale = tick_scale[s]
    for b in range(n_band[s]):
        if band_floor[s, b] <= p:
            m = band_m[s, b]
            scale = band_scale[s, b]
    if math.isnan(m) or m <= 0.0:
        return p
    k = math.floor(p * scale / m + 0.5 + 1e-9)
    return k * m / scale


@numba.njit(cache=True, inline="always")
def _trunc_size(q, s, step_m, step_scale):
    m = step_m[s]
    if math.isnan(m) or m <= 0.0:
        return q
    x = q * step_scale[s] / m
    k = math.floor(x + 1e-9 + x * 1e-13)
    return k * m / step_scale[s]


@numba.njit(cache=True, inline="always")
def _check(s, qty, price, min_qty, max_qty, min_notional, max_notional, mult):
    if not price > 0.0:
        return 6
    if not qty > 0.0:
        return 0
    tol = 1e-12
    if not math.isnan(min_qty[s]) and qty < min_qty[s] * (1.0 - tol):
        return 1
    if not math.isnan(max_qty[s]) and qty > max_qty[s] * (1.0 + tol):
        return 2
    notional = qty * price * mult[s]
    if not math.isnan(min_notional[s]) and notional < min_notional[s] * (1.0 - tol):
        return 3
    if not math.isnan(max_notional[s]) and notional > max_notional[s] * (1.0 + tol):
        return 4
    return -1


@numba.njit(cache=True)
def _simulate(
    open_, high, low, close, fee_rates, entries, exits, sentries, sexits,
    tick_m, tick_scale, band_floor, band_m, band_scale, n_band,
    step_m, step_scale, min_qty, max_qty, min_notional, max_notional, mult, deriv,
    init_cash, frac, slip, sl_pct, tp_pct, max_positions, allow_short,
    cap_fills, cap_rej, cap_events,
):  # fmt: skip
    n_bars, n_sym = close.shape
    equity = np.empty(n_bars)
    f_t = np.empty(cap_fills, np.int64)
    f_s = np.empty(cap_fills, np.int64)
    f_side = np.empty(cap_fills, np.int8)
    f_qty = np.empty(cap_fills)
    f_price = np.empty(cap_fills)
    f_fee = np.empty(cap_fills)
    f_real = np.empty(cap_fills)
    f_reason = np.empty(cap_fills, np.int8)
    r_t = np.empty(cap_rej, np.int64)
    r_s = np.empty(cap_rej, np.int64)
    r_side = np.empty(cap_rej, np.int8)
    r_qty = np.empty(cap_rej)
    r_price = np.empty(cap_rej)
    r_code = np.empty(cap_rej, np.int8)
    e_t = np.empty(cap_events, np.int64)
    e_s = np.empty(cap_events, np.int64)
    e_act = np.empty(cap_events, np.int8)
    nf = 0
    nr = 0
    ne = 0

    cash = init_cash
    qty = np.zeros(n_sym)
    avg = np.zeros(n_sym)
    sign = np.zeros(n_sym, np.int64)
    last_close = np.full(n_sym, np.nan)
    sl = np.full(n_sym, np.nan)
    tp = np.full(n_sym, np.nan)
    pend_close = np.zeros(n_sym, np.bool_)
    pend_open = np.zeros(n_sym, np.int64)

    for t in range(n_bars):
        # Three passes per bar, as in the event path: pending closes, pending entries,
        # stops. kind: 0 close at open, 1 entry at open, 2 stops inside the bar.
        for kind in range(3):
            for s in range(n_sym):
                o = open_[t, s]
                if math.isnan(o):
                    continue
                side = 0
                ref = 0.0
                reason = 0
                entering = False
                if kind == 0:
                    if not pend_close[s]:
                        continue
                    pend_close[s] = False
                    if sign[s] == 0:
                        continue
                    side = -sign[s]
                    ref = o
                elif kind == 1:
                    if pend_open[s] == 0:
                        continue
                    side = pend_open[s]
                    pend_open[s] = 0
                    if sign[s] != 0:
                        continue
                    ref = o
                    entering = True
                else:
                    if sign[s] == 0 or (math.isnan(sl[s]) and math.isnan(tp[s])):
                        continue
                    h = high[t, s]
                    lo = low[t, s]
                    side = -sign[s]
                    if sign[s] > 0:
                        if not math.isnan(sl[s]) and lo <= sl[s]:
                            ref = o if o <= sl[s] else sl[s]
                            reason = 1
                        elif not math.isnan(tp[s]) and h >= tp[s]:
                            ref = o if o >= tp[s] else tp[s]
                            reason = 2
                    else:
                        if not math.isnan(sl[s]) and h >= sl[s]:
                            ref = o if o >= sl[s] else sl[s]
                            reason = 1
                        elif not math.isnan(tp[s]) and lo <= tp[s]:
                            ref = o if o <= tp[s] else tp[s]
                            reason = 2
                    if reason == 0:
                        continue

                slipped = ref * (1.0 + slip) if side > 0 else ref * (1.0 - slip)
                price = _round_price(
                    slipped, s, tick_m, tick_scale, band_floor, band_m, band_scale, n_band
                )
                fee_rate = fee_rates[t, s]
                if entering:
                    n_open = 0
                    for j in range(n_sym):
                        if sign[j] != 0:
                            n_open += 1
                    if n_open >= max_positions:
                        r_t[nr] = t
                        r_s[nr] = s
                        r_side[nr] = side
                        r_qty[nr] = 0.0
                        r_price[nr] = price
                        r_code[nr] = 5
                        nr += 1
                        continue
                    q = 0.0
                    cash_bound = False
                    if price > 0.0:
                        eq = cash
                        exposure = 0.0
                        for j in range(n_sym):
                            if sign[j] != 0:
                                if deriv[j]:
                                    eq += qty[j] * (last_close[j] - avg[j]) * mult[j]
                                else:
                                    eq += qty[j] * last_close[j] * mult[j]
                                exposure += abs(qty[j]) * last_close[j] * mult[j]
                        cash_bound = eq - exposure < eq * frac
                        spend = min(eq * frac, eq - exposure)
                        if spend > 0.0:
                            unit = price * mult[s]
                            q = spend / (1.0 + fee_rate) / unit
                            if not math.isnan(max_notional[s]):
                                q = min(q, max_notional[s] / unit)
                            if not math.isnan(max_qty[s]):
                                q = min(q, max_qty[s])
                            q = _trunc_size(q, s, step_m, step_scale)
                    if price > 0.0 and not q > 0.0 and not cash_bound:
                        # The cash was there: the position size buys less than one step.
                        r_t[nr] = t
                        r_s[nr] = s
                        r_side[nr] = side
                        r_qty[nr] = q
                        r_price[nr] = price
                        r_code[nr] = 7
                        nr += 1
                        continue
                else:
                    q = abs(qty[s])
                code = _check(s, q, price, min_qty, max_qty, min_notional, max_notional, mult)
                if code >= 0:
                    r_t[nr] = t
                    r_s[nr] = s
                    r_side[nr] = side
                    r_qty[nr] = q
                    r_price[nr] = price
                    r_code[nr] = code
                    nr += 1
                    if reason != 0:
                        sl[s] = np.nan
                        tp[s] = np.nan
                    continue

                fee = q * price * mult[s] * fee_rate
                realized = 0.0
                if entering:
                    qty[s] = side * q
                    avg[s] = price
                    sign[s] = side
                    if deriv[s]:
                        cash -= fee
                    else:
                        cash -= side * q * price * mult[s] + fee
                    sl[s] = np.nan
                    tp[s] = np.nan
                    if sl_pct > 0.0:
                        sl[s] = _round_price(
                            price * (1.0 - side * sl_pct / 100.0),
                            s,
                            tick_m,
                            tick_scale,
                            band_floor,
                            band_m,
                            band_scale,
                            n_band,
                        )
                    if tp_pct > 0.0:
                        tp[s] = _round_price(
                            price * (1.0 + side * tp_pct / 100.0),
                            s,
                            tick_m,
                            tick_scale,
                            band_floor,
                            band_m,
                            band_scale,
                            n_band,
                        )
                else:
                    realized = q * (price - avg[s]) * sign[s] * mult[s]
                    if deriv[s]:
                        cash += realized - fee
                    else:
                        cash += sign[s] * q * price * mult[s] - fee
                    qty[s] = 0.0
                    avg[s] = 0.0
                    sign[s] = 0
                    sl[s] = np.nan
                    tp[s] = np.nan
                f_t[nf] = t
                f_s[nf] = s
                f_side[nf] = side
                f_qty[nf] = q
                f_price[nf] = price
                f_fee[nf] = fee
                f_real[nf] = realized
                f_reason[nf] = reason
                nf += 1

        value = cash
        for s in range(n_sym):
            if not math.isnan(open_[t, s]):
                last_close[s] = close[t, s]
        for s in range(n_sym):
            if sign[s] != 0:
                if deriv[s]:
                    value += qty[s] * (last_close[s] - avg[s]) * mult[s]
                else:
                    value += qty[s] * last_close[s] * mult[s]
        equity[t] = value

        for s in range(n_sym):
            if math.isnan(open_[t, s]):
                continue
            e = entries[t, s]
            x = exits[t, s]
            se = sentries[t, s]
            sx = sexits[t, s]
            if not (e or x or se or sx):
                continue
            # decide(): 0 hold, 1 open_long, 2 open_short, 3 close, 4 reverse_to_long,
            # 5 reverse_to_short
            act = 0
            if sign[s] > 0:
                reverse = allow_short and se
                if x or reverse:
                    pend_close[s] = True
                    if reverse:
                        pend_open[s] = -1
                        act = 5
                    else:
                        act = 3
            elif sign[s] < 0:
                if sx or e:
                    pend_close[s] = True
                    if e:
                        pend_open[s] = 1
                        act = 4
                    else:
                        act = 3
            elif e:
                pend_open[s] = 1
                act = 1
            elif allow_short and se:
                pend_open[s] = -1
                act = 2
            e_t[ne] = t
            e_s[ne] = s
            e_act[ne] = act
            ne += 1

    return (
        equity, cash,
        f_t[:nf], f_s[:nf], f_side[:nf], f_qty[:nf], f_price[:nf], f_fee[:nf], f_real[:nf],
        f_reason[:nf],
        r_t[:nr], r_s[:nr], r_side[:nr], r_qty[:nr], r_price[:nr], r_code[:nr],
        e_t[:ne], e_s[:ne], e_act[:ne],
    )  # fmt: skip


def _rule_arrays(data: MarketData) -> dict[str, np.ndarray]:
    arrays = [i.arrays for i in data.instruments]
    n = len(arrays)
    width = max([len(a.band_floors) for a in arrays] + [1])
    out: dict[str, np.ndarray] = {
        "tick_m": np.empty(n), "tick_scale": np.empty(n),
        "band_floor": np.full((n, width), np.inf), "band_m": np.full((n, width), np.nan),
        "band_scale": np.full((n, width), np.nan), "n_band": np.zeros(n, np.int64),
        "step_m": np.empty(n), "step_scale": np.empty(n),
    }  # fmt: skip
    for key in ("min_qty", "max_qty", "min_notional", "max_notional"):
        out[key] = np.array([getattr(a, key) for a in arrays], dtype=np.float64)
    out["mult"] = np.array([a.contract_size for a in arrays], dtype=np.float64)
    out["deriv"] = np.array([i.derivative for i in data.instruments], dtype=np.bool_)
    for s, a in enumerate(arrays):
        out["tick_m"][s], out["tick_scale"][s] = _grid(a.tick)
        out["step_m"][s], out["step_scale"][s] = _grid(a.step)
        out["n_band"][s] = len(a.band_floors)
        for b, (floor, tick) in enumerate(zip(a.band_floors, a.band_ticks, strict=True)):
            out["band_floor"][s, b] = floor
            out["band_m"][s, b], out["band_scale"][s, b] = _grid(tick)
    return out


def run_fast(data: MarketData, signals: SignalMatrix, config: BacktestConfig) -> SimResult:
    """Simulate with the compiled kernel (same rules and order as engine.run_event).
    Perpetuals with funding times in the range are refused: the kernel pays no funding,
    the event engine does (exactly as the books)."""
    if data.has_funding:
        funded = [i.symbol for i, f in zip(data.instruments, data.funding, strict=False) if f]
        raise ValidationError(
            "engine",
            "the fast path does not pay perpetual funding; run it on the event engine "
            "(--engine event)",
            ", ".join(funded),
        )
    started = time.perf_counter()
    r = _rule_arrays(data)
    n_entries = int(np.count_nonzero(signals.entries)) + int(
        np.count_nonzero(signals.short_entries)
    )
    any_flag = int(np.count_nonzero(signals.any()))
    cap_fills = 2 * n_entries + 2
    out = _simulate(
        np.ascontiguousarray(data.open), np.ascontiguousarray(data.high),
        np.ascontiguousarray(data.low), np.ascontiguousarray(data.close),
        np.ascontiguousarray(data.fee_rates),
        np.ascontiguousarray(signals.entries), np.ascontiguousarray(signals.exits),
        np.ascontiguousarray(signals.short_entries), np.ascontiguousarray(signals.short_exits),
        r["tick_m"], r["tick_scale"], r["band_floor"], r["band_m"], r["band_scale"], r["n_band"],
        r["step_m"], r["step_scale"], r["min_qty"], r["max_qty"], r["min_notional"],
        r["max_notional"], r["mult"], r["deriv"],
        float(config.initial_capital), float(config.size_fraction(data.n_symbols)),
        float(config.slippage),
        float(config.stop_loss_pct or 0), float(config.take_profit_pct or 0),
        int(config.position_limit(data.n_symbols)), bool(config.allow_short),
        cap_fills, 2 * any_flag + cap_fills, any_flag + 1,
    )  # fmt: skip
    (equity, _cash, f_t, f_s, f_side, f_qty, f_price, f_fee, f_real, f_reason,
     r_t, r_s, r_side, r_qty, r_price, r_code, e_t, e_s, e_act) = out  # fmt: skip
    fills = FillTable(f_t, f_s, f_side, f_qty, f_price, f_fee, f_real, f_reason)
    rejections = Deferred(
        len(r_t),
        lambda: [
            Rejection(int(a), int(b), int(c), float(d), float(e), int(f))
            for a, b, c, d, e, f in zip(r_t, r_s, r_side, r_qty, r_price, r_code, strict=True)
        ],
    )
    events = Deferred(
        len(e_t),
        lambda: [
            (int(a), int(b), ACTIONS[int(c)])
            for a, b, c in zip(e_t.tolist(), e_s.tolist(), e_act.tolist(), strict=True)
        ],
    )
    final = to_decimal(equity[-1]) if len(equity) else config.initial_capital
    return SimResult(
        engine="fast",
        times=data.times,
        equity=equity,
        fills=fills,
        trades=build_trades(fills, r["mult"]),
        rejections_=rejections,
        final_value=final,
        initial_capital=config.initial_capital,
        seconds=time.perf_counter() - started,
        signal_events_=events,
    )


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel, so a timed run measures the run."""
    n = 3
    times = np.arange(n).astype("datetime64[m]")
    prices = np.array([1.0, 2.0, 3.0])
    data = MarketData.single(times, prices, prices, prices, prices)
    sig = SignalMatrix.empty(n, 1)
    sig.entries[0, 0] = True
    run_fast(data, sig, BacktestConfig())
