"""`market query --limit`: the first N bars from --from, else the latest N."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.market.helpers import bars, write_csv
from tradestore.cli.main import app
from tradestore.config import get_settings


@pytest.fixture
def run(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def _minutes(output: str) -> list[str]:
    """The bar times printed, as HH:MM, in order."""
    return re.findall(r"2024-01-01[ T](\d\d:\d\d):00", output)


def test_limit_prints_the_first_bars_from_the_start_or_the_latest(
    run: CliRunner, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "btc.csv", bars(60))  # 00:00 .. 00:59
    done = run.invoke(app, ["ingest", "candles", str(path), "-x", "binance", "-s", "BTC/USDT",
                            "-t", "1m", "--create"])  # fmt: skip
    assert done.exit_code == 0, done.output
    query = ["market", "query", "-x", "binance", "-s", "BTC/USDT", "-t", "1m"]

    first = run.invoke(app, [*query, "--from", "2024-01-01T00:10", "--limit", "5"])
    assert first.exit_code == 0, first.output
    assert _minutes(first.output) == ["00:10", "00:11", "00:12", "00:13", "00:14"]
    assert "50 bars (the first 5 shown)" in first.output

    latest = run.invoke(app, [*query, "--limit", "5"])
    assert latest.exit_code == 0, latest.output
    assert _minutes(latest.output) == ["00:55", "00:56", "00:57", "00:58", "00:59"]
    assert "60 bars (the latest 5 shown)" in latest.output

    helped = run.invoke(app, [*query, "--help"])
    assert "first N from that time" in helped.output and "latest N" in helped.output
