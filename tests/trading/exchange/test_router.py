"""The order router against the loopback fake Binance, through real CCXT code."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.trading.exchange.conftest import Loop
from tradestore.db.errors import ValidationError
from tradestore.trading import cancel_order, get_order, submit_order
from tradestore.trading.exchange.router import Router


def _buy(loop: Loop, qty: str = "0.01", price: str = "50000", **kw: str) -> int:
    return submit_order(
        loop.conn,
        loop.desk.account_id,
        loop.desk.btc,
        "BUY",
        "LIMIT",
        Decimal(qty),
        Decimal(price),
        **kw,
    )


def test_order_is_sent_once_with_its_client_order_id(loop: Loop) -> None:
    order_id = _buy(loop)
    route = loop.route(order_id)
    assert route["state"] == "PENDING"
    assert route["client_order_id"].startswith(f"ts{order_id}-")

    result = loop.router().run_once()
    assert result.sent == [order_id]
    posts = loop.fake.calls("POST", "/api/v3/order")
    assert len(posts) == 1
    assert posts[0]["newClientOrderId"] == route["client_order_id"]
    assert posts[0]["quantity"] == "0.01" and posts[0]["price"] == "50000"
    fake_order = loop.fake.order_by_client_id(route["client_order_id"])
    route = loop.route(order_id)
    assert route["state"] == "SENT"
    assert route["exchange_order_id"] == str(fake_order.order_id)
    assert get_order(loop.conn, order_id).exchange_order_id == str(fake_order.order_id)

    # A second pass has nothing to do.
    assert loop.router().run_once().worked == 0
    assert len(loop.fake.calls("POST", "/api/v3/order")) == 1


def test_accounts_that_do_not_route_queue_nothing(loop: Loop) -> None:
    other = loop.desk.new_account("books-only", 1000)
    order_id = submit_order(
        loop.conn, other, loop.desk.btc, "BUY", "LIMIT", Decimal("0.01"), Decimal("50000")
    )
    assert (
        loop.conn.execute(
            "SELECT count(*) FROM trade.order_routes WHERE order_id = %s", (order_id,)
        ).fetchone()[0]
        == 0
    )
    assert get_order(loop.conn, order_id).client_order_id is None


def test_client_order_id_the_exchange_cannot_take_is_refused(loop: Loop) -> None:
    with pytest.raises(ValidationError) as err:
        _buy(loop, client_order_id="has spaces in it")
    assert err.value.field == "client_order_id"


def test_rejection_becomes_rejected_with_the_exchanges_reason(loop: Loop) -> None:
    # 500,000 USDT: the books fund it (they hold 600,000), the fake exchange holds 100,000.
    loop.desk.hold(loop.desk.account_id, "USDT", 500_000)
    order_id = _buy(loop, qty="10", price="50000")
    result = loop.router().run_once()
    assert result.rejected == [order_id]
    order = get_order(loop.conn, order_id)
    assert order.status == "REJECTED"
    reason = loop.conn.execute(
        "SELECT reject_reason FROM trade.orders WHERE id = %s", (order_id,)
    ).fetchone()[0]
    assert "insufficient balance" in reason
    assert loop.route(order_id)["state"] == "REJECTED"


def test_429_is_retried_after_a_backoff_and_looked_up_before_resending(loop: Loop) -> None:
    order_id = _buy(loop)
    loop.fake.fail_next("POST", "/api/v3/order", 429, {"code": -1003, "msg": "Too many requests"})
    router = loop.router(backoff=dt.timedelta(seconds=60))
    first = router.run_once()
    assert first.retried == [order_id]
    route = loop.route(order_id)
    assert route["state"] == "PENDING" and "429" in route["last_error"]
    assert route["next_attempt_at"] > loop.clock() + dt.timedelta(seconds=50)

    # Not due yet.
    assert router.run_once().worked == 0
    loop.clock.advance(61)
    second = router.run_once()
    assert second.sent == [order_id]
    # The retry asked the exchange for the order by client id before sending it again.
    lookups = loop.fake.calls("GET", "/api/v3/order")
    assert [q["origClientOrderId"] for q in lookups] == [route["client_order_id"]]
    assert len(loop.fake.calls("POST", "/api/v3/order")) == 2  # the 429 and the real one
    assert len(loop.fake.orders) == 1


class Crash(BaseException):
    """The router process dies (not an Exception: nothing catches it)."""


def test_crash_between_sending_and_recording_never_sends_twice(loop: Loop) -> None:
    order_id = _buy(loop)
    router = loop.router()
    connector = router.connectors.for_account(loop.conn, loop.account)
    real_create = connector.create_order

    def create_then_die(*args: object, **kw: object) -> object:
        real_create(*args, **kw)
        raise Crash

    connector.create_order = create_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        router.run_once()
    assert len(loop.fake.orders) == 1
    assert loop.route(order_id)["state"] == "SENDING"  # committed before the call

    # A restarted router waits for the lease, then finds the order by client id.
    restarted = loop.router()
    assert restarted.run_once().worked == 0
    loop.clock.advance(31)
    result = restarted.run_once()
    assert result.found == [order_id] and result.sent == []
    assert len(loop.fake.orders) == 1
    assert len(loop.fake.calls("POST", "/api/v3/order")) == 1
    route = loop.route(order_id)
    assert route["state"] == "SENT"
    assert route["exchange_order_id"] == str(loop.fake.orders[0].order_id)


def test_crash_before_the_order_reached_the_exchange_sends_it(loop: Loop) -> None:
    order_id = _buy(loop)
    router = loop.router()
    connector = router.connectors.for_account(loop.conn, loop.account)

    def die(*args: object, **kw: object) -> object:
        raise Crash

    connector.create_order = die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        router.run_once()
    loop.clock.advance(31)
    result = loop.router().run_once()
    assert result.sent == [order_id]
    assert len(loop.fake.orders) == 1


def test_cancel_goes_through_the_outbox(loop: Loop) -> None:
    sent = _buy(loop)
    never_sent = _buy(loop, price="49000")
    router = loop.router(account_ids=[loop.desk.account_id], batch=1)
    assert router.run_once().sent == [sent]
    cancel_order(loop.conn, never_sent)
    cancel_order(loop.conn, sent)
    assert loop.route(never_sent)["state"] == "CANCELED"  # nothing to tell the exchange
    assert loop.route(sent)["cancel_requested"]

    result = loop.router().run_once()
    assert result.canceled == [sent]
    assert loop.route(sent)["state"] == "CANCELED"
    deletes = loop.fake.calls("DELETE", "/api/v3/order")
    assert len(deletes) == 1
    assert loop.fake.orders[0].status == "CANCELED"
    assert len(loop.fake.orders) == 1  # the other one was never sent


def test_authentication_error_alerts_and_stops_the_account(loop: Loop) -> None:
    loop.fake.api_secret = "another-secret-than-the-stored-one"
    order_id = _buy(loop)
    router = loop.router()
    result = router.run_once()
    assert result.halted_accounts == [loop.desk.account_id]
    route = loop.route(order_id)
    assert route["state"] == "PENDING" and "authentication failed" in route["last_error"]
    alert = loop.conn.execute(
        "SELECT severity, message, data->>'kind' FROM system.alerts WHERE module = 'exchange'"
    ).fetchone()
    assert alert[0] == "CRITICAL" and alert[2] == "EXCHANGE_AUTH_FAILED"
    # Stopped: the next pass calls nothing.
    calls = len(loop.fake.requests)
    assert router.run_once().worked == 0
    assert len(loop.fake.requests) == calls


def test_network_error_text_keeps_no_signature_or_key(loop: Loop) -> None:
    order_id = _buy(loop)
    loop.fake.drop_next("POST", "/api/v3/order")
    result = loop.router().run_once()
    assert result.retried == [order_id]
    error = loop.route(order_id)["last_error"]
    assert "signature=[REDACTED]" in error or "127.0.0.1" in error
    signed = loop.fake.calls("POST", "/api/v3/order")[0]
    assert signed["signature"] not in error
    from tests.support.fake_exchange import API_KEY, API_SECRET

    assert API_KEY not in error and API_SECRET not in error


def test_gives_up_after_max_attempts_with_an_alert(loop: Loop) -> None:
    order_id = _buy(loop)
    router: Router = loop.router(max_attempts=2)
    for _ in range(2):
        loop.fake.fail_next("POST", "/api/v3/order", 503, {})
        router.run_once()
        loop.clock.advance(600)
    route = loop.route(order_id)
    assert route["state"] == "FAILED"
    kinds = [r[0] for r in loop.conn.execute("SELECT data->>'kind' FROM system.alerts").fetchall()]
    assert "ROUTE_FAILED" in kinds


def test_a_waiting_router_is_woken_by_the_order_commit(loop: Loop, db: str) -> None:
    """run_forever LISTENs: an order committed while it waits is sent at once, long
    before its idle poll would come round."""
    import threading

    from tradestore.db.connect import connect

    stop = threading.Event()
    with connect(db, autocommit=True) as router_conn:
        router = Router(router_conn, loop.factory(), clock=loop.clock)
        worker = threading.Thread(target=router.run_forever, args=(stop,), kwargs={"idle_s": 600})
        worker.start()
        try:
            stop.wait(0.5)  # its first (empty) pass done, it waits for a notification
            order_id = _buy(loop)
            for _ in range(1000):
                if loop.route(order_id)["state"] == "SENT":
                    break
                stop.wait(0.02)
            assert loop.route(order_id)["state"] == "SENT"
        finally:
            stop.set()
            # Wake it so it sees the stop flag without waiting out idle_s.
            loop.conn.execute("NOTIFY tradestore_routes")
            worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(loop.fake.calls("POST", "/api/v3/order")) == 1
