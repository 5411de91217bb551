"""Run a backtest on stored candles and record it: resolve the strategy (registry name or
implementation name), the listings and their trading rules, the fees; load the candles;
simulate; compute the metrics; store the run, its results and its execution log; write
the equity and drawdown report."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from tradestore.db.errors import NotFound, ValidationError
from tradestore.market.calendars import listing_calendar
from tradestore.strategy import store
from tradestore.strategy.engine import Progress, run_event
from tradestore.strategy.metrics import Conventions, Metrics, compute_metrics, periods_per_year
from tradestore.strategy.model import BacktestConfig, MarketData, SignalMatrix, SimResult
from tradestore.strategy.registry import (
    StrategyRecord,
    find_user,
    get_strategy,
    record_backtest_stats,
)
from tradestore.strategy.signals import compute_signals
from tradestore.strategy.strategies import IMPLEMENTATIONS, Strategy

__all__ = [
    "ENGINES",
    "BacktestRequest",
    "Prepared",
    "RunOutcome",
    "extra_results",
    "prepare",
    "run_backtest",
    "simulate",
]

ENGINES = ("event", "fast", "auto")


@dataclass(frozen=True)
class BacktestRequest:
    """A backtest to run. Risk settings left None come from the registered strategy; set
    nowhere, they are off (no stop, no target, no position limit beyond one per symbol)
    and an entry spends an equal share of equity per position slot (BacktestConfig)."""

    strategy: str
    symbols: tuple[str, ...]
    timeframe: str
    start: dt.datetime
    end: dt.datetime
    parameters: Mapping[str, Any] = field(default_factory=dict)
    exchange: str | None = None
    initial_capital: Decimal = Decimal(10000)
    fee_rate: Decimal | None = None
    slippage: Decimal = Decimal(0)
    stop_loss_pct: Decimal | None = None
    take_profit_pct: Decimal | None = None
    risk_per_trade: Decimal | None = None
    max_positions: int | None = None
    position_size_pct: Decimal | None = None
    allow_short: bool = False
    engine: str = "event"
    risk_free_rate: float = 0.0
    calendar: str | None = None
    user: str | int | None = None
    log_executions: bool = True
    write_report: bool = True


@dataclass
class Prepared:
    """Everything a simulation needs, resolved once (a sweep shares it)."""

    request: BacktestRequest
    record: StrategyRecord | None
    implementation: type[Strategy]
    parameters: dict[str, Any]
    config: BacktestConfig
    data: MarketData
    fee_sources: dict[str, str]
    conventions: Conventions
    user_id: int

    @property
    def strategy_name(self) -> str:
        return self.record.name if self.record else self.implementation.name

    def strategy(self, overrides: Mapping[str, Any] | None = None) -> Strategy:
        return self.implementation(**{**self.parameters, **dict(overrides or {})})

    @property
    def runs_own_parameters(self) -> bool:
        """A registered strategy run with the parameters it is registered with."""
        if self.record is None:
            return False
        return self.parameters == self.implementation(**self.record.parameters).params

    @property
    def fee_rate(self) -> Decimal | None:
        """The one fee rate of the run, or None when fees vary across bars/symbols."""
        rates = self.data.fee_rates
        if rates.size and (rates == rates.flat[0]).all():
            return Decimal(repr(float(rates.flat[0])))
        return None


@dataclass
class RunOutcome:
    run_id: int
    metrics: Metrics
    result: SimResult
    report: Any = None  # reports.RunReport when written
    config: BacktestConfig = field(default_factory=BacktestConfig)
    sizing: str = ""  # how entries were sized, in words


def _utc(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    if value.utcoffset() is None:
        raise ValidationError(name, "must be a time", value)
    return value.astimezone(dt.UTC)


def _resolve_strategy(
    conn: psycopg.Connection[Any], name: str, user_id: int | None
) -> tuple[StrategyRecord | None, type[Strategy]]:
    try:
        record = get_strategy(conn, name, user_id=user_id)
    except NotFound:
        if name in IMPLEMENTATIONS:
            return None, IMPLEMENTATIONS[name]
        raise ValidationError(
            "strategy",
            "must name a registered strategy or an implementation "
            f"({', '.join(sorted(IMPLEMENTATIONS))})",
            name,
        ) from None
    return record, record.implementation_class()


def _config(request: BacktestRequest, record: StrategyRecord | None) -> BacktestConfig:
    def pick(value: Any, attr: str, default: Any) -> Any:
        if value is not None:
            return value
        if record is not None:
            return getattr(record, attr)
        return default

    risk = pick(request.risk_per_trade, "risk_per_trade", None)
    slots = pick(request.max_positions, "max_positions", None)
    return BacktestConfig(
        initial_capital=Decimal(request.initial_capital),
        slippage=Decimal(request.slippage),
        stop_loss_pct=pick(request.stop_loss_pct, "stop_loss_pct", None),
        take_profit_pct=pick(request.take_profit_pct, "take_profit_pct", None),
        risk_per_trade=Decimal(risk) if risk is not None else None,
        max_positions=int(slots) if slots is not None else None,
        position_size_pct=request.position_size_pct,
        allow_short=request.allow_short,
    )


def prepare(conn: psycopg.Connection[Any], request: BacktestRequest) -> Prepared:
    """Resolve and load everything a backtest needs (nothing is written)."""
    from tradestore.strategy.data import load_market_data, resolve_instruments

    if request.engine not in ENGINES:
        raise ValidationError("engine", f"must be one of {', '.join(ENGINES)}", request.engine)
    start, end = _utc(request.start, "start"), _utc(request.end, "end")
    if end <= start:
        raise ValidationError("end", "must be after start", end.isoformat())
    user_id = find_user(conn, request.user) if request.user is not None else None
    record, impl = _resolve_strategy(conn, request.strategy, user_id)
    # Every backtest has an owner (row-level security shows it to that user only): the
    # registered strategy's owner, else the named user, else the only user there is.
    user_id = record.user_id if record is not None else find_user(conn, request.user)
    params = {**(record.parameters if record else {}), **dict(request.parameters)}
    strategy = impl(**params)  # validates
    config = _config(request, record)
    instruments = resolve_instruments(conn, request.symbols, exchange=request.exchange, at=start)
    data, fee_sources = load_market_data(
        conn, instruments, request.timeframe, start, end, fee_rate=request.fee_rate
    )
    calendar = request.calendar or listing_calendar(conn, instruments[0].listing_id) or ("equity" if instruments[0].exchange_kind == "EQUITY" else
                                    "fx" if instruments[0].exchange_kind == "FX" else "crypto")  # fmt: skip
    conventions = Conventions(
        periods_per_year(request.timeframe, calendar), float(request.risk_free_rate), calendar
    )
    return Prepared(
        replace(request, start=start, end=end), record, impl, dict(strategy.params), config,
        data, fee_sources, conventions, user_id,
    )  # fmt: skip


def simulate(
    prepared: Prepared,
    strategy: Strategy,
    *,
    engine: str = "event",
    progress: Progress | None = None,
) -> tuple[SignalMatrix, SimResult, Metrics]:
    """Signals, simulation and metrics of one strategy instance (no database)."""
    signals = compute_signals(strategy, prepared.data)
    if engine == "auto":
        # Funded perpetuals run on the event path: the fast path pays no funding.
        engine = "event" if strategy.event_only or prepared.data.has_funding else "fast"
    if engine == "fast":
        if strategy.event_only:
            raise ValidationError("engine", "the fast path runs signal strategies only", engine)
        from tradestore.strategy.fast import run_fast

        result = run_fast(prepared.data, signals, prepared.config)
        if progress is not None:
            progress(prepared.data.n_bars, prepared.data.n_bars)
    else:
        result = run_event(
            prepared.data, signals, prepared.config, strategy=strategy, progress=progress
        )
    return signals, result, compute_metrics(result, prepared.conventions, prepared.data.close)


def extra_results(prepared: Prepared, signals: SignalMatrix) -> dict[str, Any]:
    return {
        "config": prepared.config.as_dict(),
        "sizing": prepared.config.sizing_text(prepared.data.n_symbols),
        "fees": {"taker": prepared.fee_sources, "rate": prepared.fee_rate},
        "signal_seconds": signals.seconds,
        "listings": {i.symbol: i.listing_id for i in prepared.data.instruments},
        "trading_rules": {i.symbol: i.rules for i in prepared.data.instruments},
        "bars": prepared.data.n_bars,
    }


def run_backtest(
    conn: psycopg.Connection[Any],
    request: BacktestRequest,
    *,
    progress: Progress | None = None,
    home: Path | None = None,
) -> RunOutcome:
    """Run and record one backtest; returns its run id, metrics and result. A failure
    after the run row exists marks it FAILED (with the error) before re-raising."""
    if request.write_report:
        # Before the run is recorded: a missing reports extra should cost nothing.
        from tradestore.strategy import reports  # noqa: F401
    prepared = prepare(conn, request)
    strategy = prepared.strategy()
    with conn.transaction():
        run_id = store.create_run(
            conn,
            strategy_name=prepared.strategy_name,
            strategy_id=prepared.record.id if prepared.record else None,
            user_id=prepared.user_id,
            symbols=prepared.data.symbols,
            timeframe=request.timeframe,
            start=prepared.request.start,
            end=prepared.request.end,
            parameters=prepared.parameters,
            initial_capital=prepared.config.initial_capital,
            fee_rate=prepared.fee_rate,
            slippage=prepared.config.slippage,
        )
    try:
        started = time.perf_counter()
        signals, result, metrics = simulate(
            prepared, strategy, engine=request.engine, progress=progress
        )
        columns = store.result_columns(
            prepared.data, result, metrics, extra=extra_results(prepared, signals)
        )
        columns["execution_time"] = Decimal(repr(time.perf_counter() - started))
        with conn.transaction():
            store.complete_run(conn, run_id, columns)
            if request.log_executions and prepared.record is not None:
                store.write_executions(
                    conn,
                    store.execution_rows(
                        prepared.data, signals, result, strategy_id=prepared.record.id,
                        user_id=prepared.record.user_id, run_id=run_id,
                    ),
                )  # fmt: skip
            if prepared.record is not None and prepared.runs_own_parameters:
                record_backtest_stats(
                    conn,
                    prepared.record.id,
                    {
                        "total_trades": metrics.total_trades,
                        "winning_trades": metrics.winning_trades,
                        "losing_trades": metrics.losing_trades,
                        "total_pnl": result.final_value - prepared.config.initial_capital,
                        "win_rate": columns["win_rate"],
                        "max_drawdown": columns["max_drawdown"],
                        "sharpe_ratio": columns["sharpe_ratio"],
                    },
                )
    except BaseException as exc:
        with conn.transaction():
            store.fail_run(
                conn, run_id, f"{type(exc).__name__}: {exc}",
                "CANCELED" if isinstance(exc, KeyboardInterrupt) else "FAILED",
            )  # fmt: skip
        raise
    outcome = RunOutcome(
        run_id, metrics, result, config=prepared.config,
        sizing=prepared.config.sizing_text(prepared.data.n_symbols),
    )  # fmt: skip
    if request.write_report:
        from tradestore.strategy.reports import Marks, reports_dir, summary_lines, write_run_report

        trades, times = result.trades, prepared.data.times
        marks = Marks(
            entries=times[trades.entry_t],
            exits=times[trades.exit_t[trades.closed]],
            directions=np.asarray(trades.direction, dtype=np.int8),
            summary=summary_lines({**metrics.as_dict(), "max_drawdown": metrics.max_drawdown}),
        )

        outcome.report = write_run_report(
            run_id, prepared.data.times, result.equity, float(prepared.config.initial_capital),
            title=f"#{run_id} {prepared.strategy_name} {','.join(prepared.data.symbols)} "
            f"{request.timeframe}",
            directory=reports_dir(home), marks=marks,
        )  # fmt: skip
    return outcome
