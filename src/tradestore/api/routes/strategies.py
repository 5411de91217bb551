"""Strategies and backtest runs (analytics.strategies, analytics.backtest_runs).

A user sees their own strategies and runs, and runs that belong to nobody (started from
the CLI); row-level security decides. A run's detail carries its metrics, its equity
curve (stored thinned to at most 2,000 points) and monthly returns; its round trips only
with include_trades=true.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from tradestore.api.context import UserContext, current_user
from tradestore.api.paging import CursorParam, LimitParam, decode_cursor, split_page
from tradestore.api.schemas import (
    BacktestDetailOut,
    BacktestOut,
    Page,
    SignalOut,
    StrategyDetailOut,
    StrategyOut,
)
from tradestore.cache import strategies as strategy_cache
from tradestore.db.errors import NotFound
from tradestore.db.query import dicts

__all__ = ["router"]

router = APIRouter(tags=["strategies"])

MAX_TRADES_SHOWN = 1000
_SIGNALS_SHOWN = 20

_STRATEGY = """
SELECT id, name, strategy_type, description, parameters, is_active, is_backtesting,
       total_trades, total_pnl, win_rate, last_executed, created_at
  FROM analytics.strategies
"""
_RUN_COLUMNS = """id, strategy_id, strategy_name, symbols, timeframe, start_date, end_date, status,
    initial_capital, final_value, total_return, annual_return, sharpe_ratio, sortino_ratio,
    max_drawdown, win_rate, profit_factor, total_trades, created_at, finished_at"""
_RUNS = f"""
SELECT {_RUN_COLUMNS} FROM analytics.backtest_runs
 WHERE (%(strategy)s::bigint IS NULL OR strategy_id = %(strategy)s)
   AND (%(status)s::text IS NULL OR status = %(status)s)
   AND (%(before)s::bigint IS NULL OR id < %(before)s)
 ORDER BY id DESC LIMIT %(limit)s
"""
_RUN = f"""
SELECT {_RUN_COLUMNS}, parameters, fee_rate, slippage, winning_trades, losing_trades, avg_win,
       avg_loss, largest_win, largest_loss, execution_time, error,
       coalesce(equity_curve, '[]'::jsonb) AS equity_curve, monthly_returns,
       CASE WHEN %(trades)s THEN jsonb_path_query_array(trade_history, '$[0 to {MAX_TRADES_SHOWN - 1}]')
       END AS trades
  FROM analytics.backtest_runs WHERE id = %(id)s
"""


@router.get("/strategies", summary="The user's strategies")
def list_strategies(ctx: UserContext = Depends(current_user)) -> list[StrategyOut]:
    with ctx.db() as conn:
        rows = dicts(conn, _STRATEGY + " ORDER BY id")
    return [StrategyOut.model_validate(r) for r in rows]


@router.get("/strategies/{strategy_id}", summary="A strategy, its latest signals and backtests",
            responses={404: {}})  # fmt: skip
def get_strategy(strategy_id: int, ctx: UserContext = Depends(current_user)) -> StrategyDetailOut:
    with ctx.db() as conn:
        found = dicts(conn, _STRATEGY + " WHERE id = %s", (strategy_id,))
        if not found:
            raise NotFound("strategy", strategy_id)
        # strategy:{id}:signals through Redis (rebuilt from PostgreSQL on a miss).
        signals = (
            strategy_cache.signals(
                ctx.cache, conn, strategy_id, user_id=ctx.user_id, limit=_SIGNALS_SHOWN
            )
            or []
        )
        runs = dicts(
            conn,
            _RUNS,
            {"strategy": strategy_id, "status": None, "before": None, "limit": 20},
        )
    return StrategyDetailOut.model_validate(
        {
            **found[0],
            "signals": [SignalOut.model_validate(s.model_dump()) for s in signals],
            "backtests": [BacktestOut.model_validate(r) for r in runs],
        }
    )


@router.get("/backtests", summary="Backtest runs, newest first")
def list_backtests(
    strategy_id: int | None = Query(None, gt=0),
    status: str | None = Query(
        None, pattern="^(PENDING|RUNNING|COMPLETED|FAILED|CANCELED)$", description="run status"
    ),
    limit: int = LimitParam,
    cursor: str | None = CursorParam,
    ctx: UserContext = Depends(current_user),
) -> Page[BacktestOut]:
    before = decode_cursor(cursor, timed=False)
    params: dict[str, Any] = {
        "strategy": strategy_id,
        "status": status,
        "before": before[1] if before else None,
        "limit": limit + 1,
    }
    with ctx.db() as conn:
        rows = dicts(conn, _RUNS, params)
    page, next_cursor = split_page(rows, limit, "id")
    return Page[BacktestOut](
        items=[BacktestOut.model_validate(r) for r in page], next_cursor=next_cursor, limit=limit
    )


@router.get("/backtests/{run_id}", summary="A backtest run: metrics and equity curve",
            responses={404: {}})  # fmt: skip
def get_backtest(
    run_id: int,
    include_trades: bool = Query(False, description=f"the first {MAX_TRADES_SHOWN} round trips"),
    ctx: UserContext = Depends(current_user),
) -> BacktestDetailOut:
    with ctx.db() as conn:
        found = dicts(conn, _RUN, {"id": run_id, "trades": include_trades})
    if not found:
        raise NotFound("backtest run", run_id)
    return BacktestDetailOut.model_validate(found[0])
