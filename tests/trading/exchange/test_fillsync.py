"""Fill sync and balance checks against the loopback fake Binance, through real CCXT."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from tests.support.fake_exchange import FakeOrder
from tests.trading.exchange.conftest import Loop
from tradestore.trading import get_order, get_position, submit_order
from tradestore.trading.exchange.fillsync import check_balances, sync_fills


def _sent_buy(loop: Loop, qty: str = "0.01", price: str = "50000") -> tuple[int, str]:
    order_id = submit_order(
        loop.conn,
        loop.desk.account_id,
        loop.desk.btc,
        "BUY",
        "LIMIT",
        Decimal(qty),
        Decimal(price),
    )
    assert loop.router().run_once().sent == [order_id]
    return order_id, loop.route(order_id)["client_order_id"]


def _sync(loop: Loop) -> Any:
    connector = loop.factory().for_account(loop.conn, loop.account)
    return sync_fills(loop.conn, loop.account, connector)


def test_partial_fills_then_the_rest(loop: Loop) -> None:
    order_id, cid = _sent_buy(loop)
    loop.fake.fill(cid, "0.004", "50000", "0.2", "USDT")
    report = _sync(loop)
    assert len(report.applied) == 1 and report.symbols == ["BTC/USDT"]
    order = get_order(loop.conn, order_id)
    assert order.status == "PARTIALLY_FILLED"
    assert order.filled_quantity == Decimal("0.004")
    assert order.fee == Decimal("0.2") and order.fee_currency == "USDT"

    loop.fake.fill(cid, "0.006", "49990", "0.3", "USDT")
    report = _sync(loop)
    # The cursor starts at the newest trade seen: it comes again and is a duplicate.
    assert len(report.applied) == 1 and len(report.duplicates) == 1
    order = get_order(loop.conn, order_id)
    assert order.status == "FILLED"
    assert get_position(loop.conn, loop.desk.account_id, loop.desk.btc).quantity == Decimal("0.01")
    cursor = loop.conn.execute(
        "SELECT last_trade_id FROM trade.fill_sync_cursors WHERE account_id = %s",
        (loop.desk.account_id,),
    ).fetchone()
    assert cursor[0] == str(loop.fake.trades[-1]["id"])


def test_duplicate_and_out_of_order_fill_messages(loop: Loop) -> None:
    order_id, cid = _sent_buy(loop, qty="0.03")
    for qty, price in (("0.01", "50000"), ("0.01", "50100"), ("0.01", "49900")):
        loop.fake.fill(cid, qty, price, "0.1", "USDT")
    # The exchange answers with every trade twice, newest first.
    loop.fake.trade_feed = lambda trades: list(reversed(trades)) + trades
    report = _sync(loop)
    assert len(report.applied) == 3 and len(report.duplicates) == 3
    order = get_order(loop.conn, order_id)
    assert order.status == "FILLED"
    assert order.average_fill_price == Decimal("50000")
    assert order.fee == Decimal("0.3")
    executions = loop.conn.execute(
        "SELECT count(*) FROM trade.executions WHERE order_id = %s", (order_id,)
    ).fetchone()[0]
    assert executions == 3
    # A replay changes nothing.
    again = _sync(loop)
    assert again.applied == []
    assert get_order(loop.conn, order_id).filled_quantity == Decimal("0.03")


def test_fee_in_the_base_asset(loop: Loop) -> None:
    order_id, cid = _sent_buy(loop)
    loop.fake.fill(cid, "0.01", "50000", "0.00001", "BTC")
    _sync(loop)
    fee = loop.conn.execute(
        "SELECT amount FROM account.transactions WHERE account_id = %s AND transaction_type = 'FEE'",
        (loop.desk.account_id,),
    ).fetchone()[0]
    assert fee == Decimal("-0.00001")
    assert get_order(loop.conn, order_id).fee_currency == "BTC"


def test_fill_of_an_unresolved_send_waits_for_the_router(loop: Loop) -> None:
    order_id, cid = _sent_buy(loop)
    loop.fake.fill(cid, "0.01", "50000")
    # Pretend the router died between sending a second order and recording it.
    second = submit_order(
        loop.conn,
        loop.desk.account_id,
        loop.desk.btc,
        "BUY",
        "LIMIT",
        Decimal("0.01"),
        Decimal("50000"),
    )
    loop.conn.execute(
        "UPDATE trade.order_routes SET state = 'SENDING', lease_until = now() + interval '30 s', "
        "attempts = 1 WHERE order_id = %s",
        (second,),
    )
    second_cid = loop.route(second)["client_order_id"]
    # ... after the exchange took it.
    loop.fake.orders.append(
        FakeOrder(
            9999,
            second_cid,
            "BTCUSDT",
            "BUY",
            "LIMIT",
            Decimal("0.01"),
            Decimal("50000"),
            loop.fake.now_ms(),
        )
    )
    loop.fake.fill(second_cid, "0.01", "50000")
    report = _sync(loop)
    assert len(report.applied) == 1 and len(report.deferred) == 1
    assert (
        loop.conn.execute("SELECT count(*) FROM trade.orders WHERE source = 'EXTERNAL'").fetchone()[
            0
        ]
        == 0
    )
    # The router resolves the send (found by client id); the fill then goes to it.
    loop.clock.advance(31)
    assert loop.router().run_once().found == [second]
    report = _sync(loop)
    assert len(report.applied) == 1
    assert get_order(loop.conn, second).status == "FILLED"
    assert get_order(loop.conn, order_id).status == "FILLED"


def test_balances_compared_with_the_books_and_drift_alerts(loop: Loop) -> None:
    _, cid = _sent_buy(loop)
    loop.fake.fill(cid, "0.01", "50000", "0.5", "USDT")
    _sync(loop)
    connector = loop.factory().for_account(loop.conn, loop.account)
    report = check_balances(loop.conn, loop.account, connector)
    assert report.in_sync, report.differences
    assert loop.conn.execute("SELECT count(*) FROM system.alerts").fetchone()[0] == 0

    loop.fake.balances["USDT"] -= Decimal("7")  # money left the exchange account
    report = check_balances(loop.conn, loop.account, connector)
    assert [d.kind for d in report.differences] == ["BALANCE_MISMATCH"]
    alert = loop.conn.execute(
        "SELECT data->>'kind', data->'differences'->0->>'currency' FROM system.alerts"
    ).fetchone()
    assert alert == ("BALANCE_DRIFT", "USDT")


def test_batched_fills_dedupe_and_apply_in_time_order_across_chunks(
    loop: Loop, monkeypatch: Any
) -> None:
    """Fill sync applies a page several fills per transaction (trade.sync_fills): a
    duplicate in the same batch or in another one, and fills listed newest first, still
    leave the books as the fills once each in time order."""
    from tradestore.trading.exchange import fillsync

    monkeypatch.setattr(fillsync, "CHUNK", 4)
    order_id, cid = _sent_buy(loop, qty="0.1")
    prices = [str(50000 + 10 * k) for k in range(10)]
    for price in prices:
        loop.fake.fill(cid, "0.01", price, "0.1", "USDT")
    loop.fake.trade_feed = lambda trades: list(reversed(trades)) + trades + trades[:5]
    report = _sync(loop)
    assert len(report.applied) == 10 and len(report.duplicates) == 15
    assert report.applied == [str(t["id"]) for t in loop.fake.trades]  # time order
    order = get_order(loop.conn, order_id)
    assert order.status == "FILLED" and order.filled_quantity == Decimal("0.1")
    assert order.average_fill_price == sum(map(Decimal, prices)) / 10
    assert order.fee == Decimal("1.0")
    position = get_position(loop.conn, loop.desk.account_id, loop.desk.btc)
    assert position.quantity == Decimal("0.1")
    last = loop.conn.execute(
        "SELECT last_exchange_trade_id FROM trade.positions WHERE account_id = %s",
        (loop.desk.account_id,),
    ).fetchone()[0]
    assert last == str(loop.fake.trades[-1]["id"])
    assert loop.conn.execute("SELECT count(*) FROM account.verify_ledger()").fetchone()[0] == 0
    again = _sync(loop)
    assert again.applied == [] and get_order(loop.conn, order_id).filled_quantity == Decimal("0.1")


def test_a_deferred_fill_stops_its_batch_and_the_cursor_before_it(loop: Loop) -> None:
    first, cid = _sent_buy(loop, qty="0.05")
    for _ in range(3):
        loop.fake.fill(cid, "0.01", "50000")
    second = submit_order(
        loop.conn, loop.desk.account_id, loop.desk.btc, "BUY", "LIMIT", Decimal("0.01"),
        Decimal("50000"),
    )  # fmt: skip
    loop.conn.execute(
        "UPDATE trade.order_routes SET state = 'SENDING', lease_until = now() + interval '30 s', "
        "attempts = 1 WHERE order_id = %s",
        (second,),
    )
    second_cid = loop.route(second)["client_order_id"]
    loop.fake.orders.append(FakeOrder(9999, second_cid, "BTCUSDT", "BUY", "LIMIT",
                                      Decimal("0.01"), Decimal("50000"), loop.fake.now_ms()))  # fmt: skip
    loop.fake.fill(second_cid, "0.01", "50000")
    for _ in range(2):
        loop.fake.fill(cid, "0.01", "50000")
    ids = [str(t["id"]) for t in loop.fake.trades]
    report = _sync(loop)
    # One batch: the three fills before the deferred one, nothing after it.
    assert report.applied == ids[:3] and report.deferred == [ids[3]]
    assert get_order(loop.conn, first).filled_quantity == Decimal("0.03")
    cursor = loop.conn.execute(
        "SELECT last_trade_id FROM trade.fill_sync_cursors WHERE account_id = %s",
        (loop.desk.account_id,),
    ).fetchone()[0]
    assert cursor == ids[2]
    loop.clock.advance(31)
    assert loop.router().run_once().found == [second]
    report = _sync(loop)
    assert report.applied == ids[3:] and report.duplicates == [ids[2]]
    assert get_order(loop.conn, first).status == "FILLED"
    assert get_order(loop.conn, second).status == "FILLED"


def test_sync_fills_records_a_repeated_fill_once_with_its_extra_fee(loop: Loop) -> None:
    order_id, cid = _sent_buy(loop)
    exchange_order_id = str(loop.fake.order_by_client_id(cid).order_id)
    fill = {"trade_id": "t-1", "side": "BUY", "quantity": "0.01", "price": "50000",
            "fee": "0.5", "fee_currency": "USDT", "executed_at": "2030-01-01T00:00:00+00:00",
            "order_id": exchange_order_id,
            "extra_fees": [{"cost": "0.002", "currency": "BNB"}]}  # fmt: skip
    rows = loop.conn.execute(
        "SELECT exchange_trade_id, created, deferred FROM trade.sync_fills(%s, %s, %s)",
        (loop.desk.account_id, loop.desk.btc, Jsonb([fill, fill])),
    ).fetchall()
    assert rows == [("t-1", True, False), ("t-1", False, False)]
    fees = loop.conn.execute(
        "SELECT currency, amount FROM account.transactions WHERE account_id = %s "
        "AND transaction_type = 'FEE' ORDER BY currency",
        (loop.desk.account_id,),
    ).fetchall()
    assert fees == [("BNB", Decimal("-0.002")), ("USDT", Decimal("-0.5"))]
    order = get_order(loop.conn, order_id)
    assert order.status == "FILLED" and order.fee == Decimal("0.5")
