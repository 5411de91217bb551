"""Picks to orders: approval (manual by default, automatic per account), the account's
risk limits, idempotency, and is_executed kept consistent with the order link."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.trading.desk import Desk, build_desk
from tradestore.brain import picks
from tradestore.brain.picks import PickIdea, ScreenContext

DAY = date(2024, 3, 4)


def _screen(ctx: ScreenContext) -> list[PickIdea]:
    return [PickIdea("BTC/USDT", "BUY", Decimal("8.5"), "breakout", Decimal("110"), Decimal("90"))]


@pytest.fixture
def desk(conn: psycopg.Connection[Any]) -> Desk:
    d = build_desk(conn, cash=10_000)
    # Seed 003's default limits (the desk sets wide ones): picks are held to them.
    conn.execute(
        "UPDATE account.users SET max_risk_per_trade = 2, max_total_risk = 10, max_positions = 5 "
        "WHERE id = %s",
        (d.user_id,),
    )
    d.set_price(d.btc, "100")
    return d


def _pick(desk: Desk) -> int:
    (pick_id,) = picks.run_screen(desk.conn, _screen, DAY, "CRYPTO", "breakout")
    return pick_id


def _executed(desk: Desk, pick_id: int) -> bool:
    return bool(
        desk.conn.execute(
            "SELECT is_executed FROM brain.daily_picks WHERE pick_id = %s", (pick_id,)
        ).fetchone()[0]
    )


def test_rule_screen_picks_are_stored_like_llm_picks(desk: Desk) -> None:
    pick_id = _pick(desk)
    (row,) = picks.list_picks(desk.conn, DAY)
    assert row["pick_id"] == pick_id and row["symbol"] == "BTC/USDT"
    assert (row["source"], row["model_name"], row["rationale"]) == (
        "RULE",
        "rule:breakout",
        "breakout",
    )
    assert (row["target_price"], row["stop_price"], row["is_executed"]) == (
        Decimal("110"),
        Decimal("90"),
        False,
    )


def test_manual_approval_is_required_before_an_order(desk: Desk) -> None:
    pick_id = _pick(desk)
    assert picks.request(desk.conn, pick_id, desk.account_id)["status"] == "PENDING"
    with pytest.raises(psycopg.errors.CheckViolation, match="approved"):
        picks.execute(desk.conn, pick_id, desk.account_id)
    # Nor can an order carrying the pick be placed another way.
    with pytest.raises(psycopg.errors.CheckViolation, match="approved"):
        desk.conn.execute(
            "SELECT trade.place_order(%s, %s, 'BUY', 'MARKET', 1, p_pick_id => %s)",
            (desk.account_id, desk.btc, pick_id),
        )
    assert desk.count("trade.orders") == 0 and not _executed(desk, pick_id)
    picks.decide(desk.conn, pick_id, desk.account_id, approve=False)
    with pytest.raises(psycopg.errors.CheckViolation):
        picks.decide(desk.conn, pick_id, desk.account_id, approve=True)


def test_approved_pick_becomes_one_order_sized_to_the_risk_limit(desk: Desk) -> None:
    pick_id = _pick(desk)
    picks.request(desk.conn, pick_id, desk.account_id)
    picks.decide(desk.conn, pick_id, desk.account_id, approve=True)
    order_id = picks.execute(desk.conn, pick_id, desk.account_id)
    assert picks.execute(desk.conn, pick_id, desk.account_id) == order_id  # idempotent
    assert desk.count("trade.orders") == 1
    qty, pick_of_order, side = desk.conn.execute(
        "SELECT quantity, pick_id, side FROM trade.orders WHERE id = %s", (order_id,)
    ).fetchone()
    # Sized to the trading risk limit: an exposure of 2% of the 10,000 equity at the
    # latest price 100 is 2 units (the funds it holds, 2 x 100 x 1.05 x 1.01, are free).
    assert (qty, pick_of_order, side) == (Decimal("2"), pick_id, "BUY")
    assert desk.conn.execute(
        "SELECT risk_notional FROM trade.orders WHERE id = %s", (order_id,)
    ).fetchone()[0] == Decimal("200")
    assert _executed(desk, pick_id)
    linked = desk.conn.execute(
        "SELECT order_id FROM brain.pick_orders WHERE pick_id = %s", (pick_id,)
    ).fetchone()[0]
    assert linked == order_id
    with pytest.raises(psycopg.errors.CheckViolation, match="is_executed"):
        desk.conn.execute(
            "UPDATE brain.daily_picks SET is_executed = false WHERE pick_id = %s", (pick_id,)
        )


def test_pick_sized_by_cash_fits_the_funds_reservation(desk: Desk) -> None:
    desk.conn.execute(
        "UPDATE account.users SET max_risk_per_trade = 100, max_total_risk = 100 WHERE id = %s",
        (desk.user_id,),
    )
    pick_id = _pick(desk)
    picks.set_auto_approve(desk.conn, desk.account_id, True)
    picks.request(desk.conn, pick_id, desk.account_id)
    order_id = picks.execute(desk.conn, pick_id, desk.account_id)
    # The free 10,000 USDT funds 10,000 / (100 x 1.05 slippage x 1.01 fee) = 94.2951... units,
    # truncated to the step; the order holds no more than is free.
    qty, held = desk.conn.execute(
        "SELECT quantity, quantity * reserve_per_unit FROM trade.orders WHERE id = %s",
        (order_id,),
    ).fetchone()
    assert qty == Decimal("94.2951")
    assert held <= Decimal("10000")


def test_order_over_the_risk_limit_is_refused(desk: Desk) -> None:
    pick_id = _pick(desk)
    picks.set_auto_approve(desk.conn, desk.account_id, True)
    assert picks.request(desk.conn, pick_id, desk.account_id)["status"] == "APPROVED"  # automatic
    # 2.01 units at 100 is an exposure of 201, above 2% of the 10,000 equity.
    with pytest.raises(psycopg.errors.CheckViolation, match="max_risk_per_trade"):
        picks.execute(desk.conn, pick_id, desk.account_id, quantity=Decimal("2.01"))
    assert desk.count("trade.orders") == 0 and not _executed(desk, pick_id)
    desk.conn.execute("UPDATE account.users SET max_positions = 0 WHERE id = %s", (desk.user_id,))
    with pytest.raises(psycopg.errors.CheckViolation, match="max_positions"):
        picks.execute(desk.conn, pick_id, desk.account_id, quantity=Decimal("1"))


def test_unexecuted_pick_cannot_be_marked_executed(desk: Desk) -> None:
    pick_id = _pick(desk)
    with pytest.raises(psycopg.errors.CheckViolation, match="is_executed"):
        desk.conn.execute(
            "UPDATE brain.daily_picks SET is_executed = true WHERE pick_id = %s", (pick_id,)
        )
