"""`tradestore backtest ...` (run, sweep, list, show) and `tradestore strategies ...`
(list, create). Register `app` as "backtest" and `strategies_app` as "strategies"."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tradestore.cli import common
from tradestore.cli.common import (
    Column,
    add_row,
    console,
    database,
    handles_errors,
    make_table,
    print_table,
    settings,
)
from tradestore.db.connect import connect
from tradestore.db.errors import ValidationError
from tradestore.timeparse import parse_time

app = typer.Typer(
    help="Backtests on stored candles: run, sweep (Dask), list, show.", no_args_is_help=True
)
strategies_app = typer.Typer(
    help="The strategies registry (seed 003): list, create.", no_args_is_help=True
)

_RANGE = re.compile(r"^(-?[\d.]+):(-?[\d.]+):([\d.]+)$")


# ------------------------------------------------------------------------------ parsing
def parse_decimal(text: str | None, field: str) -> Decimal | None:
    return common.parse_decimal(field, text)


def parse_params(items: Sequence[str], field: str = "param") -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValidationError(field, "must be key=value", item)
        out[key.strip()] = value.strip()
    return out


def _range_values(start: str, stop: str, step: str, item: str) -> list[str]:
    a, b, c = (common.parse_decimal("grid", v) for v in (start, stop, step))
    if c <= 0 or b < a or (b - a) / c > 100_000:
        raise ValidationError(
            "grid", "a range is start:stop:step with step > 0, stop >= start", item
        )
    values, v = [], a
    while v <= b:
        values.append(str(v))
        v += c
    return values


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """`fast=5,10,20` or `fast=5:50:5` (inclusive) for each swept parameter."""
    grid: dict[str, list[str]] = {}
    for key, value in parse_params(items, "grid").items():
        match = _RANGE.match(value)
        if match:
            grid[key] = _range_values(*match.groups(), item=f"{key}={value}")
        else:
            grid[key] = [v.strip() for v in value.split(",") if v.strip()]
        if not grid[key]:
            raise ValidationError(f"grid.{key}", "must list at least one value", value)
    return grid


@contextmanager
def _connection() -> Iterator[psycopg.Connection[Any]]:
    with (
        database() as conninfo,
        connect(conninfo, settings(), autocommit=True) as conn,
        common.explained(conn),
    ):
        yield conn


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{float(value) * 100:,.2f}%"
    return common.fmt_cell(value)


def _config_rows(config: dict[str, Any], sizing: str | None) -> list[tuple[str, str]]:
    """The run's risk settings as shown: every one, 'none' when unset (nothing hidden)."""

    def pct(key: str) -> str:
        value = config.get(key)
        return "none" if value is None else f"{common.fmt_decimal(Decimal(str(value)))}%"

    slots = config.get("max_positions")
    return [
        ("sizing", sizing or "-"),
        ("stop loss", pct("stop_loss_pct")),
        ("take profit", pct("take_profit_pct")),
        ("risk per trade", pct("risk_per_trade")),
        ("max positions", "one per symbol" if slots is None else str(slots)),
        ("shorts", "allowed" if config.get("allow_short") else "no"),
    ]


# ------------------------------------------------------------------------------ backtest
def _request(
    strategy: str, symbol: list[str], timeframe: str, start: str, end: str, param: list[str],
    exchange: str | None, capital: str, fee: str | None, slippage: str, stop_loss: str | None,
    take_profit: str | None, risk: str | None, max_positions: int | None, size_pct: str | None,
    short: bool, engine: str, risk_free: float, calendar: str | None, user: str | None,
    log: bool = True, report: bool = True,
) -> Any:  # fmt: skip
    from tradestore.strategy.runner import BacktestRequest

    return BacktestRequest(
        strategy=strategy,
        symbols=tuple(symbol),
        timeframe=timeframe,
        start=parse_time(start, "from"),
        end=parse_time(end, "to", end=True),
        parameters=parse_params(param),
        exchange=exchange,
        initial_capital=parse_decimal(capital, "capital"),  # type: ignore[arg-type]
        fee_rate=parse_decimal(fee, "fee"),
        slippage=parse_decimal(slippage, "slippage"),  # type: ignore[arg-type]
        stop_loss_pct=parse_decimal(stop_loss, "stop_loss"),
        take_profit_pct=parse_decimal(take_profit, "take_profit"),
        risk_per_trade=parse_decimal(risk, "risk"),
        max_positions=max_positions,
        position_size_pct=parse_decimal(size_pct, "size_pct"),
        allow_short=short,
        engine=engine,
        risk_free_rate=risk_free,
        calendar=calendar,
        user=user,
        log_executions=log,
        write_report=report,
    )


_STRATEGY = typer.Option(..., "--strategy", "-s", help="registered strategy or implementation")
_SYMBOL = typer.Option(..., "--symbol", help="exchange or instrument symbol (repeatable)")
_TIMEFRAME = typer.Option("1m", "--timeframe", "-t", help="bar size: 1m, 5m, 1h, 1d ...")
_FROM = typer.Option(..., "--from", help="start, ISO date or time (UTC)")
_TO = typer.Option(..., "--to", help="end, inclusive (a bare date means the whole day)")
_PARAM = typer.Option([], "--param", "-p", help="strategy parameter key=value (repeatable)")
_EXCHANGE = typer.Option(None, "--exchange", help="exchange code, when a symbol is ambiguous")
_CAPITAL = typer.Option("10000", "--capital", help="initial capital in the quote currency")
_FEE = typer.Option(None, "--fee", help="taker fee (0.001 = 0.1%); default: fee schedule or 0.001")
_SLIPPAGE = typer.Option("0", "--slippage", help="fraction of the price, e.g. 0.0005")
_SL = typer.Option(
    None, "--stop-loss", help="stop loss, percent of the entry; default: the strategy's, else none"
)
_TP = typer.Option(
    None,
    "--take-profit",
    help="take profit, percent of the entry; default: the strategy's, else none",
)
_RISK = typer.Option(
    None, "--risk",
    help="risk per trade, percent of equity (with a stop, risk/stop of equity is spent); "
    "default: the strategy's, else unset",
)  # fmt: skip
_MAXPOS = typer.Option(
    None,
    "--max-positions",
    help="open positions at most; default: the strategy's, else one per symbol",
)
_SIZE = typer.Option(
    None, "--size-pct",
    help="spend this percent of equity per entry; default: --risk sizing if set, else "
    "100 / position slots (all equity for one symbol)",
)  # fmt: skip
_SL_NEW = typer.Option(None, "--stop-loss", help="stop loss, percent of the entry; default: none")
_TP_NEW = typer.Option(
    None, "--take-profit", help="take profit, percent of the entry; default: none"
)
_RISK_NEW = typer.Option(
    None,
    "--risk",
    help="risk per trade, percent of equity; default: none (backtests size by --size-pct)",
)
_MAXPOS_NEW = typer.Option(
    None, "--max-positions", help="open positions at most; default: none (one per symbol)"
)
_SHORT = typer.Option(False, "--short/--long-only", help="allow short positions")
_RF = typer.Option(0.0, "--risk-free", help="annual risk-free rate for Sharpe/Sortino")
_CAL = typer.Option(
    None,
    "--calendar",
    help="crypto (365 d), equity (252 d), fx, or an exchange calendar (XKRX, XNYS; default: the listing preset's)",
)
_USER = typer.Option(
    None, "--user", help="username or id: the owner (may be left out when there is one user)"
)


@app.command("run")
@handles_errors
def run_cmd(
    strategy: str = _STRATEGY, symbol: list[str] = _SYMBOL, timeframe: str = _TIMEFRAME,
    start: str = _FROM, end: str = _TO, param: list[str] = _PARAM,
    exchange: str | None = _EXCHANGE, capital: str = _CAPITAL, fee: str | None = _FEE,
    slippage: str = _SLIPPAGE, stop_loss: str | None = _SL, take_profit: str | None = _TP,
    risk: str | None = _RISK, max_positions: int | None = _MAXPOS,
    size_pct: str | None = _SIZE, short: bool = _SHORT,
    engine: str = typer.Option("event", "--engine", help="event (exact), fast (numba) or auto"),
    risk_free: float = _RF, calendar: str | None = _CAL, user: str | None = _USER,
    log: bool = typer.Option(True, "--log/--no-log", help="log signals and orders (registered strategies)"),
    report: bool = typer.Option(True, "--report/--no-report", help="write PNG and HTML reports"),
) -> None:  # fmt: skip
    """Run one backtest on stored candles and record it."""
    from tradestore.strategy.runner import run_backtest

    req = _request(strategy, symbol, timeframe, start, end, param, exchange, capital, fee,
                   slippage, stop_loss, take_profit, risk, max_positions, size_pct, short,
                   engine, risk_free, calendar, user, log, report)  # fmt: skip
    home = settings().TRADESTORE_HOME
    with _connection() as conn, _progress() as progress:
        task = progress.add_task("backtest", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        outcome = run_backtest(conn, req, progress=tick, home=home)
    m = outcome.metrics
    table = Table(title=f"backtest run {outcome.run_id} ({outcome.result.engine} engine)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value, pct in (
        ("final value", m.final_value, False), ("total return", m.total_return, True),
        ("annual return (CAGR)", m.annual_return, True), ("Sharpe", m.sharpe_ratio, False),
        ("Sortino", m.sortino_ratio, False), ("max drawdown", m.max_drawdown, True),
        ("buy & hold return", m.buy_and_hold_return, True),
        ("exposure (bars holding at close)", m.exposure, True),
        ("win rate", m.win_rate, True), ("profit factor", m.profit_factor, False),
        ("SQN", m.sqn, False),
        ("trades (won/lost)", f"{m.total_trades} ({m.winning_trades}/{m.losing_trades})", False),
        ("rejected orders", m.rejected_orders, False),
        ("simulated in", f"{outcome.result.seconds:.3f} s", False),
    ):  # fmt: skip
        table.add_row(name, _fmt(value, pct))
    for name, text in _config_rows(outcome.config.as_dict(), outcome.sizing):
        table.add_row(name, text)
    console.print(table)
    if outcome.report is not None:
        console.print(f"report: {outcome.report.html}", highlight=False, soft_wrap=True)
        console.print(f"        {outcome.report.png}", highlight=False, soft_wrap=True)


@app.command("sweep")
@handles_errors
def sweep_cmd(
    strategy: str = _STRATEGY, symbol: list[str] = _SYMBOL, timeframe: str = _TIMEFRAME,
    start: str = _FROM, end: str = _TO,
    grid: list[str] = typer.Option(..., "--grid", "-g",
                                   help="swept parameter: fast=5,10,20 or fast=5:50:5 (repeatable)"),
    param: list[str] = _PARAM, exchange: str | None = _EXCHANGE, capital: str = _CAPITAL,
    fee: str | None = _FEE, slippage: str = _SLIPPAGE, stop_loss: str | None = _SL,
    take_profit: str | None = _TP, risk: str | None = _RISK,
    max_positions: int | None = _MAXPOS, size_pct: str | None = _SIZE, short: bool = _SHORT,
    engine: str = typer.Option("auto", "--engine", help="fast, event or auto"),
    workers: int | None = typer.Option(None, "--workers", "-w", help="local worker processes (default: cores)"),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address (multi-node)"),
    metric: str = typer.Option("sharpe_ratio", "--metric", help="rank the results by this metric"),
    top: int = typer.Option(10, "--top", help="show the best N runs"),
    risk_free: float = _RF, calendar: str | None = _CAL, user: str | None = _USER,
) -> None:  # fmt: skip
    """Run every combination of a parameter grid on Dask; each is stored as its own run."""
    from tradestore.strategy import store
    from tradestore.strategy.sweep import run_sweep

    req = _request(strategy, symbol, timeframe, start, end, param, exchange, capital, fee,
                   slippage, stop_loss, take_profit, risk, max_positions, size_pct, short,
                   engine, risk_free, calendar, user, False, False)  # fmt: skip
    swept = parse_grid(grid)
    if metric not in store.METRICS:
        raise ValidationError("metric", f"must be one of {', '.join(store.METRICS)}", metric)
    with _connection() as conn:
        with _progress() as progress:
            task = progress.add_task("sweep", total=None)

            def tick(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            outcome = run_sweep(conn, req, swept, scheduler_address=scheduler, n_workers=workers,
                                engine=engine, progress=tick)  # fmt: skip
        console.print(
            f"sweep {outcome.sweep_id}: {outcome.completed} completed, {outcome.failed} failed, "
            f"{len(outcome.skipped)} invalid combinations skipped, {outcome.workers} worker(s), "
            f"{outcome.seconds:.1f} s"
        )
        _print_runs(store.best_runs(conn, metric, sweep_id=outcome.sweep_id, limit=top),
                    f"best runs of sweep {outcome.sweep_id} by {metric}")  # fmt: skip


_RUN_COLUMNS = (
    Column("id"), Column("sweep", essential=False), Column("strategy"), Column("symbols"),
    Column("tf", essential=False), Column("status", essential=False),
    Column("parameters", essential=False), Column("return", justify="right"),
    Column("sharpe", justify="right"), Column("max dd", justify="right"),
    Column("win rate", essential=False, justify="right"), Column("trades", justify="right"),
)  # fmt: skip


def _print_runs(rows: list[dict[str, Any]], title: str) -> None:
    table = make_table(_RUN_COLUMNS, title=title)
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in (r["parameters"] or {}).items())
        add_row(table, _RUN_COLUMNS, (
            str(r["id"]), str(r["sweep_id"] or ""), r["strategy_name"], ",".join(r["symbols"]),
            r["timeframe"], r["status"], params, _fmt(r["total_return"], True),
            _fmt(r["sharpe_ratio"]), _fmt(r["max_drawdown"], True), _fmt(r["win_rate"], True),
            _fmt(r["total_trades"]),
        ))  # fmt: skip
    print_table(table)


@app.command("list")
@handles_errors
def list_cmd(
    sweep: int | None = typer.Option(None, "--sweep", help="runs of this sweep"),
    strategy: str | None = typer.Option(None, "--strategy", help="runs of this strategy name"),
    status: str | None = typer.Option(None, "--status", help="COMPLETED, FAILED, RUNNING ..."),
    sort: str = typer.Option("id", "--sort", help="id (newest first) or any metric, best first"),
    ascending: bool | None = typer.Option(None, "--asc/--desc", help="override the order"),
    limit: int = typer.Option(20, "--limit", "-n"),
) -> None:
    """List runs, newest first or best first by any metric."""
    from tradestore.strategy import store

    descending = None if ascending is None else not ascending
    with _connection() as conn:
        rows = store.list_runs(conn, sweep_id=sweep, strategy=strategy, status=status,
                               order_by=sort, descending=descending, limit=limit)  # fmt: skip
    _print_runs(rows, "backtest runs")


@app.command("show")
@handles_errors
def show_cmd(
    run_id: int = typer.Argument(..., help="backtest run id"),
    trades: int = typer.Option(10, "--trades", help="show the last N trades"),
    report: bool = typer.Option(True, "--report/--no-report", help="make the report if missing"),
) -> None:
    """Show one run: its settings, every result field and its report files."""
    from tradestore.strategy import store
    from tradestore.strategy.reports import run_report

    with _connection() as conn:
        row = store.get_run(conn, run_id)
        paths = None
        if report and row["status"] == "COMPLETED":
            paths = run_report(conn, run_id, home=settings().TRADESTORE_HOME)
    table = Table(title=f"backtest run {run_id}: {row['status']}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    pct = {"total_return", "annual_return", "max_drawdown", "win_rate"}
    for key in ("strategy_name", "strategy_id", "sweep_id", "symbols", "timeframe", "start_date",
                "end_date", "parameters", "initial_capital", "fee_rate", "slippage", "final_value",
                "total_return", "annual_return", "sharpe_ratio", "sortino_ratio", "max_drawdown",
                "win_rate", "profit_factor", "total_trades", "winning_trades", "losing_trades",
                "avg_win", "avg_loss", "largest_win", "largest_loss", "execution_time", "error",
                "created_at", "finished_at"):  # fmt: skip
        value = row[key]
        if isinstance(value, list):
            value = ", ".join(map(str, value))
        elif isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(key, _fmt(value, key in pct))
    data = row.get("results_data") or {}
    metrics = data.get("metrics") or {}
    for key, label, is_pct in (("buy_and_hold_return", "buy_and_hold_return", True),
                               ("sqn", "sqn", False),
                               ("exposure", "exposure (bars holding at close)", True)):  # fmt: skip
        table.add_row(label, _fmt(metrics.get(key), is_pct))
    if "config" in data:
        for name, text in _config_rows(data["config"], data.get("sizing")):
            table.add_row(name, text)
    console.print(table)
    if row["monthly_returns"]:
        months = "  ".join(f"{k} {_fmt(v, True)}" for k, v in row["monthly_returns"].items())
        console.print(f"monthly returns: {months}", highlight=False, soft_wrap=True)
    history = row["trade_history"] or []
    if history and trades > 0:
        t = Table(title=f"last {min(trades, len(history))} of {len(history)} trades")
        for col in ("symbol", "dir", "qty", "entry", "entry price", "exit", "exit price",
                    "reason", "pnl"):  # fmt: skip
            t.add_column(col)
        for tr in history[-trades:]:
            t.add_row(tr["symbol"], tr["direction"], str(tr["quantity"]), tr["entry_time"],
                      str(tr["entry_price"]), tr["exit_time"] or "open", str(tr["exit_price"] or ""),
                      tr["exit_reason"] or "", _fmt(tr["pnl"]))  # fmt: skip
        console.print(t)
    if paths is not None:
        console.print(f"report: {paths.html}", highlight=False, soft_wrap=True)
        console.print(f"        {paths.png}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------ strategies
_STRATEGY_COLUMNS = (
    Column("id"), Column("user", essential=False), Column("name"),
    Column("type", essential=False), Column("implementation"), Column("parameters"),
    Column("SL %"), Column("TP %"), Column("risk %"), Column("max pos"),
    Column("active", essential=False), Column("backtesting", essential=False),
    Column("trades", essential=False), Column("win rate", essential=False),
)  # fmt: skip


def _pct_or_none(value: Decimal | None) -> str:
    return "-" if value is None else common.fmt_decimal(value)


@strategies_app.command("list")
@handles_errors
def strategies_list(
    user: str | None = typer.Option(None, "--user", help="only this user's strategies"),
) -> None:
    """Registered strategies, and the implementations they can run."""
    from tradestore.strategy.registry import find_user, list_strategies
    from tradestore.strategy.strategies import IMPLEMENTATIONS

    with _connection() as conn:
        uid = find_user(conn, user) if user is not None else None
        rows = list_strategies(conn, user_id=uid)
    table = make_table(_STRATEGY_COLUMNS, title="strategies")
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r.parameters.items())
        add_row(table, _STRATEGY_COLUMNS, (
            str(r.id), str(r.user_id), r.name, r.strategy_type, r.implementation or "-", params,
            _pct_or_none(r.stop_loss_pct), _pct_or_none(r.take_profit_pct),
            _pct_or_none(r.risk_per_trade),
            "-" if r.max_positions is None else str(r.max_positions), str(r.is_active),
            str(r.is_backtesting), str(r.total_trades), _fmt(r.win_rate, True),
        ))  # fmt: skip
    print_table(table)
    impls = Table(title="implementations")
    impls.add_column("name")
    impls.add_column("parameters (defaults)")
    impls.add_column("description", ratio=1)
    for name, cls in sorted(IMPLEMENTATIONS.items()):
        impls.add_row(name, ", ".join(f"{k}={v}" for k, v in cls.defaults.items()),
                      cls.description)  # fmt: skip
    console.print(impls)


@strategies_app.command("create")
@handles_errors
def strategies_create(
    name: str = typer.Argument(..., help="strategy name (unique per user)"),
    implementation: str = typer.Option(..., "--implementation", "-i", help="e.g. sma_crossover"),
    param: list[str] = _PARAM,
    strategy_type: str | None = typer.Option(None, "--type", help="scalping, day_trading, swing_trading, long_term"),
    description: str | None = typer.Option(None, "--description"),
    risk: str | None = _RISK_NEW, max_positions: int | None = _MAXPOS_NEW,
    stop_loss: str | None = _SL_NEW, take_profit: str | None = _TP_NEW, user: str | None = _USER,
) -> None:  # fmt: skip
    """Register a strategy (its parameters are checked against the implementation). Risk
    settings not given are stored as none: no stop, no target, no risk sizing, no limit."""
    from tradestore.strategy.registry import create_strategy, find_user

    with _connection() as conn:
        record = create_strategy(
            conn, user_id=find_user(conn, user), name=name, implementation=implementation,
            parameters=parse_params(param), strategy_type=strategy_type, description=description,
            risk_per_trade=parse_decimal(risk, "risk"), max_positions=max_positions,
            stop_loss_pct=parse_decimal(stop_loss, "stop_loss"),
            take_profit_pct=parse_decimal(take_profit, "take_profit"),
        )  # fmt: skip
    params = ", ".join(f"{k}={v}" for k, v in record.parameters.items())
    console.print(
        f"strategy {record.id} '{record.name}' ({record.implementation}: {params}); "
        f"{record.risk_text()}",
        highlight=False,
    )


if __name__ == "__main__":
    app()
