"""`tradestore backtest ...` and `tradestore strategies ...` end to end on a real database
(the Typer apps, invoked as the user types them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from tests.strategy.market import SPOT_RULES, listing, load, random_walk, user
from tradestore.cli.backtest import app, parse_grid, parse_time, strategies_app
from tradestore.config import get_settings
from tradestore.db.errors import ValidationError

runner = CliRunner()


@pytest.fixture
def env(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "250")
    get_settings.cache_clear()
    with psycopg.connect(db, autocommit=True) as conn:
        lid = listing(conn, "BTC/USDT", SPOT_RULES)
        load(conn, lid, random_walk(3000, seed=8))
        user(conn, "ana")
    yield tmp_path / "home"
    get_settings.cache_clear()


def invoke(target: Any, *args: str) -> Any:
    result = runner.invoke(target, list(args))
    return result


def test_parsers() -> None:
    assert (
        parse_time("2024-01-31", "to", end=True).isoformat() == "2024-01-31T23:59:59.999999+00:00"
    )
    assert parse_time("2024-01-31T10:00", "from").isoformat() == "2024-01-31T10:00:00+00:00"
    assert parse_grid(["fast=5:15:5", "slow=20,30"]) == {"fast": ["5", "10", "15"],
                                                          "slow": ["20", "30"]}  # fmt: skip
    with pytest.raises(ValidationError):
        parse_time("yesterday", "from")


def test_strategies_then_run_list_show(env: Path) -> None:
    out = invoke(strategies_app, "create", "golden", "--implementation", "sma_crossover",
                 "--param", "fast=5", "--param", "slow=20", "--stop-loss", "1.5", "--user", "ana")  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "golden" in out.output and "fast=5" in out.output
    out = invoke(strategies_app, "list")
    assert out.exit_code == 0 and "golden" in out.output and "bollinger_breakout" in out.output

    out = invoke(app, "run", "--strategy", "golden", "--symbol", "BTCUSDT", "--timeframe", "1m",
                 "--from", "2024-01-01", "--to", "2024-01-03", "--fee", "0.001",
                 "--size-pct", "100")  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "backtest run 1" in out.output and "Sharpe" in out.output
    assert (env / "reports" / "backtests" / "run_1.html").exists()

    out = invoke(app, "run", "--strategy", "rsi_mean_reversion", "--symbol", "BTC/USDT",
                 "--from", "2024-01-01", "--to", "2024-01-02", "-p", "period=9",
                 "--engine", "fast", "--no-report")  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "fast engine" in out.output

    out = invoke(app, "list", "--sort", "total_return")
    assert out.exit_code == 0 and "golden" in out.output and "rsi_mean_reversion" in out.output
    out = invoke(app, "show", "1")
    assert out.exit_code == 0, out.output
    assert "sortino_ratio" in out.output and "run_1.html" in out.output


def test_errors_name_field_rule_and_value_without_traceback(env: Path) -> None:
    out = invoke(app, "run", "--strategy", "sma_crossover", "--symbol", "DOGEUSDT",
                 "--from", "2024-01-01", "--to", "2024-01-02")  # fmt: skip
    assert out.exit_code == 1
    assert "symbol" in out.output and "DOGEUSDT" in out.output and "Traceback" not in out.output
    out = invoke(app, "run", "--strategy", "sma_crossover", "--symbol", "BTCUSDT",
                 "--from", "2024-01-01", "--to", "2024-01-02", "--param", "fast=abc")  # fmt: skip
    assert out.exit_code == 1 and "parameters.fast" in out.output and "abc" in out.output
    out = invoke(app, "list", "--sort", "luck")
    assert out.exit_code == 1 and "metric" in out.output
    out = invoke(app, "show", "999")
    assert out.exit_code == 1 and "999" in out.output
    out = invoke(strategies_app, "create", "bad", "--implementation", "sma_crossover",
                 "--risk", "500", "--user", "ana")  # fmt: skip
    assert out.exit_code == 1 and "risk_per_trade" in out.output and "500" in out.output


def test_sweep_command_on_a_scheduler(env: Path) -> None:
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        out = invoke(app, "sweep", "--strategy", "ema_crossover", "--symbol", "BTCUSDT",
                     "--from", "2024-01-01", "--to", "2024-01-02", "--grid", "fast=3:9:3",
                     "--grid", "slow=8,12", "--scheduler", cluster.scheduler_address,
                     "--metric", "total_return", "--top", "3")  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "sweep 1: 5 completed, 0 failed, 1 invalid combinations skipped" in out.output
    assert "best runs of sweep 1 by total_return" in out.output
    out = invoke(app, "list", "--sweep", "1", "--sort", "max_drawdown", "--limit", "10")
    assert out.exit_code == 0 and out.output.count("ema_crossover") == 5


def test_a_cli_backtest_belongs_to_its_user_and_is_hidden_from_others(db: str, env: Path) -> None:
    """A backtest run from the CLI always has an owner (the --user, or the only user); with
    several users one must be named; another trader and a readonly user do not see it."""
    from tradestore.identity.rls import as_user

    with psycopg.connect(db, autocommit=True) as conn:
        ana = conn.execute("SELECT id FROM account.users WHERE username = 'ana'").fetchone()[0]
    run = ("run", "--strategy", "sma_crossover", "--symbol", "BTCUSDT", "--from", "2024-01-01",
           "--to", "2024-01-02", "--no-report")  # fmt: skip
    out = invoke(app, *run)  # ana is the only user: she owns it
    assert out.exit_code == 0, out.output

    with psycopg.connect(db, autocommit=True) as conn:
        bob = user(conn, "bob")
        rita = user(conn, "rita")
        conn.execute("UPDATE account.users SET role = 'readonly' WHERE id = %s", (rita,))
    out = invoke(app, *run)  # three users now: which one?
    assert out.exit_code == 1 and "user" in out.output and "Traceback" not in out.output
    out = invoke(app, *run, "--user", "bob")
    assert out.exit_code == 0, out.output

    with psycopg.connect(db, autocommit=True) as conn:
        owners = dict(conn.execute("SELECT id, user_id FROM analytics.backtest_runs").fetchall())
        assert owners == {1: ana, 2: bob}
        sql = "SELECT id FROM analytics.backtest_runs ORDER BY id"
        with as_user(conn, bob) as c:
            assert [r[0] for r in c.execute(sql)] == [2]
        with as_user(conn, ana) as c:
            assert [r[0] for r in c.execute(sql)] == [1]
        with as_user(conn, rita) as c:
            assert c.execute(sql).fetchall() == []
            view = "SELECT backtest_id FROM analytics.backtest_results"
            assert c.execute(view).fetchall() == []


def test_a_strategy_has_no_hidden_risk_settings_and_show_lists_them(env: Path) -> None:
    """strategies create stores no stop, target, risk or limit it was not given, and says
    so; a run of it makes no stop exits, sizes by the stated default, and backtest show
    lists every setting with buy & hold, SQN and exposure."""
    out = invoke(strategies_app, "create", "plain", "--implementation", "sma_crossover",
                 "--param", "fast=5", "--param", "slow=20", "--user", "ana")  # fmt: skip
    assert out.exit_code == 0, out.output
    assert ("stop-loss none, take-profit none, risk per trade none, max positions no limit"
            in out.output)  # fmt: skip
    out = invoke(strategies_app, "create", "--help")
    assert "default: none" in out.output
    out = invoke(app, "run", "--strategy", "plain", "--symbol", "BTCUSDT", "--from",
                 "2024-01-01", "--to", "2024-01-03", "--no-report")  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "100% of equity per entry (default: equity / position slots)" in out.output
    assert "buy & hold return" in out.output and "SQN" in out.output
    out = invoke(app, "show", "1", "--no-report", "--trades", "1000")
    assert out.exit_code == 0, out.output
    assert "stop_loss" not in out.output.split("last")[-1]  # no trade exits on a stop
    for text in ("stop loss", "take profit", "risk per trade", "max positions",
                 "buy_and_hold_return", "sqn", "exposure (bars holding at close)"):  # fmt: skip
        assert text in out.output, text
    assert "one per symbol" in out.output
