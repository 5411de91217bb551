"""Rows of many listings in one stage and one merge (ingest_listings, the collector's
flush): the same rules per listing, rejects naming listing/line/field/rule/value,
duplicates judged per listing, nothing lost, one transaction per flush."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg
import pytest

from tests.market.helpers import make_listing
from tradestore.db.errors import ValidationError
from tradestore.market.collect.sink import Sink
from tradestore.market.ingest import Rejected, ingest_listings

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def trade(seconds: float, trade_id: str, price: str = "100", quantity: str = "1") -> dict[str, Any]:
    return {"time": at(seconds), "trade_id": trade_id, "price": price, "quantity": quantity,
            "side": "buy"}  # fmt: skip


def book(seconds: float, bid: str = "99", ask: str = "101") -> dict[str, Any]:
    return {"time": at(seconds), "bids": [[bid, "1"], [str(float(bid) - 1), "2"]],
            "asks": [[ask, "1.5"], [str(float(ask) + 1), "3"]]}  # fmt: skip


def count(conn: psycopg.Connection[Any], sql: str, *args: Any) -> int:
    return int(conn.execute(sql, args).fetchone()[0])  # type: ignore[index]


def test_trades_of_many_listings_are_checked_per_listing(conn: psycopg.Connection[Any]) -> None:
    a, b = make_listing(conn, "AAA/USDT"), make_listing(conn, "BBB/USDT")
    report = ingest_listings(
        conn,
        "trades",
        {
            # The same time and trade id on two listings: two prints, not a duplicate.
            a: [trade(1, "t1"), trade(2, "t2"), trade(2, "t2")],
            b: [trade(1, "t1"), trade(2, "t2", price="-5"), trade(3, "t3")],
        },
    )
    assert (report.staged, report.inserted, report.updated, report.unchanged) == (6, 3, 0, 0)
    assert report.listing_id is None
    assert report.rejected == [
        Rejected("<rows>", 2, "trade_id", "must be unique per time in the batch", "t2", a),
        Rejected("<rows>", 3, "trade_id", "must be unique per time in the batch", "t2", a),
        Rejected("<rows>", 2, "price", "must be positive and finite", "-5", b),
    ]
    assert str(report.rejected[2]) == (
        f"<rows>: listing {b}: line 2: price: must be positive and finite (value: '-5')"
    )
    stored = conn.execute(
        "SELECT exchange_instrument_id, exchange_trade_id FROM market.trade_prints ORDER BY 1, 2"
    ).fetchall()
    assert stored == [(a, "t1"), (b, "t1"), (b, "t3")]
    # Again: nothing new; a changed print on one listing replaces only that listing's.
    again = ingest_listings(conn, "trades", {a: [trade(1, "t1")], b: [trade(1, "t1", "101")]})
    assert (again.inserted, again.updated, again.unchanged) == (0, 1, 1)
    assert count(conn, "SELECT count(*) FROM market.trade_prints WHERE price = 101") == 1


def test_books_and_tickers_of_many_listings(conn: psycopg.Connection[Any]) -> None:
    a, b = make_listing(conn, "AAA/USDT"), make_listing(conn, "BBB/USDT")
    report = ingest_listings(
        conn, "orderbooks", {a: [book(1), book(2)], b: [book(1), book(2, bid="102")]}
    )
    assert (report.inserted, len(report.rejected)) == (3, 1)
    (bad,) = report.rejected
    assert (bad.listing, bad.line, bad.field, bad.value) == (b, 2, "asks", "101")
    assert bad.rule == "best ask must be above best bid (the book is crossed)"
    rows = conn.execute(
        "SELECT exchange_instrument_id, bids, spread, bid_volume FROM market.order_books "
        'ORDER BY 1, "time"'
    ).fetchall()
    assert [(r[0], r[2], r[3]) for r in rows] == [(a, 2, 3), (a, 2, 3), (b, 2, 3)]
    assert rows[0][1] == [[99, 1], [98.0, 2]]
    ticker = {"time": at(1), "opening_price": "1", "closing_price": "2", "high_price": "3",
              "low_price": "1", "volume": "5", "value": "9", "change_24h": "1",
              "change_rate_24h": "1"}  # fmt: skip
    later = {**ticker, "time": at(2), "volume": "x"}
    done = ingest_listings(conn, "tickers", {a: [ticker], b: [ticker, later]})
    assert (done.inserted, [(r.listing, r.line, r.field) for r in done.rejected]) == (
        2,
        [(b, 2, "volume")],
    )


def test_a_row_for_an_unknown_listing_is_rejected_by_name(conn: psycopg.Connection[Any]) -> None:
    a = make_listing(conn, "AAA/USDT")
    report = ingest_listings(conn, "trades", {a: [trade(1, "t1")], 987654: [trade(1, "t1")]})
    assert report.inserted == 1
    assert report.rejected == [
        Rejected(
            "<rows>",
            1,
            "exchange_instrument_id",
            "must reference an existing listing",
            "987654",
            987654,
        )
    ]
    with pytest.raises(ValidationError, match="kind"):
        ingest_listings(conn, "candles", {a: []})


def test_live_rows_are_not_recorded_as_imported(conn: psycopg.Connection[Any]) -> None:
    a, b = make_listing(conn, "AAA/USDT"), make_listing(conn, "BBB/USDT")
    ingest_listings(conn, "trades", {a: [trade(1, "t1")], b: [trade(1, "t1")]})
    assert count(conn, "SELECT count(*) FROM market.imported_spans") == 0
    ingest_listings(conn, "trades", {a: [trade(5, "t5")], b: [trade(9, "t9")]}, imported=True)
    spans = conn.execute(
        "SELECT exchange_instrument_id, first_time FROM market.imported_spans ORDER BY 1"
    ).fetchall()
    assert spans == [(a, at(5)), (b, at(9))]


def test_one_notification_per_listing(conn: psycopg.Connection[Any], db: str) -> None:
    a, b = make_listing(conn, "AAA/USDT"), make_listing(conn, "BBB/USDT")
    with psycopg.connect(db, autocommit=True) as listener:
        listener.execute("LISTEN tradestore_cache")
        ingest_listings(conn, "orderbooks", {a: [book(1), book(2)], b: [book(1)]})
        payloads = sorted(
            json.loads(n.payload)["symbol"] for n in listener.notifies(timeout=5, stop_after=2)
        )
    assert payloads == ["binance:AAA/USDT", "binance:BBB/USDT"]


def test_a_flush_is_one_transaction_and_loses_nothing(conn: psycopg.Connection[Any]) -> None:
    a, b = make_listing(conn, "AAA/USDT"), make_listing(conn, "BBB/USDT")
    sink = Sink(conn, indicators=False)
    for listing in (a, b):
        sink.add("trades", listing, [trade(1, "t1"), trade(2, "t2")])
        sink.add("orderbook", listing, [book(1), book(2)])
    sink.add("trades", a, [trade(1, "t1")])  # the exchange sent it twice: stored once
    conn.execute(
        "CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'storage is down'; END $$"
    )
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON market.order_books "
        "FOR EACH STATEMENT EXECUTE FUNCTION public.refuse()"
    )
    with pytest.raises(Exception, match="storage is down"):
        sink.flush()
    # The books failed, so the trades of the same flush are not stored either, and every
    # message is still buffered, in front of what comes next.
    assert count(conn, "SELECT count(*) FROM market.trade_prints") == 0
    sink.add("trades", b, [trade(3, "t3")])
    assert sink.pending == 10
    assert [r["trade_id"] for r in sink.buffers[("trades", b, None)]] == ["t1", "t2", "t3"]
    conn.execute("DROP TRIGGER refuse ON market.order_books")
    report = sink.flush()
    assert (dict(report.stored), report.rejected) == ({"trades": 5, "orderbook": 4}, 0)
    assert sink.pending == 0
    assert count(conn, "SELECT count(*) FROM market.trade_prints") == 5
    assert count(conn, "SELECT count(*) FROM market.order_books") == 4
