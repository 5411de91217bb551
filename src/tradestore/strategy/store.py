"""Backtest runs, sweeps and strategy executions in the database.

A run row is written (RUNNING) before the engine starts, so a crashed run stays visible
as RUNNING/FAILED; its results are written in one transaction with its execution log.
Ratios are stored as fractions; the view analytics.backtest_results shows them in
percent for seed 004.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from tradestore.db.errors import NotFound, ValidationError
from tradestore.db.query import dicts, one, translated
from tradestore.strategy.jsonout import dumps
from tradestore.strategy.metrics import Metrics, monthly_returns
from tradestore.strategy.model import REASONS, MarketData, SignalMatrix, SimResult

__all__ = [
    "METRICS",
    "best_runs",
    "complete_run",
    "create_run",
    "create_runs",
    "create_sweep",
    "equity_points",
    "execution_rows",
    "fail_run",
    "finish_sweep",
    "get_run",
    "get_sweep",
    "list_runs",
    "mark_running",
    "result_columns",
    "trade_history",
    "write_executions",
]

# Metrics a run list can be ordered by, and whether larger is better.
METRICS: dict[str, bool] = {
    "total_return": True,
    "annual_return": True,
    "sharpe_ratio": True,
    "sortino_ratio": True,
    "max_drawdown": False,
    "win_rate": True,
    "profit_factor": True,
    "final_value": True,
    "total_trades": True,
    "avg_win": True,
    "avg_loss": True,
    "largest_win": True,
    "largest_loss": True,
    "execution_time": False,
    "created_at": True,
    "id": True,
}
MAX_EQUITY_POINTS = 2000
_JSON_COLUMNS = ("equity_curve", "trade_history", "monthly_returns", "results_data")

_LIST_COLUMNS = """id, sweep_id, strategy_id, strategy_name, symbols, timeframe, start_date, end_date,
    parameters, status, initial_capital, final_value, total_return, annual_return, sharpe_ratio,
    sortino_ratio, max_drawdown, win_rate, profit_factor, total_trades, execution_time, error,
    created_at, finished_at"""


def _j(value: Any) -> Jsonb:
    return Jsonb(value, dumps=dumps)


# ------------------------------------------------------------------------------ sweeps
@translated()
def create_sweep(
    conn: psycopg.Connection[Any],
    *,
    strategy_name: str,
    grid: Mapping[str, Sequence[Any]],
    engine: str,
    scheduler_address: str | None = None,
    user_id: int | None = None,
) -> int:
    row = conn.execute(
        """INSERT INTO analytics.backtest_sweeps
               (user_id, strategy_name, grid, engine, scheduler_address, status)
           VALUES (%s, %s, %s, %s, %s, 'RUNNING') RETURNING id""",
        (user_id, strategy_name, _j(dict(grid)), engine, scheduler_address),
    ).fetchone()
    return int(row[0])  # type: ignore[index]


@translated()
def finish_sweep(conn: psycopg.Connection[Any], sweep_id: int, status: str) -> None:
    conn.execute(
        "UPDATE analytics.backtest_sweeps SET status = %s, finished_at = now() WHERE id = %s",
        (status, sweep_id),
    )


def get_sweep(conn: psycopg.Connection[Any], sweep_id: int) -> dict[str, Any]:
    row = one(
        conn,
        """SELECT s.*, (SELECT count(*) FROM analytics.backtest_runs r WHERE r.sweep_id = s.id) AS runs,
                      (SELECT count(*) FROM analytics.backtest_runs r
                        WHERE r.sweep_id = s.id AND r.status = 'COMPLETED') AS completed
             FROM analytics.backtest_sweeps s WHERE s.id = %s""",
        (sweep_id,),
    )
    if row is None:
        raise NotFound("sweep", sweep_id)
    return row


# ------------------------------------------------------------------------------ runs
@translated()
def create_run(
    conn: psycopg.Connection[Any],
    *,
    strategy_name: str,
    symbols: Sequence[str],
    timeframe: str,
    start: dt.datetime,
    end: dt.datetime,
    parameters: Mapping[str, Any],
    initial_capital: Decimal,
    fee_rate: Decimal | None,
    slippage: Decimal | None,
    strategy_id: int | None = None,
    user_id: int | None = None,
    sweep_id: int | None = None,
    status: str = "RUNNING",
) -> int:
    row = conn.execute(
        """INSERT INTO analytics.backtest_runs
               (sweep_id, user_id, strategy_id, strategy_name, start_date, end_date, symbols,
                timeframe, parameters, status, initial_capital, fee_rate, slippage, started_at)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                   CASE WHEN %s = 'RUNNING' THEN now() END)
           RETURNING id""",
        (sweep_id, user_id, strategy_id, strategy_name, start, end, list(symbols), timeframe,
         _j(dict(parameters)), status, initial_capital, fee_rate, slippage, status),
    ).fetchone()  # fmt: skip
    return int(row[0])  # type: ignore[index]


@translated()
def create_runs(
    conn: psycopg.Connection[Any],
    base: Mapping[str, Any],
    parameter_sets: Sequence[Mapping[str, Any]],
) -> list[int]:
    """One PENDING run per parameter set (a sweep's combinations), in one statement."""
    rows = conn.execute(
        """INSERT INTO analytics.backtest_runs
               (sweep_id, user_id, strategy_id, strategy_name, start_date, end_date, symbols,
                timeframe, parameters, status, initial_capital, fee_rate, slippage)
           SELECT %(sweep_id)s, %(user_id)s, %(strategy_id)s, %(strategy_name)s, %(start)s,
                  %(end)s, %(symbols)s, %(timeframe)s, p.params, 'PENDING', %(initial_capital)s,
                  %(fee_rate)s, %(slippage)s
             FROM unnest(%(params)s::jsonb[]) WITH ORDINALITY AS p(params, n)
            ORDER BY p.n
           RETURNING id""",
        {**base, "symbols": list(base["symbols"]), "params": [dumps(p) for p in parameter_sets]},
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


@translated()
def mark_running(conn: psycopg.Connection[Any], run_ids: Sequence[int]) -> None:
    conn.execute(
        """UPDATE analytics.backtest_runs SET status = 'RUNNING', started_at = now()
            WHERE id = ANY(%s) AND status = 'PENDING'""",
        (list(run_ids),),
    )


@translated()
def complete_run(conn: psycopg.Connection[Any], run_id: int, columns: Mapping[str, Any]) -> None:
    """Store a run's results (result_columns: the jsonb columns as JSON text) and mark it
    COMPLETED."""
    values = dict(columns)
    sets = ", ".join(
        f"{k} = %({k})s::jsonb" if k in _JSON_COLUMNS else f"{k} = %({k})s" for k in values
    )
    updated = conn.execute(
        f"""UPDATE analytics.backtest_runs
               SET {sets}, status = 'COMPLETED', error = NULL, finished_at = now(),
                   started_at = coalesce(started_at, now())
             WHERE id = %(run_id)s""",
        {**values, "run_id": run_id},
    ).rowcount
    if not updated:
        raise NotFound("backtest run", run_id)


@translated()
def fail_run(
    conn: psycopg.Connection[Any], run_id: int, error: str, status: str = "FAILED"
) -> None:
    conn.execute(
        """UPDATE analytics.backtest_runs
              SET status = %s, error = %s, finished_at = now()
            WHERE id = %s AND status IN ('PENDING', 'RUNNING')""",
        (status, error[:4000], run_id),
    )


def get_run(conn: psycopg.Connection[Any], run_id: int) -> dict[str, Any]:
    row = one(conn, "SELECT * FROM analytics.backtest_runs WHERE id = %s", (run_id,))
    if row is None:
        raise NotFound("backtest run", run_id)
    return row


def _order(metric: str, descending: bool | None) -> str:
    if metric not in METRICS:
        raise ValidationError("metric", f"must be one of {', '.join(METRICS)}", metric)
    desc = METRICS[metric] if descending is None else descending
    return f"{metric} {'DESC' if desc else 'ASC'} NULLS LAST, id DESC"


def list_runs(
    conn: psycopg.Connection[Any],
    *,
    sweep_id: int | None = None,
    strategy: str | None = None,
    status: str | None = None,
    order_by: str = "id",
    descending: bool | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Runs, newest first by default, or ordered by any metric (best first: largest, or
    smallest for max_drawdown and execution_time)."""
    if limit < 1:
        raise ValidationError("limit", "must be >= 1", limit)
    return dicts(
        conn,
        f"""SELECT {_LIST_COLUMNS} FROM analytics.backtest_runs
                 WHERE (%(sweep)s::bigint IS NULL OR sweep_id = %(sweep)s)
                   AND (%(strategy)s::text IS NULL OR strategy_name = %(strategy)s)
                   AND (%(status)s::text IS NULL OR status = upper(%(status)s))
                 ORDER BY {_order(order_by, descending)} LIMIT %(limit)s""",
        {"sweep": sweep_id, "strategy": strategy, "status": status, "limit": limit},
    )


def best_runs(
    conn: psycopg.Connection[Any],
    metric: str = "sharpe_ratio",
    *,
    sweep_id: int | None = None,
    strategy: str | None = None,
    limit: int = 10,
    descending: bool | None = None,
) -> list[dict[str, Any]]:
    """The best completed runs by any metric."""
    return list_runs(
        conn, sweep_id=sweep_id, strategy=strategy, status="COMPLETED", order_by=metric,
        descending=descending, limit=limit,
    )  # fmt: skip


# ------------------------------------------------------------------------------ results
def equity_points(
    times: np.ndarray, equity: np.ndarray, max_points: int = MAX_EQUITY_POINTS
) -> list[dict[str, Any]]:
    """The equity curve thinned to at most max_points, keeping the first and last bars,
    the highest peak and the deepest drawdown point."""
    n = len(equity)
    if not n:
        return []
    if n <= max_points:
        idx = np.arange(n)
    else:
        peaks = np.maximum.accumulate(equity)
        keep = [0, n - 1, int(np.argmax(equity)), int(np.argmax(1 - equity / peaks))]
        idx = np.unique(np.r_[np.linspace(0, n - 1, max_points - len(keep)).astype(np.int64), keep])
    stamps = np.char.add(np.datetime_as_string(times[idx].astype("datetime64[s]")), "Z").tolist()
    values = equity[idx].tolist()
    return [{"t": t, "equity": v} for t, v in zip(stamps, values, strict=True)]


def _float_text(values: np.ndarray) -> list[str]:
    return [repr(v) if math.isfinite(v) else "null" for v in values.tolist()]


def trade_history(data: MarketData, result: SimResult) -> str:
    """Every round trip as a JSON array (text, built column by column: a sweep stores
    thousands of trades per run). Money is exact when the exact engine made it."""
    trades, fills = result.trades, result.fills
    n = len(trades)
    if not n:
        return "[]"
    closed = trades.exit_fill >= 0

    def stamps(rows: np.ndarray) -> np.ndarray:
        return np.char.add(np.datetime_as_string(data.times[rows].astype("datetime64[s]")), "Z")

    entry_time = stamps(trades.entry_t)
    exit_time = np.where(closed, stamps(np.where(closed, trades.exit_t, 0)), "")
    if fills.exact is not None:
        qty, entry_price, fees, pnl, exit_price = [], [], [], [], []
        for e, x in zip(trades.entry_fill.tolist(), trades.exit_fill.tolist(), strict=True):
            q, p_in, fee_in, _ = fills.exact[e]
            qty.append(format(q, "f"))
            entry_price.append(format(p_in, "f"))
            if x >= 0:
                _, p_out, fee_out, realized = fills.exact[x]
                exit_price.append(format(p_out, "f"))
                fees.append(format(fee_in + fee_out, "f"))
                pnl.append(format(realized - fee_in - fee_out, "f"))
            else:
                exit_price.append("null")
                fees.append(format(fee_in, "f"))
                pnl.append("null")
    else:
        qty = _float_text(trades.quantity)
        entry_price = _float_text(trades.entry_price)
        exit_price = _float_text(trades.exit_price)
        fees = _float_text(trades.fees)
        pnl = _float_text(trades.pnl)
    ret = _float_text(trades.ret)
    symbols = [json.dumps(i.symbol) for i in data.instruments]
    bars = (trades.exit_t - trades.entry_t).tolist()
    sym, direction = trades.s.tolist(), trades.direction.tolist()
    is_closed, reason = closed.tolist(), trades.exit_reason.tolist()
    entry_time, exit_time = entry_time.tolist(), exit_time.tolist()
    rows = []
    for k in range(n):
        head = (
            f'{{"symbol": {symbols[sym[k]]}, '
            f'"direction": "{"LONG" if direction[k] > 0 else "SHORT"}", '
            f'"quantity": {qty[k]}, "entry_time": "{entry_time[k]}", '
            f'"entry_price": {entry_price[k]}, '
        )
        if is_closed[k]:
            rows.append(
                f'{head}"status": "CLOSED", "exit_time": "{exit_time[k]}", '
                f'"exit_price": {exit_price[k]}, "exit_reason": "{REASONS[reason[k]]}", '
                f'"fees": {fees[k]}, "pnl": {pnl[k]}, "return": {ret[k]}, "bars": {bars[k]}}}'
            )
        else:
            rows.append(
                f'{head}"status": "OPEN", "exit_time": null, "exit_price": null, '
                f'"exit_reason": null, "fees": {fees[k]}, "pnl": null, "return": null}}'
            )
    return "[" + ", ".join(rows) + "]"


def _num(value: float | None) -> Decimal | None:
    return Decimal(repr(float(value))) if value is not None and np.isfinite(value) else None


def result_columns(
    data: MarketData,
    result: SimResult,
    metrics: Metrics,
    *,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The backtest_runs result columns of a finished run."""
    m = metrics
    details = {
        k: getattr(m, k)
        for k in ("annual_volatility", "downside_deviation", "calmar_ratio", "open_trades",
                  "avg_trade_return", "total_fees", "rejected_orders", "exposure", "sqn",
                  "buy_and_hold_return", "n_bars")
    }  # fmt: skip
    rejections: dict[str, int] = {}
    for r in result.rejections:
        key = f"{r.field}: {r.rule}"
        rejections[key] = rejections.get(key, 0) + 1
    return {
        "final_value": result.final_value,
        "total_return": _num(m.total_return),
        "annual_return": _num(m.annual_return),
        "sharpe_ratio": _num(m.sharpe_ratio),
        "sortino_ratio": _num(m.sortino_ratio),
        "max_drawdown": _num(m.max_drawdown),
        "win_rate": _num(m.win_rate),
        "profit_factor": _num(m.profit_factor),
        "total_trades": m.total_trades,
        "winning_trades": m.winning_trades,
        "losing_trades": m.losing_trades,
        "avg_win": _num(m.avg_win),
        "avg_loss": _num(m.avg_loss),
        "largest_win": _num(m.largest_win),
        "largest_loss": _num(m.largest_loss),
        "equity_curve": json.dumps(equity_points(data.times, result.equity), allow_nan=False),
        "trade_history": trade_history(data, result),
        "monthly_returns": json.dumps(
            monthly_returns(data.times, result.equity, float(result.initial_capital)),
            allow_nan=False,
        ),
        "results_data": dumps(
            {
                "engine": result.engine,
                "conventions": m.as_dict()["conventions"],
                "metrics": details,
                "rejections": rejections,
                "simulation_seconds": result.seconds,
                "funding": {"paid": result.funding_paid, "payments": result.funding_payments},
                **(extra or {}),
            }
        ),
        "execution_time": _num(result.seconds),
    }


# ------------------------------------------------------------------------------ executions
def _bar(data: MarketData, t: int, s: int) -> dict[str, Any]:
    return {
        "open": data.open[t, s], "high": data.high[t, s], "low": data.low[t, s],
        "close": data.close[t, s], "volume": data.volume[t, s],
    }  # fmt: skip


def execution_rows(
    data: MarketData,
    signals: SignalMatrix | None,
    result: SimResult,
    *,
    strategy_id: int,
    user_id: int,
    run_id: int,
) -> list[tuple[Any, ...]]:
    """strategy_executions rows for a run: every signal (with the indicators and the bar
    it saw), every order (fill) and every refused order, in time order. Signals are
    computed for all bars at once, so a signal's execution_time is the signal computation
    time shared over its signals; an order's is measured (event path) or the simulation
    time shared over the orders (fast path)."""
    ns = data.times.astype("datetime64[ns]").astype(np.int64)

    def when(t: int) -> dt.datetime:
        v = int(ns[t])
        return dt.datetime.fromtimestamp(v // 10**9, dt.UTC) + dt.timedelta(
            microseconds=(v % 10**9) // 1000
        )

    rows: list[tuple[int, int, tuple[Any, ...]]] = []
    events = result.signal_events
    per_signal = (signals.seconds / len(events)) if signals is not None and events else None
    bar_rows = [np.flatnonzero(~np.isnan(data.open[:, s])) for s in range(data.n_symbols)]
    for t, s, action in events:
        flags = {}
        if signals is not None:
            flags = {
                "entry": bool(signals.entries[t, s]), "exit": bool(signals.exits[t, s]),
                "short_entry": bool(signals.short_entries[t, s]),
                "short_exit": bool(signals.short_exits[t, s]),
            }  # fmt: skip
        indicators = {}
        if signals is not None and s < len(signals.indicators):
            i = int(np.searchsorted(bar_rows[s], t))
            indicators = {k: v[i] for k, v in signals.indicators[s].items()}
        data_json = {
            "symbol": data.instruments[s].symbol, "time": when(t), "action": action,
            "signals": flags, "indicators": indicators,
        }  # fmt: skip
        rows.append((t, 0, (strategy_id, user_id, "signal", dumps(data_json), None, None,
                            dumps(_bar(data, t, s)), True, per_signal, run_id, when(t))))  # fmt: skip
    fills = result.fills
    shared = result.seconds / max(1, len(fills) + len(result.rejections))
    for i in range(len(fills)):
        t, s = int(fills.t[i]), int(fills.s[i])
        qty, price, fee, realized = fills.decimal(i)
        order = {
            "symbol": data.instruments[s].symbol, "time": when(t),
            "side": "BUY" if fills.side[i] > 0 else "SELL", "type": "MARKET",
            "quantity": qty, "price": price, "fee": fee, "realized_pnl": realized,
            "reason": REASONS[int(fills.reason[i])], "status": "FILLED",
        }  # fmt: skip
        secs = float(fills.seconds[i]) if fills.seconds is not None else shared
        rows.append((t, 1, (strategy_id, user_id, "order", None, dumps(order), None,
                            dumps(_bar(data, t, s)), True, secs, run_id, when(t))))  # fmt: skip
    for rej in result.rejections:
        order = {
            "symbol": data.instruments[rej.s].symbol, "time": when(rej.t),
            "side": "BUY" if rej.side > 0 else "SELL", "type": "MARKET",
            "quantity": rej.quantity, "price": rej.price, "status": "REJECTED",
            "field": rej.field, "rule": rej.rule,
        }  # fmt: skip
        message = f"{rej.field}: {rej.rule}"
        secs = rej.seconds if fills.seconds is not None else shared
        rows.append((rej.t, 2, (strategy_id, user_id, "error", None, dumps(order), message,
                                dumps(_bar(data, rej.t, rej.s)), False, secs, run_id,
                                when(rej.t))))  # fmt: skip
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows]


@translated()
def write_executions(conn: psycopg.Connection[Any], rows: Iterable[tuple[Any, ...]]) -> int:
    """COPY execution rows into analytics.strategy_executions."""
    count = 0
    with (
        conn.cursor() as cur,
        cur.copy(
            """COPY analytics.strategy_executions
               (strategy_id, user_id, execution_type, signal_data, order_data, error_message,
                market_data, success, execution_time, backtest_run_id, event_time)
           FROM STDIN"""
        ) as copy,
    ):
        for row in rows:
            copy.write_row(row)
            count += 1
    return count
