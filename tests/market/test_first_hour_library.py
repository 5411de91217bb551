"""Library side of a new user's first hour: time columns under their usual names, the
shared time parser, market.resolve_listing from SQL, and retention that keeps imported
history while expiring live rows of the same partition."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest

from tests.market.helpers import make_listing
from tradestore.db.errors import ValidationError
from tradestore.market import retention
from tradestore.market.ingest import ingest_trades
from tradestore.market.readers import read_batch
from tradestore.timeparse import parse_time

ROW = "10,11,9,10.5,100"
JAN2 = 1_704_153_600  # 2024-01-02T00:00:00Z


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Date", "2024-01-02"),
        ("Datetime", "2024-01-02 00:00:00"),
        ("Timestamp", str(JAN2)),  # epoch seconds
        ("Open Time", str(JAN2 * 1000)),  # Binance's kline header, epoch milliseconds
        ("open-time", str(JAN2 * 1000)),
        ("unix", str(JAN2)),
        ("", "2024-01-02"),  # pandas' unnamed index column
        ("Unnamed: 0", "2024-01-02T00:00:00Z"),
    ],
)
def test_usual_time_columns_are_read(tmp_path: Path, header: str, value: str) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(f"{header},Open,High,Low,Close,Volume\n{value},{ROW}\n")
    batch = read_batch(path, "candles")
    assert batch.frame["t"].to_list() == [JAN2 * 1_000_000]
    assert batch.frame["close"].to_list() == ["10.5"]


def test_an_unnamed_row_counter_is_not_taken_for_time(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(f",Open,High,Low,Close,Volume\n0,{ROW}\n1,{ROW}\n")
    with pytest.raises(ValidationError) as refused:
        read_batch(path, "candles")
    assert "an unnamed first column of times" in refused.value.rule


def test_a_pandas_frame_with_an_unnamed_datetime_index() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"Open": [10.0], "High": [11.0], "Low": [9.0], "Close": [10.5], "Volume": [100.0]},
        index=pd.DatetimeIndex([dt.datetime(2024, 1, 2)]),
    )
    assert read_batch(frame, "candles").frame["t"].to_list() == [JAN2 * 1_000_000]


def test_one_time_parser() -> None:
    utc = dt.datetime(2017, 1, 1, tzinfo=dt.UTC)
    for text in ("2017-01-01", "2017-01-01T00:00", "2017-01-01 00:00:00", "2017-01-01T00:00Z",
                 "2017-01-01T09:00+09:00", " 2017-01-01T00:00:00.000000z "):  # fmt: skip
        assert parse_time(text, "from") == utc, text
    assert parse_time("2017-01-01", "to", end=True) == utc + dt.timedelta(days=1, microseconds=-1)
    for bad in ("", "soon", "2017-13-01", "01/02/2017"):
        with pytest.raises(ValidationError) as refused:
            parse_time(bad, "from")
        assert refused.value.field == "from"


def test_resolve_listing_is_one_sql_function(conn: psycopg.Connection) -> None:
    listing = make_listing(conn, "BTC/USDT")
    make_listing(conn, "ETH/USDT", exchange="kraken")

    def resolve(exchange: str | None, symbol: str) -> int | None:
        return conn.execute("SELECT market.resolve_listing(%s, %s)", (exchange, symbol)).fetchone()[
            0
        ]

    for exchange, symbol in [("binance", "BTC/USDT"), ("binance", "BTCUSDT"),
                             ("BINANCE", "btcusdt"), (None, "BINANCE:BTCUSDT"),
                             (None, "binance:BTC/USDT"), ("binance", "binance:BTCUSDT")]:  # fmt: skip
        assert resolve(exchange, symbol) == listing, (exchange, symbol)
    assert resolve("kraken", "BTCUSDT") is None
    assert resolve("binance", "BTCUSD") is None
    with pytest.raises(psycopg.errors.CheckViolation, match="names exchange kraken, not binance"):
        resolve("binance", "KRAKEN:ETHUSDT")
    with pytest.raises(psycopg.errors.CheckViolation, match="must name its exchange"):
        resolve(None, "BTCUSDT")


def _trade(day: str, trade_id: str) -> dict[str, str]:
    return {"time": f"{day}T10:00:00Z", "trade_id": trade_id, "price": "1", "quantity": "1",
            "side": "buy"}  # fmt: skip


def test_retention_keeps_imported_rows_and_expires_live_ones(conn: psycopg.Connection) -> None:
    imported = make_listing(conn, "XRP/ETH")
    live = make_listing(conn, "ADA/BTC")
    report = ingest_trades(conn, [_trade("2019-10-01", "1")], listing_id=imported)
    assert report.warnings and "imported history is kept" in report.warnings[0]
    ingest_trades(conn, [_trade("2019-10-01", "2")], listing_id=live, imported=False)
    ingest_trades(conn, [_trade("2019-10-02", "3")], listing_id=live, imported=False)

    def left() -> list[tuple[int, str]]:
        return conn.execute(
            "SELECT exchange_instrument_id, exchange_trade_id FROM market.trade_prints ORDER BY 2"
        ).fetchall()

    planned = retention.apply_retention(conn, dry_run=True, table="trades")
    assert [(p.partition, p.imported_kept) for p in planned] == [
        ("market.trade_prints_p20191001", True),
        ("market.trade_prints_p20191002", False),
    ]
    assert len(left()) == 3
    done = retention.apply_retention(conn, table="trades")
    assert [(d.partition, d.dropped, d.imported_kept) for d in done] == [
        ("market.trade_prints_p20191001", False, True),
        ("market.trade_prints_p20191002", True, False),
    ]
    assert left() == [(imported, "1")]  # the live row beside it went

    retention.set_retention(conn, "trades", dt.timedelta(days=30), include_imported=True)
    again = ingest_trades(conn, [_trade("2019-10-03", "4")], listing_id=imported)
    assert "the next retention run drops them" in again.warnings[0]
    retention.apply_retention(conn, table="trades")
    assert left() == []
