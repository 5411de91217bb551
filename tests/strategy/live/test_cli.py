"""The runner commands: add, list, halt, resume, remove, and live mode's confirmation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.cli import cli_session
from tests.trading.desk import build_desk
from tradestore.strategy.registry import create_strategy


@pytest.fixture
def run(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with cli_session(db, tmp_path / "home", monkeypatch) as invoke:
        yield invoke


def test_runner_commands(run: Any, conn: psycopg.Connection[Any]) -> None:
    desk = build_desk(conn, cash=10_000)
    create_strategy(conn, user_id=desk.user_id, name="golden", implementation="sma_crossover")
    code, out = run("runners", "add", "golden", "-a", desk.account_id, "-s", "BTCUSDT",
                    "--simulated", "--max-open-orders", "3", "--daily-loss-limit", "250")  # fmt: skip
    assert code == 0, out
    code, out = run("runners", "list")
    assert code == 0 and "golden" in out and "BTCUSDT" in out and "STOPPED" in out
    assert conn.execute(
        "SELECT max_open_orders, daily_loss_limit FROM analytics.strategy_runners"
    ).fetchone() == (3, 250)
    conn.execute("UPDATE analytics.strategy_runners SET state = 'RUNNING'")
    code, out = run("halt", "--reason", "drill")
    assert code == 0 and "halted" in out
    assert conn.execute("SELECT halted FROM trade.trading_halt").fetchone() == (True,)
    code, out = run("resume")
    assert code == 0 and "1 runners" in out
    assert conn.execute("SELECT state FROM analytics.strategy_runners").fetchone() == ("RUNNING",)
    conn.execute("UPDATE analytics.strategy_runners SET state = 'STOPPED'")
    code, out = run("runners", "remove", "1")
    assert code == 0, out
    assert conn.execute("SELECT count(*) FROM analytics.strategy_runners").fetchone() == (0,)


def test_live_mode_needs_a_terminal_confirmation(run: Any, conn: psycopg.Connection[Any]) -> None:
    desk = build_desk(conn, cash=10_000)
    create_strategy(conn, user_id=desk.user_id, name="golden", implementation="sma_crossover")
    code, out = run("runners", "add", "golden", "-a", desk.account_id, "-s", "BTCUSDT", "--live")
    assert code != 0 and "terminal" in out
    assert conn.execute("SELECT count(*) FROM analytics.strategy_runners").fetchone() == (0,)


def test_removing_an_unknown_runner_names_it(run: Any, conn: psycopg.Connection[Any]) -> None:
    code, out = run("runners", "remove", "999")
    assert code != 0 and "runner 999 not found" in out
