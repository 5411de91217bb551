"""Revision 0013 writes system.is_finite out in the CHECKs of the fill path's tables:
the rules must still refuse NaN and +-Infinity, written by hand behind the SQL API."""

from __future__ import annotations

import psycopg
import pytest

from tests.trading.desk import Desk
from tradestore.trading import apply_fill, submit_order

BAD = ("NaN", "Infinity", "-Infinity")

# (table, column, constraint); the row is the filled order's own.
CHECKS = [
    ("trade.orders", "quantity", "chk_order_quantity"),
    ("trade.orders", "price", "chk_order_price"),
    ("trade.orders", "stop_price", "chk_order_stop_price"),
    ("trade.orders", "fee", "chk_order_fee"),
    ("trade.executions", "quantity", "chk_execution_quantity"),
    ("trade.executions", "price", "chk_execution_price"),
    ("trade.executions", "fee", "chk_execution_fee"),
    ("trade.positions", "quantity", "positions_quantity_check"),
    ("trade.positions", "avg_entry_price", "positions_avg_entry_price_check"),
    ("trade.positions", "realized_pnl", "positions_realized_pnl_check"),
    ("trade.positions", "total_fees", "positions_total_fees_check"),
]


def _filled(desk: Desk) -> dict[str, int]:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 2, 50000)
    fill = apply_fill(desk.conn, order, "chk-1", "0.5", 49000, "1")
    position = desk.conn.execute(
        "SELECT holding_id FROM trade.orders WHERE id = %s", (order,)
    ).fetchone()[0]
    return {
        "trade.orders": order,
        "trade.executions": fill.execution_id,
        "trade.positions": position,
    }


@pytest.mark.parametrize("value", BAD)
def test_fill_path_checks_refuse_non_finite_values(desk: Desk, value: str) -> None:
    ids = _filled(desk)
    for table, column, constraint in CHECKS:
        with pytest.raises(psycopg.errors.CheckViolation) as err, desk.conn.transaction():
            # Triggers off (as a superuser may): the CHECK alone must refuse the value.
            desk.conn.execute("SET LOCAL session_replication_role = replica")
            desk.conn.execute(
                f"UPDATE {table} SET {column} = %s::numeric WHERE id = %s", (value, ids[table])
            )
        # A negative order quantity also breaks filled_quantity <= quantity.
        allowed = {constraint, "chk_order_filled_quantity" if column == "quantity" else constraint}
        assert err.value.diag.constraint_name in allowed


@pytest.mark.parametrize("value", BAD)
def test_ledger_amount_check_refuses_non_finite_values(desk: Desk, value: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as err, desk.conn.transaction():
        desk.conn.execute("SET LOCAL session_replication_role = replica")
        desk.conn.execute(
            "INSERT INTO account.transactions (account_id, transaction_type, currency, amount, "
            "chain_seq, row_hash) "
            "VALUES (%s, 'ADJUSTMENT', 'USDT', %s::numeric, 1, ''::bytea)",
            (desk.account_id, value),
        )
    assert err.value.diag.constraint_name == "chk_transactions_amount"


def test_fill_path_checks_keep_their_names_and_other_tables_keep_is_finite(desk: Desk) -> None:
    defs = dict(
        desk.conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'c' "
            "AND conrelid IN ('trade.orders'::regclass, 'trade.executions'::regclass, "
            "'trade.positions'::regclass, 'account.transactions'::regclass)"
        ).fetchall()
    )
    for _, _, constraint in CHECKS:
        assert "Infinity" in defs[constraint] and "is_finite" not in defs[constraint]
    assert "is_finite" not in defs["chk_transactions_amount"]
    others = desk.conn.execute(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'c' "
        "AND pg_get_constraintdef(oid) LIKE '%is_finite%'"
    ).fetchone()[0]
    assert others > 0
