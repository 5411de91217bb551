"""The order-status vocabulary is stated once, in trade.order_status_moves(): the status
column's domain, the transition rule and Python's OrderStatus all agree with it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.trading.desk import Desk
from tradestore.trading import OrderStatus, submit_order


def _moves(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    return conn.execute("SELECT trade.order_status_moves()").fetchone()[0]


def test_python_enum_is_the_sql_vocabulary(conn: psycopg.Connection[Any]) -> None:
    moves = _moves(conn)
    assert set(moves) == {s.value for s in OrderStatus}
    # Every status a move leads to is itself a status.
    assert {to for targets in moves.values() for to in targets} == set(moves)


def test_the_status_check_takes_its_rule_from_the_vocabulary(
    conn: psycopg.Connection[Any],
) -> None:
    check = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'trade.orders'::regclass AND conname = 'orders_status_check'"
    ).fetchone()[0]
    assert "is_order_status" in check
    # No constraint or function body lists the vocabulary again.
    assert (
        conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE pg_get_constraintdef(oid) LIKE '%PARTIALLY_FILLED%'"
        ).fetchone()[0]
        == 0
    )
    listing = conn.execute(
        "SELECT array_agg(p.proname ORDER BY p.proname) FROM pg_proc p "
        "WHERE p.prosrc ~ 'PARTIALLY_FILLED.{0,4}FILLED.{0,4}CANCELED.{0,4}REJECTED'"
    ).fetchone()[0]
    assert listing == ["order_status_moves"]


def test_seed_aliases_are_normalized_before_the_check(desk: Desk) -> None:
    """tr_orders_normalize maps seed 004's names before orders_status_check runs."""
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 50000)
    desk.conn.execute("UPDATE trade.orders SET status = 'CANCELLED' WHERE id = %s", (order,))
    status = desk.conn.execute(
        "SELECT status FROM trade.orders WHERE id = %s", (order,)
    ).fetchone()[0]
    assert status == OrderStatus.CANCELED


def test_transitions_follow_the_moves(conn: psycopg.Connection[Any]) -> None:
    moves = _moves(conn)
    for start in OrderStatus:
        for end in OrderStatus:
            allowed = conn.execute(
                "SELECT trade.order_transition_allowed(%s, %s)", (start.value, end.value)
            ).fetchone()[0]
            assert allowed is (end.value in moves[start.value]), (start, end)
    assert (
        conn.execute("SELECT trade.order_transition_allowed('PENDING', 'NEW')").fetchone()[0]
        is False
    )
    assert (
        conn.execute("SELECT trade.order_transition_allowed('NEW', 'PENDING')").fetchone()[0]
        is False
    )


@pytest.mark.parametrize("bad", ["PENDING", "new", ""])
def test_a_status_outside_the_vocabulary_is_refused_under_the_old_name(
    desk: Desk, bad: str
) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 50000)
    with pytest.raises(psycopg.errors.CheckViolation) as err, desk.conn.transaction():
        desk.conn.execute("SET LOCAL session_replication_role = replica")  # triggers off
        desk.conn.execute("UPDATE trade.orders SET status = %s WHERE id = %s", (bad, order))
    assert err.value.diag.constraint_name == "orders_status_check"
