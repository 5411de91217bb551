"""Bulk ingest: sources, validation with file/line/reason, idempotence, corrections,
partitions made for the batch, atomicity."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pandas as pd
import polars as pl
import psycopg
import pytest

from tests.market.helpers import bars, make_listing, stored, write_csv
from tradestore.db.errors import ValidationError
from tradestore.market.ingest import (
    ingest_candles,
    ingest_order_books,
    ingest_tickers,
    ingest_trades,
)


def test_csv_ingest_is_idempotent_and_exact(
    db: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    rows = bars(300)
    rows[0]["open"] = rows[0]["high"] = "5.330000000000001e-05"  # float noise, kept as written
    rows[0]["low"] = rows[0]["close"] = "5.3e-05"
    path = write_csv(tmp_path / "btc.csv", rows)

    seen: list[tuple[int, int]] = []
    first = ingest_candles(
        db, path, exchange="binance", symbol="BTC/USDT", progress=lambda *p: seen.append(p)
    )
    assert seen[-1] == (300, 300)
    assert (first.staged, first.inserted, first.updated, first.unchanged, first.rejected) == (
        300,
        300,
        0,
        0,
        [],
    )
    again = ingest_candles(db, path, exchange="binance", symbol="BTC/USDT")
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 300, [])

    listing = first.listing_id
    saved = stored(conn, listing)
    assert len(saved) == 300
    assert saved[0][1] == Decimal("0.00005330000000000001")
    assert str(saved[0][1]) == "0.00005330000000000001"
    assert saved[1][4] == Decimal(rows[1]["close"])
    # The listing was created on the fly, with the currencies read from the symbol.
    assert conn.execute(
        "SELECT i.base_currency, i.quote_currency FROM market.instruments i "
        "JOIN market.exchange_instruments ei ON ei.instrument_id = i.id WHERE ei.id = %s",
        (listing,),
    ).fetchone() == ("BTC", "USDT")


def test_bad_rows_are_reported_with_file_line_and_reason_and_good_rows_kept(
    db: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    rows = bars(10)
    rows[1]["high"] = str(Decimal(rows[1]["open"]) - Decimal("1"))  # below open
    rows[2]["volume"] = "-1"
    rows[3]["close"] = "abc"
    rows[4]["time"] = "2024-01-01T00:04:30+00:00"  # off the 1m grid
    rows[5]["open"] = "NaN"
    rows[6]["low"] = "0"
    rows[7]["time"] = "yesterday"
    rows[9]["time"] = rows[8]["time"]  # duplicate time: both rejected
    path = write_csv(tmp_path / "bad.csv", rows)

    report = ingest_candles(db, path, exchange="binance", symbol="BTC/USDT")
    assert report.inserted == 1  # row 0 only
    by_line = {r.line: r for r in report.rejected}
    # The header is line 1, so rows[i] is on line i + 2.
    assert {line: (r.field, r.rule) for line, r in by_line.items()} == {
        3: ("high", "must be >= max(open, close)"),
        4: ("volume", "must be >= 0 and finite"),
        5: ("close", "must be a number"),
        6: ("time", "must be on the 1m grid (the bar's open time)"),
        7: ("open", "must be positive and finite"),
        8: ("low", "must be positive and finite"),
        9: ("time", "must be an ISO-8601 time or an epoch number"),
        10: ("time", "must be unique in the batch"),
        11: ("time", "must be unique in the batch"),
    }
    assert by_line[5].value == "abc" and by_line[9].value == "yesterday"
    assert str(by_line[4]) == f"{path}:4: volume: must be >= 0 and finite (value: '-1')"
    assert [r[0] for r in stored(conn, report.listing_id)] == [
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    ]


def test_blank_lines_keep_line_numbers(db: str, tmp_path: Path) -> None:
    rows = bars(3)
    rows[2]["volume"] = "x"
    path = tmp_path / "gaps.csv"
    write_csv(path, rows)
    text = path.read_text().splitlines()
    path.write_text("\n".join([text[0], text[1], "", text[2], text[3]]) + "\n")
    report = ingest_candles(db, path, exchange="binance", symbol="BTC/USDT")
    assert report.inserted == 2
    assert [(r.line, r.field) for r in report.rejected] == [(5, "volume")]


def test_a_corrected_bar_replaces_the_stored_one(db: str, conn: psycopg.Connection) -> None:
    rows = bars(5)
    ingest_candles(db, rows, exchange="binance", symbol="BTC/USDT")
    fixed = [dict(r) for r in rows]
    fixed[2]["close"] = fixed[2]["low"]
    report = ingest_candles(db, fixed, exchange="binance", symbol="BTC/USDT")
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 4)
    assert stored(conn, report.listing_id)[2][4] == Decimal(fixed[2]["low"])
    # A later batch that only omits vwap does not erase a stored one.
    with_vwap = [dict(r, vwap=r["close"]) for r in fixed[:2]]
    assert ingest_candles(db, with_vwap, exchange="binance", symbol="BTC/USDT").updated == 2
    assert ingest_candles(db, fixed[:2], exchange="binance", symbol="BTC/USDT").unchanged == 2
    assert (
        conn.execute(
            "SELECT count(vwap) FROM market.candles WHERE exchange_instrument_id = %s",
            (report.listing_id,),
        ).fetchone()[0]
        == 2
    )


def test_every_source_kind_gives_the_same_bars(
    db: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    rows = bars(20)
    frame = pl.DataFrame(rows)
    write_csv(tmp_path / "a.csv", rows)
    frame.write_parquet(tmp_path / "a.parquet")
    typed = frame.with_columns(
        pl.col("time").str.to_datetime(time_zone="UTC"),
        *(pl.col(c).cast(pl.Float64) for c in ("open", "high", "low", "close", "volume")),
    )
    pandas_frame = typed.to_pandas().set_index("time")
    tuples = [
        (
            dt.datetime.fromisoformat(r["time"]),
            Decimal(r["open"]),
            Decimal(r["high"]),
            Decimal(r["low"]),
            Decimal(r["close"]),
            Decimal(r["volume"]),
        )
        for r in rows
    ]
    epoch_ms = frame.with_columns(
        pl.col("time").str.to_datetime(time_zone="UTC").dt.epoch("ms").alias("timestamp")
    ).drop("time")
    sources = {
        "csv": tmp_path / "a.csv",
        "parquet": tmp_path / "a.parquet",
        "polars": typed,
        "pandas": pandas_frame,
        "tuples": tuples,
        "dicts": rows,
        "epoch_ms": epoch_ms,
        "lazy": typed.lazy(),
    }
    results = {}
    for i, (name, source) in enumerate(sources.items()):
        report = ingest_candles(db, source, exchange="x", symbol=f"S{i}/USD")
        assert (report.inserted, report.rejected) == (20, []), name
        results[name] = stored(conn, report.listing_id)
    reference = results.pop("csv")
    for name, got in results.items():
        assert got == reference, name


def test_partitions_are_made_for_the_batch_months_only(db: str, conn: psycopg.Connection) -> None:
    rows = bars(3, start=dt.datetime(2017, 3, 31, 23, 59, tzinfo=dt.UTC))  # spans two months
    stray = bars(1, start=dt.datetime(1999, 6, 1, tzinfo=dt.UTC))
    report = ingest_candles(db, rows + stray, exchange="binance", symbol="BTC/USDT")
    assert report.inserted == 4
    assert report.partitions_made == 3  # 1999-06, 2017-03, 2017-04: not every month between
    names = {
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'market.candles'::regclass"
        )
    }
    assert {"candles_p199906", "candles_p201703", "candles_p201704"} <= names
    assert "candles_p200001" not in names
    assert (
        conn.execute(
            "SELECT count(*) FROM pg_partition_tree('market.candles') t JOIN pg_class c ON c.oid = t.relid "
            "WHERE pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'"
        ).fetchone()[0]
        == 0
    )


def test_a_failing_merge_writes_nothing(conn: psycopg.Connection) -> None:
    """Nothing is half-written: a row routed to a partition that does not exist fails the
    whole merge, so the rows before it are not kept either."""
    listing = make_listing(conn)
    conn.execute(
        "SELECT market.ensure_partitions_for('market.candles', ARRAY['2024-01-01'::timestamptz])"
    )
    with pytest.raises(psycopg.errors.CheckViolation, match="no partition"), conn.transaction():
        conn.execute("CREATE TEMP TABLE s OF market.candle_stage ON COMMIT DROP")
        conn.execute(
            "INSERT INTO s (line, t, open, high, low, close, volume) VALUES "
            "(2, 1704067200000000, '1', '1', '1', '1', '1'), "  # 2024-01-01
            "(3, 2019686400000000, '1', '1', '1', '1', '1')"  # 2034-01-01: no partition
        )
        conn.execute("SELECT * FROM market.merge_candles('pg_temp.s', %s, '1m')", (listing,))
    assert stored(conn, listing) == []


def test_ingest_in_the_callers_transaction_rolls_back_with_it(conn: psycopg.Connection) -> None:
    listing = make_listing(conn)
    with pytest.raises(RuntimeError), conn.transaction():
        assert ingest_candles(conn, bars(5), listing_id=listing).inserted == 5
        raise RuntimeError("caller changes its mind")
    assert stored(conn, listing) == []


def test_unknown_listing_and_bad_arguments_name_field_rule_value(db: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        ingest_candles(db, bars(1), listing_id=999_999)
    assert (err.value.field, err.value.rule) == (
        "exchange_instrument_id",
        "must reference an existing listing",
    )
    with pytest.raises(ValidationError) as err:
        ingest_candles(db, bars(1), exchange="binance", symbol="BTC/USDT", timeframe="90s")
    assert err.value.field == "timeframe"
    with pytest.raises(ValidationError) as err:
        ingest_candles(
            db, [{"when": "2024-01-01", "open": 1}], exchange="binance", symbol="BTC/USDT"
        )
    assert err.value.field == "columns"
    with pytest.raises(ValidationError) as err:
        ingest_candles(db, tmp_path / "missing.csv", exchange="binance", symbol="BTC/USDT")
    assert (err.value.field, err.value.rule) == ("file", "must exist")


def test_trades_ingest(db: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text(
        "timestamp_ms,trade_id,order_type,side,price,amount,cost\n"
        "1570752011620,13519807,,sell,0.00141342,23.0,0.03\n"
        "1570752011620,13519808,,sell,0.00141266,54.0,0.07\n"
        "1570752011621,13519809,,BUY,0.00141266,-1,0.07\n"
        "1570752011622,13519810,,hold,0.00141266,1,0.07\n"
    )
    report = ingest_trades(db, path, exchange="binance", symbol="XRP/ETH")
    assert report.inserted == 2
    assert [(r.line, r.field) for r in report.rejected] == [(4, "quantity"), (5, "side")]
    assert ingest_trades(db, path, exchange="binance", symbol="XRP/ETH").unchanged == 2
    row = conn.execute(
        'SELECT "timestamp", price, quantity, value, side, bithumb_tx_id FROM bithumb.transactions '
        "ORDER BY bithumb_tx_id LIMIT 1"
    ).fetchone()
    assert row == (
        dt.datetime(2019, 10, 11, 0, 0, 11, 620000, tzinfo=dt.UTC),
        Decimal("0.00141342"),
        Decimal("23.0"),
        Decimal("0.03250866"),
        "sell",
        "13519807",
    )


def test_tickers_and_order_books_ingest(db: str, conn: psycopg.Connection) -> None:
    tickers = [
        {
            "timestamp": "2024-01-01T00:00:00Z",
            "opening_price": "100",
            "closing_price": "101",
            "high_price": "102",
            "low_price": "99",
            "volume": "5",
            "value": "505",
            "change_24h": "1",
            "change_rate_24h": "0.01",
            "bid_price": "100.9",
            "ask_price": "101.1",
        },
        {
            "timestamp": "2024-01-01T00:00:01Z",
            "opening_price": "100",
            "closing_price": "101",
            "high_price": "102",
            "low_price": "99",
            "volume": "5",
            "value": "505",
            "change_24h": "1",
            "change_rate_24h": "0.01",
            "bid_price": "101.2",
            "ask_price": "101.1",
        },
    ]
    report = ingest_tickers(db, tickers, exchange="bithumb", symbol="BTC_KRW")
    assert report.inserted == 1
    assert [(r.line, r.field, r.rule) for r in report.rejected] == [
        (2, "ask_price", "must be >= bid_price")
    ]
    assert conn.execute("SELECT spread FROM bithumb.tickers").fetchone()[0] == Decimal("0.2")

    books = [
        {
            "time": "2024-01-01T00:00:00Z",
            "bids": [["100", "1"], ["101", "2"]],
            "asks": [[102, 1.5]],
        },
        {"time": "2024-01-01T00:00:01Z", "bids": json.dumps([["103", "1"]]), "asks": "[[102, 1]]"},
        {"time": "2024-01-01T00:00:02Z", "bids": "not json", "asks": "[]"},
    ]
    report = ingest_order_books(db, books, exchange="bithumb", symbol="BTC_KRW")
    assert report.inserted == 1
    assert [(r.line, r.field) for r in report.rejected] == [(2, "asks"), (3, "bids")]
    row = conn.execute(
        "SELECT bids, asks, bid_volume, ask_volume, spread, mid_price FROM market.order_books"
    ).fetchone()
    # Bids sorted best (highest) first; levels are exact JSON numbers.
    assert row == (
        [[101, 2], [100, 1]],
        [[102, 1.5]],
        Decimal("3"),
        Decimal("1.5"),
        Decimal("1"),
        Decimal("101.5"),
    )
    assert (
        conn.execute("SELECT bids FROM bithumb.orderbooks").fetchone()[0] == "[[101, 2], [100, 1]]"
    )


def test_pandas_frame_with_float_noise_is_stored_by_its_shortest_repr(
    db: str, conn: psycopg.Connection
) -> None:
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(["2018-01-10T04:55:00Z"]),
            "open": [5.330000000000001e-05],
            "high": [5.330000000000001e-05],
            "low": [5.288000000000001e-05],
            "close": [5.2900000000000005e-05],
            "volume": [431401.97869504],
        }
    )
    report = ingest_candles(db, frame, exchange="binance", symbol="ADA/BTC")
    assert stored(conn, report.listing_id)[0][1:] == (
        Decimal("0.00005330000000000001"),
        Decimal("0.00005330000000000001"),
        Decimal("0.00005288000000000001"),
        Decimal("0.000052900000000000005"),
        Decimal("431401.97869504"),
    )


def test_order_book_levels_are_checked_level_by_level(db: str, conn: psycopg.Connection) -> None:
    """Every level needs a positive finite price and size: one bad size among good
    levels rejects the side (it used to slip through as a null size)."""
    t0 = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    good_asks = [["110", "1"]]
    books = [
        {"time": t0, "bids": [["100", "1"], ["99", "abc"]], "asks": good_asks},
        {"time": t0 + dt.timedelta(seconds=1), "bids": [["100", "1"], ["99", "0"]],
         "asks": good_asks},
        {"time": t0 + dt.timedelta(seconds=2), "bids": [["100", "1"], ["100.0", "2"]],
         "asks": good_asks},
        {"time": t0 + dt.timedelta(seconds=3), "bids": [["100", "1"], ["99", "2", "3"]],
         "asks": good_asks},
        {"time": t0 + dt.timedelta(seconds=4, microseconds=7),
         "bids": [{"price": "99", "size": "2"}, {"price": 100, "quantity": "1"}], "asks": "[]"},
    ]  # fmt: skip
    report = ingest_order_books(db, books, exchange="bithumb", symbol="ETH_KRW")
    assert [(r.line, r.field) for r in report.rejected] == [(n, "bids") for n in (1, 2, 3, 4)]
    assert report.inserted == 1
    row = conn.execute(
        'SELECT "time", bids, asks, bid_volume, ask_volume FROM market.order_books'
    ).fetchone()
    # Timezone-aware datetimes are stored to the microsecond; levels sorted best first.
    assert row == (t0 + dt.timedelta(seconds=4, microseconds=7), [[100, 1], [99, 2]], [],
                   Decimal("3"), Decimal("0"))  # fmt: skip
