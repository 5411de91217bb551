"""`tradestore collect --once` against the fake Binance, then `tradestore paper run --once`
filling a 'sim' account's market order from the collected book; `accounts list` marks it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from tests.market.collect.conftest import ms
from tests.support.fake_exchange import FakeBinance
from tests.trading.desk import build_desk
from tradestore.cli.main import app
from tradestore.config import get_settings
from tradestore.trading import get_order, submit_order


def test_collect_then_paper_run(
    conn: psycopg.Connection[Any],
    db: str,
    fake: FakeBinance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    desk = build_desk(conn, cash=100_000)
    start = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=10)
    for i in range(10):
        fake.add_bar("BTCUSDT", ms(start + dt.timedelta(minutes=i)), "100", "101", "99", "100", "1")
    fake.set_book("BTCUSDT", [("99.5", "1")], [("100.5", "2")])
    runner = CliRunner()

    result = runner.invoke(app, ["collect", "-x", "binance", "-s", "BTC/USDT"])
    assert result.exit_code == 1 and "nothing to collect" in result.output

    result = runner.invoke(app, ["route", "set", "-a", str(desk.account_id), "--mode", "sim"])
    assert result.exit_code == 0, result.output

    args = ["collect", "-x", "binance", "-s", "BTC/USDT", "--candles", "1m", "--orderbook", "5"]
    result = runner.invoke(app, [*args, "--once", "--api-url", fake.url])
    assert result.exit_code == 0, result.output
    assert "'candles': 10" in result.output and "'orderbook': 1" in result.output
    assert conn.execute("SELECT count(*) FROM market.candles").fetchone()[0] == 10
    # A spot BUY at market reserves its funds at the latest price: collected data gives it.
    order = submit_order(conn, desk.account_id, desk.btc, "BUY", "MARKET", "0.5")

    result = runner.invoke(app, ["paper", "run", "--once"])
    assert result.exit_code == 0, result.output
    assert "1 fills" in result.output
    filled = get_order(conn, order)
    assert (filled.status, filled.average_fill_price) == ("FILLED", Decimal("100.5"))

    result = runner.invoke(app, ["accounts", "list"])
    assert result.exit_code == 0 and "PAPER (sim)" in result.output
    get_settings.cache_clear()


def test_collectors_for_up_are_added_listed_and_removed(
    conn: psycopg.Connection[Any], db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    runner = CliRunner()
    args = ["collect", "add", "-x", "Binance", "-s", "BTC/USDT", "-s", "ETH/USDT",
            "--candles", "1m", "--orderbook", "10", "--interval", "2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert conn.execute(
        "SELECT exchange, symbols, kinds, timeframe, depth, interval_s, enabled "
        "FROM market.collector_feeds"
    ).fetchone() == ("binance", ["BTC/USDT", "ETH/USDT"], ["candles", "orderbook"], "1m", 10,
                     2, True)  # fmt: skip
    # --rest: poll even what the exchange streams (its websocket is the default).
    result = runner.invoke(app, ["collect", "add", "-x", "binance", "-s", "SOL/USDT", "--trades",
                                 "--rest"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert conn.execute(
        "SELECT array_agg(transport ORDER BY id) FROM market.collector_feeds"
    ).fetchone() == (["auto", "rest"],)
    result = runner.invoke(app, ["collect", "remove", "2"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["collect", "add", "-x", "binance", "-s", "BTC/USDT"])
    assert result.exit_code == 1 and "nothing to collect" in result.output
    result = runner.invoke(app, ["collect", "add", "-x", "binance", "-s", "X/Y", "--candles", "7q"])
    assert result.exit_code == 1 and "timeframe" in result.output
    result = runner.invoke(app, ["collect", "list"])
    assert result.exit_code == 0 and "BTC/USDT,ETH/USDT" in result.output
    assert "candles,orderbook" in result.output
    result = runner.invoke(app, ["collect", "remove", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["collect", "remove", "1"])
    assert result.exit_code == 1 and "collector 1 not found" in result.output
    assert conn.execute("SELECT count(*) FROM market.collector_feeds").fetchone() == (0,)
    get_settings.cache_clear()
