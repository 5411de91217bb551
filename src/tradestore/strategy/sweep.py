"""Parameter sweeps on Dask distributed.

The client resolves the strategy, listings, rules and fees and loads the candles once,
then scatters them to every worker (broadcast), so workers need no database access. Each
combination of the grid is a task that runs the simulation (the fast path by default) and
returns the run's result columns; the client stores every combination as its own run
linked to the sweep (analytics.backtest_sweeps) as results arrive.

By default the cluster is a LocalCluster of one single-threaded worker process per core
(the engines hold the GIL in Python parts, so processes, not threads). Given a scheduler
address (`tcp://host:8786`), the same code runs on that multi-node cluster; its workers
need tradestore installed, nothing else.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.db.errors import ValidationError
from tradestore.extras import requires_extra
from tradestore.strategy import store
from tradestore.strategy.runner import BacktestRequest, Prepared, extra_results, prepare, simulate
from tradestore.strategy.strategies import Strategy, coerce_params

__all__ = [
    "MAX_COMBINATIONS",
    "SweepOutcome",
    "evaluate",
    "expand_grid",
    "open_client",
    "run_sweep",
]

MAX_COMBINATIONS = 100_000
SweepProgress = Callable[[int, int], None]


@dataclass
class SweepOutcome:
    sweep_id: int
    run_ids: list[int]
    completed: int = 0
    failed: int = 0
    skipped: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 0


def expand_grid(
    implementation: type[Strategy], base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]]
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """Every combination of the grid's values (typed like the strategy's parameters), and
    the combinations the strategy refuses (e.g. fast >= slow) with the reason."""
    if not grid:
        raise ValidationError("grid", "must give at least one parameter with values", "{}")
    axes: list[list[tuple[str, Any]]] = []
    for name, values in grid.items():
        values = list(values)
        if not values:
            raise ValidationError(f"grid.{name}", "must list at least one value", "[]")
        axes.append([(name, coerce_params(implementation, {name: v})[name]) for v in values])
    total = 1
    for axis in axes:
        total *= len(axis)
    if total > MAX_COMBINATIONS:
        raise ValidationError("grid", f"must have at most {MAX_COMBINATIONS} combinations", total)
    valid, skipped = [], []
    for combo in itertools.product(*axes):
        params = dict(combo)
        try:
            implementation(**{**base, **params})
        except ValidationError as exc:
            skipped.append((params, str(exc)))
            continue
        valid.append(params)
    return valid, skipped


def evaluate(prepared: Prepared, params: Mapping[str, Any], engine: str) -> dict[str, Any]:
    """One combination, on a worker: the result columns of its run."""
    started = time.perf_counter()
    strategy = prepared.strategy(params)
    signals, result, metrics = simulate(prepared, strategy, engine=engine)
    columns = store.result_columns(
        prepared.data, result, metrics, extra=extra_results(prepared, signals)
    )
    columns["execution_time"] = Decimal(repr(time.perf_counter() - started))
    return columns


def open_client(scheduler_address: str | None = None, n_workers: int | None = None) -> Any:
    """A Dask client: to the scheduler at scheduler_address, else to a new LocalCluster of
    n_workers single-threaded worker processes (default: one per core)."""
    with requires_extra("backtest", "a parameter sweep on Dask"):
        from dask.distributed import Client, LocalCluster

    if scheduler_address:
        return Client(scheduler_address)
    cluster = LocalCluster(
        n_workers=n_workers or os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return Client(cluster)


def _close(client: Any) -> None:
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def run_sweep(
    conn: psycopg.Connection[Any],
    request: BacktestRequest,
    grid: Mapping[str, Sequence[Any]],
    *,
    scheduler_address: str | None = None,
    n_workers: int | None = None,
    client: Any = None,
    engine: str = "auto",
    progress: SweepProgress | None = None,
) -> SweepOutcome:
    """Run every combination of `grid` (over the request's base parameters) on Dask and
    store each as a run of a new sweep. Pass `client` to reuse a running cluster."""
    with requires_extra("backtest", "a parameter sweep on Dask"):
        from dask.distributed import as_completed

    started = time.perf_counter()
    prepared = prepare(conn, request)
    combos, skipped = expand_grid(prepared.implementation, prepared.parameters, grid)
    if not combos:
        raise ValidationError("grid", "no combination is valid for the strategy", skipped[0][1])
    own_client = client is None
    if own_client:
        client = open_client(scheduler_address, n_workers)
    where = scheduler_address or getattr(getattr(client, "scheduler", None), "address", None)
    try:
        with conn.transaction():
            sweep_id = store.create_sweep(
                conn, strategy_name=prepared.strategy_name,
                grid={k: list(v) for k, v in grid.items()},
                engine="dask" if scheduler_address is None else "dask-remote",
                scheduler_address=where, user_id=prepared.user_id,
            )  # fmt: skip
            run_ids = store.create_runs(
                conn,
                {
                    "sweep_id": sweep_id, "user_id": prepared.user_id,
                    "strategy_id": prepared.record.id if prepared.record else None,
                    "strategy_name": prepared.strategy_name, "start": prepared.request.start,
                    "end": prepared.request.end, "symbols": prepared.data.symbols,
                    "timeframe": request.timeframe,
                    "initial_capital": prepared.config.initial_capital,
                    "fee_rate": prepared.fee_rate, "slippage": prepared.config.slippage,
                },
                [{**prepared.parameters, **c} for c in combos],
            )  # fmt: skip
        outcome = SweepOutcome(sweep_id, run_ids, skipped=skipped)
        outcome.workers = len(client.scheduler_info().get("workers", {}))
        shared = client.scatter(prepared, broadcast=True)
        futures = {
            client.submit(evaluate, shared, params, engine, key=f"backtest-run-{run_id}"): run_id
            for run_id, params in zip(run_ids, combos, strict=True)
        }
        with conn.transaction():
            store.mark_running(conn, run_ids)
        done = 0
        try:
            for future in as_completed(futures):
                run_id = futures[future]
                try:
                    columns = future.result()
                except Exception as exc:  # a failed combination fails its run only
                    with conn.transaction():
                        store.fail_run(conn, run_id, f"{type(exc).__name__}: {exc}")
                    outcome.failed += 1
                else:
                    with conn.transaction():
                        store.complete_run(conn, run_id, columns)
                    outcome.completed += 1
                done += 1
                if progress is not None:
                    progress(done, len(run_ids))
        except BaseException:
            client.cancel(list(futures))
            with conn.transaction():
                for run_id in run_ids:
                    store.fail_run(conn, run_id, "sweep canceled", "CANCELED")
                store.finish_sweep(conn, sweep_id, "CANCELED")
            raise
        with conn.transaction():
            store.finish_sweep(conn, sweep_id, "FAILED" if not outcome.completed else "COMPLETED")
    finally:
        if own_client:
            _close(client)
    outcome.seconds = time.perf_counter() - started
    return outcome
