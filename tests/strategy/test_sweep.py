"""Parameter sweeps on Dask: every combination is its own run linked to the sweep, the
results equal single runs of the same parameters, and the best runs are listed by any
metric. The cluster here is in-process (fast to start); the benchmark runs real worker
processes."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from dask.distributed import Client, LocalCluster

from tests.strategy.market import SPOT_RULES, listing, load, random_walk, user, utc
from tradestore.db.errors import ValidationError
from tradestore.strategy import store
from tradestore.strategy.runner import BacktestRequest, prepare, simulate
from tradestore.strategy.strategies import get_implementation
from tradestore.strategy.sweep import expand_grid, run_sweep


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as c:  # fmt: skip
        yield c


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as c:
        yield c


@pytest.fixture
def base(conn: psycopg.Connection[Any]) -> BacktestRequest:
    user(conn)  # the only user: the sweep's owner
    lid = listing(conn, "BTC/USDT", SPOT_RULES)
    load(conn, lid, random_walk(4000, seed=2))
    return BacktestRequest(
        strategy="sma_crossover", symbols=("BTCUSDT",), timeframe="1m",
        start=utc("2024-01-01"), end=utc("2024-01-04"), fee_rate=Decimal("0.001"),
        position_size_pct=Decimal(100), write_report=False,
    )  # fmt: skip


def test_expand_grid_types_and_skips_invalid_combinations() -> None:
    impl = get_implementation("sma_crossover")
    combos, skipped = expand_grid(impl, {}, {"fast": ["5", "10", "30"], "slow": [20, 30]})
    assert {"fast": 5, "slow": 20} in combos and len(combos) == 4
    assert len(skipped) == 2 and all("parameters.fast" in reason for _, reason in skipped)
    with pytest.raises(ValidationError) as err:
        expand_grid(impl, {}, {"speed": [1]})
    assert err.value.field == "parameters.speed"


def test_sweep_stores_each_combination_as_a_run(
    conn: psycopg.Connection[Any], base: BacktestRequest, client: Client
) -> None:
    grid = {"fast": [3, 5, 8], "slow": [13, 21]}
    seen: list[tuple[int, int]] = []
    outcome = run_sweep(conn, base, grid, client=client,
                        progress=lambda d, t: seen.append((d, t)))  # fmt: skip
    assert outcome.completed == 6 and outcome.failed == 0 and seen[-1] == (6, 6)
    sweep = store.get_sweep(conn, outcome.sweep_id)
    assert sweep["status"] == "COMPLETED" and sweep["runs"] == sweep["completed"] == 6
    runs = store.list_runs(conn, sweep_id=outcome.sweep_id, limit=100)
    assert {(r["parameters"]["fast"], r["parameters"]["slow"]) for r in runs} == {
        (f, s) for f in grid["fast"] for s in grid["slow"]}  # fmt: skip
    # a sweep run equals a single run of its parameters
    prepared = prepare(conn, base)
    one = next(r for r in runs if r["parameters"] == {"fast": 5, "slow": 21})
    _, result, metrics = simulate(prepared, prepared.strategy({"fast": 5, "slow": 21}),
                                  engine="fast")  # fmt: skip
    assert one["total_trades"] == metrics.total_trades
    assert float(one["final_value"]) == pytest.approx(float(result.final_value), rel=1e-12)
    # best runs by any metric, best first
    for metric in ("sharpe_ratio", "total_return", "max_drawdown", "profit_factor"):
        best = store.best_runs(conn, metric, sweep_id=outcome.sweep_id, limit=3)
        values = [r[metric] for r in best if r[metric] is not None]
        assert values == sorted(values, reverse=metric != "max_drawdown")
    with pytest.raises(ValidationError):
        store.best_runs(conn, "drop table", sweep_id=outcome.sweep_id)


def test_sweep_on_a_scheduler_address(
    conn: psycopg.Connection[Any], base: BacktestRequest, cluster: LocalCluster
) -> None:
    """The multi-node code path: the sweep connects to a scheduler by its address."""
    outcome = run_sweep(conn, base, {"fast": [4, 6]}, scheduler_address=cluster.scheduler_address)
    sweep = store.get_sweep(conn, outcome.sweep_id)
    assert sweep["scheduler_address"] == cluster.scheduler_address
    assert sweep["engine"] == "dask-remote" and outcome.completed == 2
