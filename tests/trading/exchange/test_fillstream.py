"""Fills from the user stream (ccxt.pro watchMyTrades against the loopback fake Binance's
WebSocket API): duplicated and out-of-order messages, a dropped stream caught up over
REST from the cursor, and REST polling where there is no stream."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.support.fake_exchange import FakeBinance
from tests.trading.exchange.conftest import Loop
from tradestore.trading import get_order, get_position, submit_order
from tradestore.trading.exchange.accounts import ConnectorFactory
from tradestore.trading.exchange.fillsync import FillFollower, FollowReport


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    server = FakeBinance(balances={"USDT": Decimal(100_000)}).serve().serve_ws()
    yield server
    server.close()


def _factory(loop: Loop) -> ConnectorFactory:
    assert loop.fake.ws is not None
    return ConnectorFactory(
        loop.box,
        base_urls={"binance": loop.fake.url},
        ws_urls={"binance": loop.fake.ws.url},
        connector_options={"sleep": loop.sleeps.append},
    )


def _follower(loop: Loop, stream: bool = True) -> FillFollower:
    factory = _factory(loop)
    connector = factory.for_account(loop.conn, loop.account)
    exchange = factory.stream_for_account(loop.conn, loop.account) if stream else None
    return FillFollower(loop.conn, loop.account, connector, exchange, backoff_s=0.05)


def _pump(
    f: FillFollower, done: Callable[[FollowReport], bool], timeout: float = 15.0
) -> list[FollowReport]:
    """Passes until `done` holds for one (the stream's thread delivers in between)."""
    reports = []
    deadline = time.monotonic() + timeout
    while True:
        reports.append(f.run_once())
        if done(reports[-1]):
            return reports
        if time.monotonic() > deadline:
            raise AssertionError(f"not done after {timeout} s: {reports[-3:]}")
        time.sleep(0.01)


def _sent_buy(loop: Loop, qty: str) -> tuple[int, str]:
    order_id = submit_order(
        loop.conn, loop.desk.account_id, loop.desk.btc, "BUY", "LIMIT", Decimal(qty),
        Decimal("50000"),
    )  # fmt: skip
    assert loop.router().run_once().sent == [order_id]
    return order_id, loop.route(order_id)["client_order_id"]


def _executions(conn: psycopg.Connection[Any], order_id: int) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM trade.executions WHERE order_id = %s", (order_id,)
        ).fetchone()[0]
    )


def test_duplicate_and_out_of_order_fills_on_the_user_stream(loop: Loop) -> None:
    ws = loop.fake.ws
    assert ws is not None
    order_id, cid = _sent_buy(loop, "0.03")
    f = _follower(loop)
    assert f.streaming
    ws.wait_for(ws.user_connected)
    _pump(f, lambda r: r.caught_up is not None)  # connected: the REST cursor first
    polled = len(loop.fake.calls("GET", "/api/v3/myTrades"))

    trades = [
        loop.fake.fill(cid, "0.01", price, "0.1", "USDT") for price in ("50000", "50100", "49900")
    ]
    # Newest first, and every message more than once.
    for t in (trades[2], trades[0], trades[2], trades[1], trades[0], trades[1]):
        assert ws.push_execution(t) == 1
    reports = _pump(f, lambda r: get_order(loop.conn, order_id).status == "FILLED")
    reports += _pump(f, lambda r: r.streamed is None)  # whatever was still on its way
    streamed = [r.streamed for r in reports if r.streamed is not None]
    assert sorted(i for s in streamed for i in s.applied) == sorted(str(t["id"]) for t in trades)
    assert _executions(loop.conn, order_id) == 3
    order = get_order(loop.conn, order_id)
    assert order.filled_quantity == Decimal("0.03")
    assert order.average_fill_price == Decimal("50000")
    assert order.fee == Decimal("0.3")
    position = get_position(loop.conn, loop.desk.account_id, loop.desk.btc)
    assert position.quantity == Decimal("0.03")
    # They came by the stream: no REST poll since the catch-up; the cursor followed them.
    assert len(loop.fake.calls("GET", "/api/v3/myTrades")) == polled
    cursor = loop.conn.execute(
        "SELECT last_trade_id FROM trade.fill_sync_cursors WHERE account_id = %s",
        (loop.desk.account_id,),
    ).fetchone()
    assert cursor[0] == str(trades[2]["id"])
    # Replayed again later: still one execution each.
    for t in trades:
        ws.push_execution(t)
    reports = _pump(f, lambda r: r.streamed is not None)
    assert reports[-1].streamed is not None and reports[-1].streamed.applied == []
    assert _executions(loop.conn, order_id) == 3
    f.close()


def test_dropped_user_stream_catches_up_over_rest(loop: Loop) -> None:
    ws = loop.fake.ws
    assert ws is not None
    order_id, cid = _sent_buy(loop, "0.02")
    f = _follower(loop)
    ws.wait_for(ws.user_connected)
    _pump(f, lambda r: r.caught_up is not None)
    first = loop.fake.fill(cid, "0.01", "50000", "0.1", "USDT")
    ws.push_execution(first)
    _pump(f, lambda r: get_order(loop.conn, order_id).status == "PARTIALLY_FILLED")

    # The stream drops and stays away; the exchange fills the rest meanwhile, unseen.
    ws.refuse()
    ws.drop()
    _pump(f, lambda r: not f.connected and bool(r.failed))
    loop.fake.fill(cid, "0.01", "50050", "0.1", "USDT")
    assert get_order(loop.conn, order_id).status == "PARTIALLY_FILLED"

    # Back: subscribed again, then the REST cursor brings the missed fill.
    ws.refuse(False)
    reports = _pump(f, lambda r: r.caught_up is not None and r.connected)
    caught = reports[-1].caught_up
    assert caught is not None and len(caught.applied) == 1
    assert f.reconnects == 1 and ws.user_connected()
    order = get_order(loop.conn, order_id)
    assert order.status == "FILLED" and _executions(loop.conn, order_id) == 2
    assert get_position(loop.conn, loop.desk.account_id, loop.desk.btc).quantity == Decimal("0.02")
    f.close()


def test_rest_polling_without_a_user_stream(loop: Loop) -> None:
    order_id, cid = _sent_buy(loop, "0.01")
    f = _follower(loop, stream=False)
    assert not f.streaming
    loop.fake.fill(cid, "0.01", "50000", "0.1", "USDT")
    report = f.run_once()
    assert report.caught_up is not None and len(report.caught_up.applied) == 1
    assert get_order(loop.conn, order_id).status == "FILLED"
    assert loop.fake.ws is not None and loop.fake.ws.connects == 0
