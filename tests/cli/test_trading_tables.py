"""The trading tables (orders, fills, positions, ledger) fit an 80-column terminal;
--wide shows every column."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.trading import conftest as trading
from tests.trading.desk import Desk
from tradestore.cli.common import OUTPUT
from tradestore.cli.main import app
from tradestore.config import get_settings

desk = trading.desk  # the trading tests' desk: an account with cash and a listing


@pytest.fixture
def run(db: str, desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "80")
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        return result.output

    yield invoke
    OUTPUT.exact = OUTPUT.wide = False
    get_settings.cache_clear()


# each table: the command, and headers only --wide shows
TABLES = [
    (("orders", "list"), ["account", "avg", "created"]),
    (("fills", "list"), ["trade id", "executed"]),
    (("positions",), ["market value", "realized", "fees"]),
    (("ledger", "show"), ["execution", "description"]),
    (("ledger", "balances"), []),
]


def test_trading_tables_fit_80_columns_and_wide_shows_all(run, desk: Desk, tmp_path: Path) -> None:
    acct = str(desk.account_id)
    out = run("orders", "submit", "-a", acct, "-s", "BTC/USDT", "--side", "buy", "-q", "0.5",
              "-p", "40000.009", "--key", "k1", "--client-id", "c-1")  # fmt: skip
    order_id = int(out.split()[1].rstrip(":"))
    feed = tmp_path / "fills.jsonl"
    feed.write_text(
        json.dumps({"order_id": order_id, "id": "a-rather-long-exchange-trade-id-0001",
                    "amount": 0.5, "price": 39990.123456, "fee": {"cost": 0.812345,
                    "currency": "USDT"}, "datetime": "2024-06-01T10:00:00Z"}) + "\n"
    )  # fmt: skip
    run("fills", "import", feed, "-a", acct)
    for command, minor in TABLES:
        args = [*command, "-a", acct]
        narrow = run(*args)
        assert max(len(line) for line in narrow.splitlines()) <= 80, (command, narrow)
        assert not any(f" {name} " in narrow for name in minor), (command, narrow)
        wide = run("--wide", *args)
        assert all(name in wide for name in minor), (command, wide)
        OUTPUT.wide = False
    # the essential figures are still there at 80 columns
    assert "FILLED" in run("orders", "list", "-a", acct)
    assert "BTCUSDT" in run("positions", "-a", acct)
    assert "TRADE" in run("ledger", "show", "-a", acct)
