"""The paper exchange: 'sim' accounts' orders filled from stored market data through
apply_fill (limit orders against prints with their queue, market orders against the
book's depth), with the fee schedule's maker/taker rates, deterministically."""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.trading.desk import Desk, build_desk
from tradestore.market.ingest import ingest_order_books, ingest_trades
from tradestore.trading.exchange.accounts import routing_accounts, set_routing
from tradestore.trading.exchange.paper import PaperExchange
from tradestore.trading.orders import submit_order


@pytest.fixture
def desk(conn: psycopg.Connection[Any]) -> Desk:
    desk = build_desk(conn, cash=100_000)
    set_routing(conn, desk.account_id, "sim")  # no API key needed
    return desk


def created(conn: psycopg.Connection[Any], order_id: int) -> dt.datetime:
    return conn.execute(
        "SELECT created_at FROM trade.orders WHERE id = %s", (order_id,)
    ).fetchone()[0]


def book(conn: Any, listing: int, at: dt.datetime, bids: list[Any], asks: list[Any]) -> None:
    report = ingest_order_books(
        conn, [{"time": at, "bids": bids, "asks": asks}], listing_id=listing, imported=False
    )
    assert not report.rejected


def prints(conn: Any, listing: int, start: dt.datetime, rows: list[tuple[str, str, str]]) -> None:
    """rows of (trade id, price, quantity), one millisecond apart from start."""
    data = [
        {"time": start + dt.timedelta(milliseconds=i + 1), "trade_id": t, "price": p,
         "quantity": q, "side": "sell"}
        for i, (t, p, q) in enumerate(rows)
    ]  # fmt: skip
    assert not ingest_trades(conn, data, listing_id=listing, imported=False).rejected


def executions(conn: psycopg.Connection[Any], order_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT exchange_trade_id, quantity, price, fee, fee_currency FROM trade.executions "
        "WHERE order_id = %s ORDER BY executed_at, id",
        (order_id,),
    ).fetchall()


def order_state(conn: psycopg.Connection[Any], order_id: int) -> tuple[str, Decimal]:
    return conn.execute(
        "SELECT status, filled_quantity FROM trade.orders WHERE id = %s", (order_id,)
    ).fetchone()


def test_sim_account_routes_nothing(conn: psycopg.Connection[Any], desk: Desk) -> None:
    order = submit_order(conn, desk.account_id, desk.btc, "BUY", "LIMIT", "0.5", "100")
    assert desk.count("trade.order_routes") == 0
    assert routing_accounts(conn) == []
    assert order_state(conn, order)[0] == "NEW"


def test_limit_order_waits_for_its_queue(
    conn: psycopg.Connection[Any], desk: Desk, caplog: pytest.LogCaptureFixture
) -> None:
    order = submit_order(conn, desk.account_id, desk.btc, "BUY", "LIMIT", "0.5", "100")
    t = created(conn, order)
    # 1.0 was bid at 100 before us: that much must trade at 100 before we fill there.
    book(conn, desk.btc, t - dt.timedelta(seconds=1), [[100, 1.0], [99, 2]], [[100.5, 1]])
    prints(conn, desk.btc, t, [("p1", "100.5", "3"), ("p2", "100", "0.7"), ("p3", "100", "0.5")])
    paper = PaperExchange(conn)
    with caplog.at_level(logging.WARNING):
        first = paper.run_once()
    assert "no fee schedule" in caplog.text
    assert first.fills == 1
    # p2 went to the queue (0.3 left ahead of us), p3 filled 0.2 after it.
    assert executions(conn, order) == [
        (f"sim-{order}-p3", Decimal("0.2"), Decimal("100"), Decimal("0.000"), "USDT")
    ]
    assert order_state(conn, order) == ("PARTIALLY_FILLED", Decimal("0.2"))

    # A print through the price fills the rest; the earlier fill is recognised, not repeated.
    prints(conn, desk.btc, t + dt.timedelta(seconds=1), [("p4", "99.9", "1")])
    second = paper.run_once()
    assert (second.fills, second.duplicates) == (1, 1)
    assert [e[:3] for e in executions(conn, order)] == [
        (f"sim-{order}-p3", Decimal("0.2"), Decimal("100")),
        (f"sim-{order}-p4", Decimal("0.3"), Decimal("100")),
    ]
    assert order_state(conn, order) == ("FILLED", Decimal("0.5"))
    # The fill went through the books like any other: position and ledger.
    qty = conn.execute(
        "SELECT quantity FROM trade.positions WHERE account_id = %s AND exchange_instrument_id = %s",
        (desk.account_id, desk.btc),
    ).fetchone()[0]
    assert qty == Decimal("0.5")
    assert paper.run_once().orders == 0


def test_market_order_walks_the_book_and_cancels_what_it_lacks(
    conn: psycopg.Connection[Any], desk: Desk
) -> None:
    conn.execute(
        "INSERT INTO market.exchange_fee_schedules (exchange_id, effective_from, fee_schema) "
        "VALUES (%s, '2020-01-01', %s)",
        (
            desk.exchange_id,
            json.dumps({"maker": 0.001, "taker": 0.002, "symbols": {"BTCUSDT": {"taker": 0.003}}}),
        ),
    )
    # A spot BUY at market reserves its funds at the latest price (a close, not the book).
    desk.set_price(desk.btc, "101")
    order = submit_order(conn, desk.account_id, desk.btc, "BUY", "MARKET", "1")
    t = created(conn, order)
    book(conn, desk.btc, t - dt.timedelta(seconds=2), [[100, 1]], [[101, 0.2], [102, 0.5]])
    report = PaperExchange(conn).run_once()
    assert report.fills == 2 and report.canceled == [order]
    rows = executions(conn, order)
    assert [r[:3] for r in rows] == [
        (f"sim-{order}-L0", Decimal("0.2"), Decimal("101")),
        (f"sim-{order}-L1", Decimal("0.5"), Decimal("102")),
    ]
    # Taker fee of the symbol's override, in the quote currency.
    assert [r[3:] for r in rows] == [
        (Decimal("0.0606"), "USDT"),
        (Decimal("0.153"), "USDT"),
    ]
    assert order_state(conn, order) == ("CANCELED", Decimal("0.7"))


def test_market_order_without_a_book_waits(conn: psycopg.Connection[Any], desk: Desk) -> None:
    desk.hold(desk.account_id, "BTC", "0.1")  # a spot SELL sells held base
    order = submit_order(conn, desk.account_id, desk.btc, "SELL", "MARKET", "0.1")
    paper = PaperExchange(conn)
    assert paper.run_once().fills == 0
    t = created(conn, order)
    book(conn, desk.btc, t + dt.timedelta(seconds=1), [[99, 1]], [[101, 1]])
    assert paper.run_once().fills == 1
    assert executions(conn, order)[0][:3] == (f"sim-{order}-L0", Decimal("0.1"), Decimal("99"))
