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


def test_the_status_column_takes_its_rule_from_the_vocabulary(
    conn: psycopg.Connection[Any],
) -> None:
    is_domain, check = conn.execute(
        "SELECT a.atttypid = 'trade.order_status'::regtype, pg_get_constraintdef(c.oid) "
        "FROM pg_attribute a JOIN pg_constraint c ON c.contypid = a.atttypid "
        "WHERE a.attrelid = 'trade.orders'::regclass AND a.attname = 'status'"
    ).fetchone()
    assert is_domain
    assert "order_status_moves()" in check
    # No table CHECK lists the statuses again.
    assert (
        conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'trade.orders'::regclass "
            "AND pg_get_constraintdef(oid) LIKE '%PARTIALLY_FILLED%'"
        ).fetchone()[0]
        == 0
    )


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
