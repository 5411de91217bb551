"""`tradestore route` and `tradestore fills sync` end to end against the fake Binance."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.trading.exchange.conftest import Loop
from tradestore.cli.main import app
from tradestore.config import get_settings
from tradestore.trading import get_order, submit_order


def test_route_run_once_then_fills_sync(
    loop: Loop, db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRADESTORE_SECRET_KEY", "s" * 40)
    get_settings.cache_clear()
    runner = CliRunner()
    account = str(loop.desk.account_id)

    result = runner.invoke(app, ["route", "set", "-a", account, "--mode", "bogus"])
    assert result.exit_code == 1 and "trading_mode" in result.output
    result = runner.invoke(app, ["route", "set", "-a", account, "--mode", "live"])
    assert result.exit_code == 0, result.output

    order_id = submit_order(
        loop.conn, loop.desk.account_id, loop.desk.btc, "BUY", "LIMIT", Decimal("0.01"),
        Decimal("50000"),
    )  # fmt: skip
    result = runner.invoke(app, ["route", "run", "--once", "--api-url", loop.fake.url])
    assert result.exit_code == 0, result.output
    assert "sent 1" in result.output

    loop.fake.fill(loop.route(order_id)["client_order_id"], "0.01", "50000", "0.5", "USDT")
    result = runner.invoke(app, ["fills", "sync", "-a", account, "--api-url", loop.fake.url])
    assert result.exit_code == 0, result.output
    assert "1 new fill(s)" in result.output
    assert get_order(loop.conn, order_id).status == "FILLED"

    loop.fake.balances["USDT"] += Decimal(3)
    result = runner.invoke(app, ["fills", "sync", "-a", account, "--api-url", loop.fake.url])
    assert result.exit_code == 1 and "drift" in result.output and "USDT" in result.output
    get_settings.cache_clear()
