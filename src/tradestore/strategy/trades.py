"""Round trips from fills. The engines never add to or partly reduce a position, so each
symbol's fills alternate: one opens from flat, the next closes to flat."""

from __future__ import annotations

import numpy as np

from tradestore.strategy.model import FillTable, TradeTable

__all__ = ["build_trades"]


def build_trades(fills: FillTable, multipliers: np.ndarray | None = None) -> TradeTable:
    """Pair each symbol's opening fill with the fill that closes it (an open trade has
    exit -1). multipliers: contract size per symbol (1 for spot)."""
    n = len(fills)
    order = np.lexsort((np.arange(n), fills.s))
    s_sorted = fills.s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s_sorted)) + 1] if n else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, n]).astype(np.int64)
    rank = np.arange(n) - np.repeat(starts, sizes)
    open_pos = np.flatnonzero(rank % 2 == 0)
    has_exit = open_pos + 1 < n
    has_exit[has_exit] = s_sorted[open_pos[has_exit] + 1] == s_sorted[open_pos[has_exit]]
    entry = order[open_pos]
    exit_ = np.full(len(entry), -1, dtype=np.int64)
    exit_[has_exit] = order[open_pos[has_exit] + 1]
    by_time = np.argsort(entry, kind="stable")
    entry, exit_, has_exit = entry[by_time], exit_[by_time], has_exit[by_time]

    qty = fills.quantity[entry]
    entry_price = fills.price[entry]
    safe_exit = np.where(has_exit, exit_, 0)
    exit_price = np.where(has_exit, fills.price[safe_exit], np.nan)
    exit_fee = np.where(has_exit, fills.fee[safe_exit], 0.0)
    fees = fills.fee[entry] + exit_fee
    pnl = np.where(has_exit, fills.realized[safe_exit] - fees, np.nan)
    mult = multipliers[fills.s[entry]] if multipliers is not None else 1.0
    mult_notional = qty * entry_price * mult
    with np.errstate(divide="ignore", invalid="ignore"):
        ret = np.where(mult_notional > 0, pnl / mult_notional, np.nan)
    return TradeTable(
        s=fills.s[entry],
        direction=fills.side[entry].astype(np.int8),
        entry_t=fills.t[entry],
        exit_t=np.where(has_exit, fills.t[safe_exit], -1),
        quantity=qty,
        entry_price=entry_price,
        exit_price=exit_price,
        pnl=pnl,
        fees=fees,
        ret=ret,
        exit_reason=np.where(has_exit, fills.reason[safe_exit], -1).astype(np.int8),
        entry_fill=entry,
        exit_fill=exit_,
    )
