"""Run a strategy over every symbol of the market data and place its signals on the
shared timeline."""

from __future__ import annotations

import time

import numpy as np

from tradestore.strategy.model import MarketData, SignalMatrix
from tradestore.strategy.strategies import Strategy

__all__ = ["compute_signals"]


def _flags(values: np.ndarray | None, n: int, name: str, symbol: str) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=np.bool_)
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} of {symbol} has shape {arr.shape}, expected ({n},)")
    return arr.astype(np.bool_, copy=False)


def compute_signals(strategy: Strategy, data: MarketData) -> SignalMatrix:
    """The strategy's signals for each symbol (computed on that symbol's own bars, so a
    gap in one symbol does not shift another's indicators)."""
    started = time.perf_counter()
    out = SignalMatrix.empty(data.n_bars, data.n_symbols)
    for s, instrument in enumerate(data.instruments):
        rows = data.rows(s)
        if strategy.event_only:
            out.indicators.append({})
            continue
        sig = strategy.signals(data.bars(s))
        n = data.n_bars if isinstance(rows, slice) else len(rows)
        out.entries[rows, s] = _flags(sig.entries, n, "entries", instrument.symbol)
        out.exits[rows, s] = _flags(sig.exits, n, "exits", instrument.symbol)
        out.short_entries[rows, s] = _flags(
            sig.short_entries, n, "short_entries", instrument.symbol
        )
        out.short_exits[rows, s] = _flags(sig.short_exits, n, "short_exits", instrument.symbol)
        out.indicators.append(sig.indicators)
    out.seconds = time.perf_counter() - started
    return out
