"""apply_fill: execution, order, position and ledger in one transaction."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tests.trading.desk import Desk
from tradestore.db.errors import ValidationError
from tradestore.trading import (
    OrderStatus,
    apply_fill,
    balances,
    cancel_order,
    entries,
    get_order,
    get_position,
    list_executions,
    submit_order,
    verify,
)

T0 = dt.datetime(2024, 1, 2, 9, 0, tzinfo=dt.UTC)


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_partial_fills_update_order_position_and_ledger(desk: Desk) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 2, 50000)
    first = apply_fill(desk.conn, order, "t1", "0.5", 49000, "2.45", None, at(1))
    o = get_order(desk.conn, order)
    assert first.created
    assert (o.status, o.filled_quantity, o.remaining_quantity, o.average_fill_price) == (
        OrderStatus.PARTIALLY_FILLED,
        Decimal("0.5"),
        Decimal("1.5"),
        Decimal("49000"),
    )
    apply_fill(desk.conn, order, "t2", "1.5", 50000, "0.0015", "BTC", at(2))
    o = get_order(desk.conn, order)
    assert o.status is OrderStatus.FILLED and o.filled_at == at(2)
    assert o.average_fill_price == Decimal("49750")  # (0.5*49000 + 1.5*50000) / 2
    assert (o.fee, o.fee_currency) == (Decimal("2.45"), "USDT")

    pos = get_position(desk.conn, desk.account_id, desk.btc)
    assert pos is not None
    assert (pos.quantity, pos.avg_entry_price, pos.realized_pnl) == (
        Decimal(2),
        Decimal("49750"),
        0,
    )
    assert o.holding_id == pos.id

    rows = sorted(
        (e.transaction_type, e.currency, e.amount) for e in entries(desk.conn, desk.account_id)
    )
    assert rows == sorted(
        [
            ("DEPOSIT", "USDT", Decimal(1_000_000)),
            ("TRADE", "USDT", Decimal(-24500)),
            ("FEE", "USDT", Decimal("-2.45")),
            ("TRADE", "USDT", Decimal(-75000)),
            ("FEE", "BTC", Decimal("-0.0015")),
        ]
    )
    assert balances(desk.conn, desk.account_id) == {
        "USDT": Decimal(1_000_000) - 24500 - Decimal("2.45") - 75000,
        "BTC": Decimal("-0.0015"),
    }
    assert verify(desk.conn).ok


def test_repeated_fill_returns_same_execution_and_changes_nothing(desk: Desk) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 2, 100)
    first = apply_fill(desk.conn, order, "dup", 1, 100, 0, None, at(1))
    counts = [desk.count(t) for t in ("trade.executions", "account.transactions", "system.alerts")]
    again = apply_fill(desk.conn, order, "dup", 1, 100, 0, None, at(1))
    assert again.execution_id == first.execution_id and not again.created
    assert [
        desk.count(t) for t in ("trade.executions", "account.transactions", "system.alerts")
    ] == counts
    assert get_order(desk.conn, order).filled_quantity == 1


def test_overfill_is_refused_and_nothing_is_written(desk: Desk) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
    apply_fill(desk.conn, order, "a", "0.6", 100)
    before = [desk.count(t) for t in ("trade.executions", "account.transactions")]
    with pytest.raises(ValidationError) as caught:
        apply_fill(desk.conn, order, "b", "0.5", 100)
    assert (caught.value.field, caught.value.value) == ("quantity", "0.5")
    assert "overfill" in caught.value.rule
    assert [desk.count(t) for t in ("trade.executions", "account.transactions")] == before
    assert get_order(desk.conn, order).filled_quantity == Decimal("0.6")


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        ((424242, "x", 1, 100), "order_id", "424242"),
        ((None, "x", 0, 100), "quantity", "0"),
        ((None, "x", -1, 100), "quantity", "-1"),
        ((None, "x", "NaN", 100), "quantity", "NaN"),
        ((None, "x", 1, "Infinity"), "price", "Infinity"),
        ((None, "x", 1, 0), "price", "0"),
        ((None, "  ", 1, 100), "exchange_trade_id", "  "),
    ],
)
def test_bad_fills_name_field_rule_value(desk: Desk, args: tuple, field: str, value: str) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
    call = (args[0] or order, *args[1:])
    with pytest.raises(ValidationError) as caught:
        apply_fill(desk.conn, *call)
    assert (caught.value.field, caught.value.value) == (field, value)
    assert caught.value.rule
    assert desk.count("trade.executions") == 0 and desk.count("trade.positions") == 0


def test_late_fill_after_cancel_is_recorded_and_alerted(desk: Desk) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 2, 100)
    apply_fill(desk.conn, order, "t1", "0.5", 100)
    cancel_order(desk.conn, order)
    late = apply_fill(desk.conn, order, "t2", "0.5", 100)
    o = get_order(desk.conn, order)
    assert o.status is OrderStatus.CANCELED and o.filled_quantity == 1
    assert [e.is_late for e in list_executions(desk.conn, order_id=order)] == [True, False]
    alert = desk.conn.execute("SELECT severity, data FROM system.alerts").fetchone()
    assert alert[0] == "MEDIUM" and alert[1]["execution_id"] == late.execution_id
    # A late fill that completes the order makes it FILLED (the cancel lost the race).
    apply_fill(desk.conn, order, "t3", 1, 100)
    assert get_order(desk.conn, order).status is OrderStatus.FILLED


def test_rejected_order_cannot_be_filled(desk: Desk) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
    desk.conn.execute(
        "UPDATE trade.orders SET status = 'REJECTED', reject_reason = 'x' WHERE id = %s", (order,)
    )
    with pytest.raises(ValidationError) as caught:
        apply_fill(desk.conn, order, "t1", 1, 100)
    assert caught.value.field == "order_id"


def test_netting_partial_close_and_flip_through_zero(desk: Desk) -> None:
    buy = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 3, 200)
    apply_fill(desk.conn, buy, "b1", 1, 100, 0, None, at(1))
    apply_fill(desk.conn, buy, "b2", 2, 130, 0, None, at(2))  # 3 @ 120
    desk.hold(desk.account_id, "BTC", 2)  # spot: selling 5 with 3 bought needs 2 more held
    sell = submit_order(desk.conn, desk.account_id, desk.btc, "SELL", "LIMIT", 5, 100)
    apply_fill(desk.conn, sell, "s1", 1, 150, 0, None, at(3))  # close 1: +30
    pos = get_position(desk.conn, desk.account_id, desk.btc)
    assert pos and (pos.quantity, pos.avg_entry_price, pos.realized_pnl) == (2, 120, 30)
    apply_fill(desk.conn, sell, "s2", 4, 110, 0, None, at(4))  # close 2 (-20), open short 2 @ 110
    pos = get_position(desk.conn, desk.account_id, desk.btc)
    assert pos and (pos.quantity, pos.avg_entry_price, pos.realized_pnl) == (-2, 110, 10)
    assert pos.side == "SHORT" and pos.opened_at == at(4)


def test_out_of_order_fill_gives_the_same_position_as_in_order(desk: Desk) -> None:
    other = desk.new_account("replay", 1_000_000)
    for account in (desk.account_id, other):
        desk.hold(account, "BTC", 3)  # the SELL order is funded
    fills = [("BUY", "a", 1, 100, 1), ("SELL", "b", 1, 120, 2), ("BUY", "c", 2, 90, 3)]
    for account, order_of_arrival in ((desk.account_id, [0, 1, 2]), (other, [2, 0, 1])):
        ids = {
            side: submit_order(desk.conn, account, desk.btc, side, "LIMIT", 3, 100)
            for side in ("BUY", "SELL")
        }
        for i in order_of_arrival:
            side, trade, qty, price, second = fills[i]
            apply_fill(desk.conn, ids[side], f"{account}-{trade}", qty, price, 0, None, at(second))
    a = get_position(desk.conn, desk.account_id, desk.btc)
    b = get_position(desk.conn, other, desk.btc)
    assert a and b
    assert (a.quantity, a.avg_entry_price, a.realized_pnl) == (
        b.quantity,
        b.avg_entry_price,
        b.realized_pnl,
    )
    assert (a.quantity, a.avg_entry_price, a.realized_pnl) == (2, 90, 20)


def test_derivative_fill_books_realized_pnl_not_principal(desk: Desk) -> None:
    buy = submit_order(desk.conn, desk.account_id, desk.perp, "BUY", "LIMIT", 2, 30000)
    apply_fill(desk.conn, buy, "p1", 2, 30000, "1.2", None, at(1))
    sell = submit_order(desk.conn, desk.account_id, desk.perp, "SELL", "LIMIT", 1, 31000)
    apply_fill(desk.conn, sell, "p2", 1, 31000, "0.6", None, at(2))
    rows = sorted(
        (e.transaction_type, e.amount)
        for e in entries(desk.conn, desk.account_id)
        if e.transaction_type != "DEPOSIT"
    )
    assert rows == [("FEE", Decimal("-1.2")), ("FEE", Decimal("-0.6")), ("TRADE", Decimal(1000))]
    desk.set_price(desk.perp, "32000")
    pos = get_position(desk.conn, desk.account_id, desk.perp)
    assert pos and pos.is_derivative and pos.unrealized_pnl == Decimal(2000)
