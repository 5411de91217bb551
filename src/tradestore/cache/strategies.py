"""Strategies through Redis: strategy:{id}:status and strategy:{id}:signals (the last 100).

The strategy runner calls `on_strategy_changed` after it updated a strategy row and
`on_signal` after it recorded a signal (analytics.strategy_executions, execution_type
'signal'); readers fall back to PostgreSQL and rebuild the key on a miss.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tradestore.cache import keys
from tradestore.cache.client import Cache
from tradestore.cache.keys import SIGNALS_KEPT, Signal, StrategyStatus
from tradestore.db.query import dicts, one

__all__ = ["on_signal", "on_strategy_changed", "signals", "strategy_status"]

_STATUS = """
    SELECT id AS strategy_id, user_id, name, is_active, is_backtesting, total_trades, total_pnl,
           win_rate, last_executed, updated_at
      FROM analytics.strategies WHERE id = %s
"""
_SIGNALS = """
    SELECT id, strategy_id, execution_type, success, signal_data AS data, created_at
      FROM analytics.strategy_executions
     WHERE strategy_id = %s AND execution_type = 'signal'
     ORDER BY created_at DESC, id DESC LIMIT %s
"""


def _load(conn: psycopg.Connection[Any], strategy_id: int) -> StrategyStatus | None:
    row = one(conn, _STATUS, (strategy_id,))
    return None if row is None else StrategyStatus(**row)


def on_strategy_changed(
    cache: Cache, conn: psycopg.Connection[Any], strategy_id: int
) -> StrategyStatus | None:
    status = _load(conn, strategy_id)
    if status is None:
        cache.invalidate(
            keys.strategy_status_key(strategy_id), keys.strategy_signals_key(strategy_id)
        )
        return None
    keys.set_strategy_status(cache, status)
    return status


def on_signal(cache: Cache, conn: psycopg.Connection[Any], execution_id: int) -> Signal | None:
    """A signal was recorded (committed): put it at the head of the strategy's list."""
    row = one(
        conn,
        "SELECT id, strategy_id, execution_type, success, signal_data AS data, created_at "
        "FROM analytics.strategy_executions WHERE id = %s AND execution_type = 'signal'",
        (execution_id,),
    )
    if row is None:
        return None
    signal = Signal(**row)
    keys.push_signal(cache, signal)
    return signal


def strategy_status(
    cache: Cache, conn: psycopg.Connection[Any], strategy_id: int, *, user_id: int | None = None
) -> StrategyStatus | None:
    """The strategy's status; None if missing or (with user_id) not theirs."""
    status = keys.get_strategy_status(cache, strategy_id)
    cache.record(status is not None)
    if status is None:
        status = _load(conn, strategy_id)
        if status is not None:
            keys.set_strategy_status(cache, status)
    if status is None or (user_id is not None and status.user_id != user_id):
        return None
    return status


def signals(
    cache: Cache,
    conn: psycopg.Connection[Any],
    strategy_id: int,
    *,
    user_id: int | None = None,
    limit: int = SIGNALS_KEPT,
) -> list[Signal] | None:
    """The strategy's latest signals, newest first; None if the strategy is missing or
    (with user_id) not theirs."""
    if strategy_status(cache, conn, strategy_id, user_id=user_id) is None:
        return None
    cached = keys.get_signals(cache, strategy_id, limit)
    cache.record(cached is not None)
    if cached is not None:
        return cached
    found = [Signal(**r) for r in dicts(conn, _SIGNALS, (strategy_id, SIGNALS_KEPT))]
    keys.set_signals(cache, strategy_id, found)
    return found[:limit]
