"""A new user's first hour with `tradestore ingest` and `tradestore market`: real Binance
files (skipped when /work/shared/data is absent) and a small Nasdaq-style daily file
with a pandas index column, run in-process with CliRunner against real PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from tests.market.helpers import bars, real_file, write_csv
from tradestore.cli.main import app
from tradestore.config import get_settings


@pytest.fixture
def run(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "300")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


# A daily equity file as pandas writes it (`df.to_csv()`): the index column has no name.
NASDAQ = """\
,Open,High,Low,Close,Volume
2024-01-02,187.15,188.44,183.885,185.64,82488700
2024-01-03,184.22,185.88,183.43,184.25,58414500
2024-01-04,182.15,183.0872,180.88,181.91,71983600
2024-01-05,181.99,182.76,180.17,181.18,62303300
"""


def _head(source: Path, target: Path, rows: int) -> Path:
    lines = source.read_text().splitlines()[: rows + 1]
    target.write_text("\n".join(lines) + "\n")
    return target


def test_pandas_index_equity_file_needs_create_and_takes_its_kind(
    run: CliRunner, conn: psycopg.Connection, tmp_path: Path
) -> None:
    path = tmp_path / "AAPL.csv"
    path.write_text(NASDAQ)
    args = ["ingest", "candles", str(path), "-x", "nasdaq", "-s", "AAPL", "-t", "1d"]

    refused = run.invoke(app, args)
    assert refused.exit_code == 1
    assert "exchange: does not exist (pass --create to create it)" in refused.output
    assert "Traceback" not in refused.output
    assert conn.execute("SELECT count(*) FROM market.exchanges").fetchone()[0] == 0

    done = run.invoke(app, [*args, "--create", "--kind", "equity"])
    assert done.exit_code == 0, done.output
    assert "created exchange nasdaq (EQUITY)" in done.output
    assert "created instrument AAPL (EQUITY)" in done.output
    assert "created listing nasdaq:AAPL" in done.output
    assert "4 rows, 4 new, 0 replaced, 0 unchanged, 0 rejected" in done.output
    assert conn.execute(
        "SELECT x.kind, i.asset_class FROM market.exchange_instruments ei "
        "JOIN market.exchanges x ON x.id = ei.exchange_id "
        "JOIN market.instruments i ON i.id = ei.instrument_id"
    ).fetchone() == ("EQUITY", "EQUITY")
    first = conn.execute('SELECT min("time"), max(close) FROM market.candles').fetchone()
    assert first[0] == dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    assert str(first[1]) == "185.64"

    # A new listing on the existing exchange takes the exchange's kind without --kind.
    msft = tmp_path / "MSFT.csv"
    msft.write_text(NASDAQ)
    more = run.invoke(app, ["ingest", "candles", str(msft), "-x", "nasdaq", "-s", "MSFT",
                            "-t", "1d", "--create"])  # fmt: skip
    assert more.exit_code == 0, more.output
    assert "created instrument MSFT (EQUITY)" in more.output
    assert "exchange" not in more.output.split("created instrument")[0]


def test_typo_in_symbol_is_refused_with_close_matches(
    run: CliRunner, conn: psycopg.Connection, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "btc.csv", bars(10))
    made = run.invoke(app, ["ingest", "candles", str(path), "-x", "binance", "-s", "BTC/USDT",
                            "--create"])  # fmt: skip
    assert made.exit_code == 0, made.output
    typo = run.invoke(app, ["ingest", "candles", str(path), "-x", "binance", "-s", "BTC/USTD"])
    assert typo.exit_code == 1
    assert "symbol: is not listed on binance (pass --create to create it)" in typo.output
    assert "close matches: binance:BTC/USDT" in typo.output
    assert conn.execute("SELECT count(*) FROM market.exchange_instruments").fetchone()[0] == 1
    # Every spelling of the same listing finds it, so none needs --create.
    for spelling in ("BTCUSDT", "btc/usdt", "BINANCE:BTCUSDT"):
        again = run.invoke(app, ["ingest", "candles", str(path), "-x", "binance", "-s", spelling])
        assert again.exit_code == 0, (spelling, again.output)
        assert "10 unchanged" in again.output
    assert conn.execute("SELECT count(*) FROM market.exchange_instruments").fetchone()[0] == 1


def test_malformed_csv_rows_are_reported_as_file_line_reason(
    run: CliRunner, conn: psycopg.Connection, tmp_path: Path
) -> None:
    source = real_file("binance_UNITTEST_BTC-30m.csv")
    lines = source.read_text().splitlines()[:7]
    lines[2] += ",extra"  # line 3: a field too many
    lines[5] = '"' + lines[5]  # line 6: a quote never closed (swallows line 7)
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(lines) + "\n")
    args = ["ingest", "candles", str(path), "-x", "binance", "-s", "UNITTEST/BTC", "-t", "30m",
            "--create"]  # fmt: skip

    done = run.invoke(app, args)
    assert "Traceback" not in done.output
    assert f"{path}:3: row: has 7 fields, the header has 6" in done.output
    assert f"{path}:6: row: a quote opened here is never closed" in done.output
    assert "5 rows, 3 new, 0 replaced, 0 unchanged, 2 rejected" in done.output
    assert done.exit_code == 1
    assert "2 row(s) rejected" in done.output
    assert conn.execute("SELECT count(*) FROM market.candles").fetchone()[0] == 3

    allowed = run.invoke(app, [*args, "--allow-rejects"])
    assert allowed.exit_code == 0, allowed.output
    assert "3 unchanged, 2 rejected" in allowed.output


def test_any_rejected_row_fails_the_command_unless_allowed(
    run: CliRunner, conn: psycopg.Connection, tmp_path: Path
) -> None:
    source = real_file("binance_ADA_BTC-5m.csv")
    lines = source.read_text().splitlines()[:9]  # header + 8 bars
    for i in range(2, 9):  # 7 of the 8 bars get a negative volume
        fields = lines[i].split(",")
        fields[5] = "-1"
        lines[i] = ",".join(fields)
    path = tmp_path / "ada.csv"
    path.write_text("\n".join(lines) + "\n")
    args = ["ingest", "candles", str(path), "-x", "binance", "-s", "ADA/BTC", "-t", "5m",
            "--create"]  # fmt: skip
    done = run.invoke(app, args)
    assert done.exit_code == 1
    assert "8 rows, 1 new, 0 replaced, 0 unchanged, 7 rejected" in done.output
    assert f"{path}:3: volume: must be >= 0 and finite" in done.output
    allowed = run.invoke(app, [*args, "--allow-rejects"])
    assert allowed.exit_code == 0 and "1 unchanged, 7 rejected" in allowed.output


def test_imported_trade_history_is_kept_by_retention_with_a_warning(
    run: CliRunner, conn: psycopg.Connection
) -> None:
    path = real_file("binance_XRP_ETH-trades.csv")
    done = run.invoke(app, ["ingest", "trades", str(path), "-x", "binance", "-s", "XRP/ETH",
                            "--create"])  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "older than market.trade_prints's retention (30 days)" in done.output
    assert "imported history is kept" in done.output
    count = conn.execute("SELECT count(*) FROM market.trade_prints").fetchone()[0]
    assert count > 12_000

    applied = run.invoke(app, ["market", "retention", "apply"])
    assert applied.exit_code == 0, applied.output
    assert "it holds imported history, which retention keeps" in applied.output
    assert conn.execute("SELECT count(*) FROM market.trade_prints").fetchone()[0] == count

    opted = run.invoke(app, ["market", "retention", "set", "trades", "30d", "--include-imported"])
    assert opted.exit_code == 0 and "imported history included" in opted.output
    shown = run.invoke(app, ["market", "retention", "show"])
    assert "expires" in shown.output
    assert run.invoke(app, ["market", "retention", "apply"]).exit_code == 0
    assert conn.execute("SELECT count(*) FROM market.trade_prints").fetchone()[0] == 0


def test_symbol_spellings_and_impossible_timeframes_in_market_query(
    run: CliRunner, tmp_path: Path
) -> None:
    path = _head(real_file("binance_XLM_BTC-5m.csv"), tmp_path / "xlm.csv", 48)
    done = run.invoke(app, ["ingest", "candles", str(path), "-x", "binance", "-s", "XLM/BTC",
                            "-t", "5m", "--create"])  # fmt: skip
    assert done.exit_code == 0, done.output
    counts = set()
    for spelling in ("XLM/BTC", "XLMBTC", "xlmbtc", "BINANCE:XLMBTC", "binance:XLM/BTC"):
        shown = run.invoke(app, ["market", "query", "-x", "binance", "-s", spelling, "-t", "1h"])
        assert shown.exit_code == 0, (spelling, shown.output)
        counts.add(shown.output.splitlines()[-1])
    assert counts == {"5 bars"}  # 48 five-minute bars from 04:55 touch five hours
    wrong = run.invoke(app, ["market", "query", "-x", "binance", "-s", "KRAKEN:XLMBTC"])
    assert wrong.exit_code == 1
    for impossible in ("7m", "1m"):
        bad = run.invoke(
            app, ["market", "query", "-x", "binance", "-s", "XLMBTC", "-t", impossible]
        )
        assert bad.exit_code == 1, bad.output
        assert "must be a whole multiple of the stored 5m bars" in bad.output
    ten = run.invoke(app, ["market", "query", "-x", "binance", "-s", "XLMBTC", "-t", "10m"])
    assert ten.exit_code == 0 and "25 bars" in ten.output  # 04:50 .. 08:50


def test_every_command_reads_times_alike(
    run: CliRunner, conn: psycopg.Connection, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "btc.csv", bars(60))
    assert run.invoke(app, ["ingest", "candles", str(path), "-x", "binance", "-s", "BTC/USDT",
                            "--create"]).exit_code == 0  # fmt: skip
    listing = conn.execute("SELECT id FROM market.exchange_instruments").fetchone()[0]
    forms = ("2017-01-01", "2017-01-02T00:00", "2017-01-03 00:00:00Z", "2017-01-04T09:00+09:00")
    for step, when in enumerate(forms, start=1):
        rules = f'{{"tick_size": "0.01", "step_size": "0.000{step}"}}'
        done = run.invoke(
            app, ["instruments", "set-rules", str(listing), rules, "--effective-from", when]
        )
        assert done.exit_code == 0, (when, done.output)
    starts = [
        r[0]
        for r in conn.execute(
            "SELECT effective_from FROM market.trading_rule_versions "
            "WHERE exchange_instrument_id = %s "
            "AND effective_from BETWEEN '2016-12-31' AND '2018-01-01' "
            "ORDER BY effective_from",
            (listing,),
        )
    ]
    assert starts == [dt.datetime(2017, 1, d, tzinfo=dt.UTC) for d in (1, 2, 3, 4)]
    for start in ("2024-01-01", "2024-01-01T00:30", "2024-01-01T00:30:00Z"):
        shown = run.invoke(app, ["market", "query", "-x", "binance", "-s", "BTC/USDT",
                                 "--from", start, "--to", "2024-01-01T00:40"])  # fmt: skip
        assert shown.exit_code == 0, (start, shown.output)
    bad = run.invoke(app, ["market", "query", "-x", "binance", "-s", "BTC/USDT", "--from", "soon"])
    assert bad.exit_code == 1 and "from: must be a date or date and time" in bad.output
