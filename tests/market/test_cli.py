"""`tradestore ingest ...` and `tradestore market ...`, run in-process with CliRunner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest
from typer.testing import CliRunner

from tests.market.helpers import bars, write_csv
from tradestore.cli.market import ingest_app, market_app
from tradestore.config import get_settings


@pytest.fixture
def run(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_ingest_query_indicators_and_retention(
    run: CliRunner, conn: psycopg.Connection, tmp_path: Path
) -> None:
    rows = bars(3 * 60)
    rows[10]["volume"] = "-5"
    path = write_csv(tmp_path / "btc.csv", rows)
    done = run.invoke(
        ingest_app,
        [
            "candles",
            str(path),
            "--exchange",
            "binance",
            "--symbol",
            "BTC/USDT",
            "--timeframe",
            "1m",
            "--create",
            "--allow-rejects",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "180 rows, 179 new, 0 replaced, 0 unchanged, 1 rejected" in done.output
    assert f"{path}:12: volume: must be >= 0 and finite (value: '-5')" in done.output
    assert "rollups refreshed" in done.output
    assert conn.execute("SELECT count(*) FROM market.candle_rollups").fetchone()[0] == 3

    out = tmp_path / "hourly.parquet"
    exported = run.invoke(
        market_app, ["query", "-x", "binance", "-s", "BTC/USDT", "-t", "1h", "--out", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    assert pl.read_parquet(out).height == 3
    shown = run.invoke(market_app, ["query", "-x", "binance", "-s", "BTC/USDT", "-t", "4h"])
    assert shown.exit_code == 0 and "1 bars" in shown.output

    computed = run.invoke(market_app, ["indicators", "compute", "-x", "binance", "-s", "BTC/USDT"])
    assert computed.exit_code == 0 and "179 bar(s) written" in computed.output
    long = tmp_path / "ind.csv"
    assert (
        run.invoke(
            market_app,
            ["indicators", "export", str(long), "-x", "binance", "-s", "BTC/USDT", "--long"],
        ).exit_code
        == 0
    )
    assert "indicator_type" in long.read_text().splitlines()[0]

    assert run.invoke(market_app, ["rollup", "add", "5m"]).exit_code == 0
    refreshed = run.invoke(market_app, ["rollup", "refresh", "-x", "binance", "-s", "BTC/USDT"])
    assert refreshed.exit_code == 0 and "36 new bucket(s)" in refreshed.output
    listed = run.invoke(market_app, ["rollup", "list"])
    assert "binance:BTC/USDT" in listed.output and "raw 1m" in listed.output

    assert run.invoke(market_app, ["retention", "set", "tickers", "7d"]).exit_code == 0
    shown = run.invoke(market_app, ["retention", "show"])
    assert "market.tickers" in shown.output and "7 days" in shown.output
    assert run.invoke(market_app, ["retention", "apply", "--dry-run"]).exit_code == 0
    assert run.invoke(market_app, ["partitions", "premake"]).exit_code == 0


def test_errors_are_one_line_with_field_rule_value(run: CliRunner, tmp_path: Path) -> None:
    bad = run.invoke(
        ingest_app, ["candles", str(tmp_path / "nope.csv"), "-x", "binance", "-s", "BTC/USDT"]
    )
    assert bad.exit_code == 1
    assert "file: must exist" in bad.output and "Traceback" not in bad.output
    bad = run.invoke(
        ingest_app,
        ["candles", str(tmp_path / "nope.csv"), "-x", "binance", "-s", "BTC/USDT", "-t", "7x"],
    )
    assert bad.exit_code == 1 and "timeframe:" in bad.output
    bad = run.invoke(market_app, ["retention", "set", "rollups", "30d", "-t", "3m"])
    assert bad.exit_code == 1 and "does not exist" in bad.output
    bad = run.invoke(market_app, ["query", "-x", "binance", "-s", "NOPE"])
    assert bad.exit_code == 1 and "symbol" in bad.output
