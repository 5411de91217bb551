"""Orders through the SQL API: normalization, idempotency, bad input, the state machine,
expiry and rule history."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg
import pytest

from tests.trading.desk import Desk
from tradestore.db.errors import Conflict, ValidationError
from tradestore.market import reference
from tradestore.trading import (
    OrderStatus,
    apply_fill,
    cancel_order,
    expire_orders,
    get_order,
    list_orders,
    submit_order,
)


def test_submit_normalizes_price_and_size(desk: Desk) -> None:
    desk.hold(desk.account_id, "BTC", 1)
    buy = submit_order(
        desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", "0.123456", "50000.019"
    )
    sell = submit_order(
        desk.conn, desk.account_id, desk.btc, "SELL", "LIMIT", "0.123456", "50000.011"
    )
    o_buy, o_sell = get_order(desk.conn, buy), get_order(desk.conn, sell)
    # Quantity truncated to the step; a BUY price rounds down, a SELL price up.
    assert (o_buy.quantity, o_buy.price) == (Decimal("0.1234"), Decimal("50000.01"))
    assert (o_sell.quantity, o_sell.price) == (Decimal("0.1234"), Decimal("50000.02"))
    assert o_buy.status is OrderStatus.NEW and o_buy.remaining_quantity == Decimal("0.1234")


def test_same_idempotency_key_returns_existing_order_and_writes_nothing(desk: Desk) -> None:
    first = submit_order(
        desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100, idempotency_key="k-1"
    )
    before = desk.count("trade.orders")
    again = desk.conn.execute(
        "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 1, 100, 'k-1')", (desk.account_id, desk.btc)
    ).fetchone()[0]
    assert again == first and desk.count("trade.orders") == before
    # Once the order is no longer active the key may be used again.
    cancel_order(desk.conn, first)
    third = submit_order(
        desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100, idempotency_key="k-1"
    )
    assert third != first
    # The key is per account.
    other = desk.new_account("other", 1000)
    assert (
        submit_order(desk.conn, other, desk.btc, "BUY", "LIMIT", 1, 100, idempotency_key="k-1")
        != third
    )


def test_duplicate_client_order_id_is_a_conflict(desk: Desk) -> None:
    submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100, client_order_id="c1")
    with pytest.raises(Conflict):
        submit_order(
            desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100, client_order_id="c1"
        )


BAD_ORDERS = [
    # (field, rule fragment, kwargs)
    ("quantity", "finite number > 0", {"quantity": 0}),
    ("quantity", "finite number > 0", {"quantity": -1}),
    ("quantity", "finite number > 0", {"quantity": "NaN"}),
    ("quantity", "finite number > 0", {"quantity": "Infinity"}),
    ("price", "finite number > 0", {"price": 0}),
    ("price", "finite number > 0", {"price": "-5"}),
    ("price", "finite number > 0", {"price": "NaN"}),
    ("price", "finite number > 0", {"price": "-Infinity"}),
    ("side", "must be one of BUY, SELL", {"side": "HOLD"}),
    ("order_type", "must be one of MARKET, LIMIT, STOP", {"order_type": "ICEBERG"}),
    ("account_id", "existing account", {"account_id": 999_999}),
    ("exchange_instrument_id", "existing listing", {"exchange_instrument_id": 999_999}),
    ("notional", "min notional", {"quantity": "0.0001", "price": 100}),
    ("quantity", "at least one step_size", {"quantity": "0.00001"}),
    ("price", "required for a LIMIT", {"price": None}),
    ("quantity", "float", {"quantity": 0.1}),
]


@pytest.mark.parametrize(
    ("field", "rule", "override"), BAD_ORDERS, ids=[f"{b[0]}:{b[2]}" for b in BAD_ORDERS]
)
def test_bad_orders_name_field_rule_value_and_write_nothing(
    desk: Desk, field: str, rule: str, override: dict[str, object]
) -> None:
    args: dict[str, object] = {
        "account_id": desk.account_id,
        "exchange_instrument_id": desk.btc,
        "side": "BUY",
        "order_type": "LIMIT",
        "quantity": 1,
        "price": 100,
    }
    args.update(override)
    before = desk.count("trade.orders")
    with pytest.raises(ValidationError) as caught:
        submit_order(desk.conn, **args)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert rule in caught.value.rule
    value = override.get(field.replace("notional", "quantity"))
    if value is not None and field != "notional":
        assert str(value) in str(caught.value.value)
    assert desk.count("trade.orders") == before


def test_errors_come_from_sql_for_any_client(desk: Desk) -> None:
    """psql users get the same field/rule/value in the error's fields."""
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        desk.conn.execute(
            "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 'NaN', 100)", (desk.account_id, desk.btc)
        )
    diag = caught.value.diag
    assert (diag.column_name, diag.message_detail) == ("quantity", "NaN")


def test_market_and_stop_orders(desk: Desk) -> None:
    desk.set_price(desk.btc, "100")
    desk.hold(desk.account_id, "BTC", 5)
    market = submit_order(desk.conn, desk.account_id, desk.btc, "SELL", "MARKET", 1)
    assert get_order(desk.conn, market).price is None
    with pytest.raises(ValidationError) as caught:  # judged at the latest price: 0.01 x 100 < 5
        submit_order(desk.conn, desk.account_id, desk.btc, "SELL", "MARKET", "0.01")
    assert caught.value.field == "notional"
    stop = desk.conn.execute(
        "SELECT submit_order(%s, %s, 'SELL', 'STOP', 1, 90.005)", (desk.account_id, desk.btc)
    ).fetchone()[0]
    order = get_order(desk.conn, stop)
    assert (order.price, order.stop_price) == (None, Decimal("90.01"))
    same = get_order(
        desk.conn, submit_order(desk.conn, desk.account_id, desk.btc, "SELL", "STOP", 1, "90.005")
    )
    assert (same.price, same.stop_price) == (None, Decimal("90.01"))
    stop_limit = submit_order(
        desk.conn, desk.account_id, desk.btc, "SELL", "STOP", 1, "89.001", stop_price=90
    )
    assert get_order(desk.conn, stop_limit).price == Decimal("89.01")


def test_cancel_and_state_machine(desk: Desk) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
    apply_fill(desk.conn, order, "t1", 1, 100)
    with pytest.raises(ValidationError) as caught:
        cancel_order(desk.conn, order)
    assert (caught.value.field, caught.value.value) == ("status", "FILLED")
    with pytest.raises(psycopg.errors.CheckViolation) as raw:
        desk.conn.execute("UPDATE trade.orders SET status = 'NEW' WHERE id = %s", (order,))
    assert raw.value.diag.message_detail == "FILLED -> NEW"


def test_direct_updates_are_held_to_the_state_machine(desk: Desk) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 2, 100)
    for statement, field in (
        ("UPDATE trade.orders SET status = 'FILLED' WHERE id = %s", "status"),
        (
            "UPDATE trade.orders SET filled_quantity = 1, status = 'PARTIALLY_FILLED' WHERE id = %s",
            "filled_quantity",
        ),
        ("UPDATE trade.orders SET side = 'SELL' WHERE id = %s", "order"),
    ):
        with pytest.raises(psycopg.errors.CheckViolation) as caught:
            desk.conn.execute(statement, (order,))
        assert caught.value.diag.column_name == field
    with pytest.raises(psycopg.errors.CheckViolation):
        desk.conn.execute(
            "INSERT INTO trade.orders (account_id, exchange_instrument_id, side, order_type, quantity, price, status) "
            "VALUES (%s, %s, 'BUY', 'LIMIT', 1, 100, 'FILLED')",
            (desk.account_id, desk.btc),
        )
    # A NEW order may be amended (and is re-normalized); a partly filled one may not.
    desk.conn.execute("UPDATE trade.orders SET price = 101.239 WHERE id = %s", (order,))
    assert get_order(desk.conn, order).price == Decimal("101.23")
    apply_fill(desk.conn, order, "t1", 1, 101)
    with pytest.raises(psycopg.errors.CheckViolation):
        desk.conn.execute("UPDATE trade.orders SET price = 99 WHERE id = %s", (order,))


def test_cancel_twice_is_a_no_op_and_unknown_order_is_refused(desk: Desk) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
    cancel_order(desk.conn, order)
    cancel_order(desk.conn, order)
    assert get_order(desk.conn, order).status is OrderStatus.CANCELED
    with pytest.raises(ValidationError) as caught:
        cancel_order(desk.conn, 424242)
    assert (caught.value.field, caught.value.value) == ("order_id", "424242")


def test_expiry(desk: Desk) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    expiring = submit_order(
        desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100, expires_at=soon
    )
    lasting = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
    assert expire_orders(desk.conn) == 0
    assert expire_orders(desk.conn, soon + dt.timedelta(seconds=1)) == 1
    assert get_order(desk.conn, expiring).status is OrderStatus.EXPIRED
    assert get_order(desk.conn, lasting).status is OrderStatus.NEW
    with pytest.raises(ValidationError) as caught:
        submit_order(
            desk.conn,
            desk.account_id,
            desk.btc,
            "BUY",
            "LIMIT",
            1,
            100,
            expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        )
    assert caught.value.field == "expires_at"
    assert [o.id for o in list_orders(desk.conn, desk.account_id, active_only=True)] == [lasting]


def test_rule_change_does_not_make_history_invalid(desk: Desk) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", "0.5", 100)
    # A later lot-size change (a symbol event): 0.5 is no longer a valid size.
    reference.set_trading_rules(
        desk.conn, desk.btc, {**_rules(desk), "step_size": "1", "min_qty": "1"}
    )
    with pytest.raises(ValidationError):
        submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", "0.5", 100)
    # The old order is still judged by the rules of its time: it can be amended and filled.
    desk.conn.execute("UPDATE trade.orders SET quantity = 0.6 WHERE id = %s", (order,))
    apply_fill(desk.conn, order, "t1", "0.6", 100)
    assert get_order(desk.conn, order).status is OrderStatus.FILLED


def _rules(desk: Desk) -> dict[str, str]:
    return desk.conn.execute(
        "SELECT trading_rules FROM market.exchange_instruments WHERE id = %s", (desk.btc,)
    ).fetchone()[0]
