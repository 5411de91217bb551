"""The CHECKs of the fill path's tables are written in a form that is cheap to rebuild per
statement (is_finite written out, one array constant per vocabulary; trading/sql/schema.sql):
under their names they must refuse NaN and +-Infinity, values outside each vocabulary and
wrong signs, written by hand behind the SQL API, and accept every value of the rule."""

from __future__ import annotations

from decimal import Decimal

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
        # Finite written out, or implied by the bounds of entered numbers (below 1e20).
        assert "is_finite" not in defs[constraint]
        assert "Infinity" in defs[constraint] or "100000000000000000000" in defs[constraint]
    assert "is_finite" not in defs["chk_transactions_amount"]
    others = desk.conn.execute(
        "SELECT count(*) FROM pg_constraint WHERE contype = 'c' "
        "AND pg_get_constraintdef(oid) LIKE '%is_finite%'"
    ).fetchone()[0]
    assert others > 0


# The vocabulary CHECKs of the fill path's tables (the order status reads
# trade.order_status_moves() through trade.is_order_status):
# (table, column, constraint, every accepted value, refused values).
VOCABULARIES = [
    (
        "trade.orders",
        "status",
        "orders_status_check",
        ("NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED"),
        ("new", "PENDING", ""),
    ),
    ("trade.orders", "side", "orders_side_check", ("BUY", "SELL"), ("buy", "HOLD")),
    (
        "trade.orders",
        "order_type",
        "orders_order_type_check",
        ("MARKET", "LIMIT"),  # STOP needs a stop price (chk_order_stop_has_stop_price)
        ("limit", "OCO"),
    ),
    (
        "trade.orders",
        "source",
        "orders_source_check",
        ("API", "STRATEGY", "WEBHOOK", "MANUAL", "CLI", "EXTERNAL", "BACKTEST"),
        ("api", "BOT"),
    ),
    ("trade.executions", "side", "executions_side_check", ("BUY", "SELL"), ("sell", "X")),
    (
        "trade.executions",
        "liquidity",
        "executions_liquidity_check",
        ("MAKER", "TAKER", None),
        ("maker", "M"),
    ),
]


def _write(desk: Desk, table: str, column: str, value: object, row_id: int) -> None:
    with desk.conn.transaction(force_rollback=True):
        desk.conn.execute("SET LOCAL session_replication_role = replica")
        desk.conn.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", (value, row_id))


def _accepts_and_refuses(
    desk: Desk, table: str, column: str, constraint: str, good: tuple, bad: tuple
) -> None:
    """Every good value is written; every bad one is refused by `constraint`."""
    ids = _filled(desk)
    for value in good:
        _write(desk, table, column, value, ids[table])  # accepted
    for value in bad:
        with pytest.raises(psycopg.errors.CheckViolation) as err:
            _write(desk, table, column, value, ids[table])
        assert err.value.diag.constraint_name == constraint


@pytest.mark.parametrize(("table", "column", "constraint", "good", "bad"), VOCABULARIES)
def test_fill_path_vocabulary_checks(
    desk: Desk, table: str, column: str, constraint: str, good: tuple, bad: tuple
) -> None:
    _accepts_and_refuses(desk, table, column, constraint, good, bad)


# (table, column, constraint, accepted, refused) for the sign and range rules.
SIGNS = [
    # quantity 0 or < 0 breaks chk_order_filled_quantity first (checked in name order)
    ("trade.orders", "quantity", "chk_order_quantity", ("2", "0.5"), ()),
    ("trade.orders", "price", "chk_order_price", ("0.01",), ("0", "-5")),  # a LIMIT order
    ("trade.orders", "stop_price", "chk_order_stop_price", ("1", None), ("0", "-1")),
    ("trade.orders", "fee", "chk_order_fee", ("-3", "0", "5"), ()),
    ("trade.orders", "filled_quantity", "chk_order_filled_quantity", ("0", "2"), ("-1", "2.0001")),
    ("trade.executions", "quantity", "chk_execution_quantity", ("0.1",), ("0", "-0.1")),
    ("trade.executions", "price", "chk_execution_price", ("1",), ("0", "-1")),
    ("trade.executions", "fee", "chk_execution_fee", ("-1", "0"), ()),
    ("trade.positions", "quantity", "positions_quantity_check", ("-3", "3"), ()),
    ("trade.positions", "avg_entry_price", "positions_avg_entry_price_check", ("1",), ("-1",)),
    ("trade.positions", "realized_pnl", "positions_realized_pnl_check", ("-7", "7"), ()),
    ("trade.positions", "total_fees", "positions_total_fees_check", ("-1", "1"), ()),
    (
        "trade.positions",
        "stop_loss_price",
        "positions_stop_loss_price_check",
        ("1", None),
        ("0", "-1"),
    ),
    (
        "trade.positions",
        "take_profit_price",
        "positions_take_profit_price_check",
        ("1", None),
        ("0",),
    ),
]


@pytest.mark.parametrize(("table", "column", "constraint", "good", "bad"), SIGNS)
def test_fill_path_sign_checks(
    desk: Desk, table: str, column: str, constraint: str, good: tuple, bad: tuple
) -> None:
    def number(value: str | None) -> Decimal | None:
        return None if value is None else Decimal(value)

    good, bad = tuple(map(number, good)), tuple(map(number, bad))
    _accepts_and_refuses(desk, table, column, constraint, good, bad)


def test_flat_position_has_no_entry_and_ledger_sign_rules(desk: Desk) -> None:
    ids = _filled(desk)
    with pytest.raises(psycopg.errors.CheckViolation) as err:
        _write(desk, "trade.positions", "quantity", Decimal(0), ids["trade.positions"])
    assert err.value.diag.constraint_name == "chk_positions_flat_has_no_entry"
    for kind, amount, constraint in (
        ("DEPOSIT", "-1", "chk_transactions_deposit_sign"),
        ("WITHDRAWAL", "1", "chk_transactions_withdrawal_sign"),
        ("ADJUSTMENT", "0", "chk_transactions_amount"),
        ("BONUS", "1", "transactions_transaction_type_check"),
    ):
        with pytest.raises(psycopg.errors.CheckViolation) as err, desk.conn.transaction():
            desk.conn.execute("SET LOCAL session_replication_role = replica")
            desk.conn.execute(
                "INSERT INTO account.transactions (account_id, transaction_type, currency, amount, "
                "chain_seq, row_hash) VALUES (%s, %s, 'USDT', %s, 1, ''::bytea)",
                (desk.account_id, kind, Decimal(amount)),
            )
        assert err.value.diag.constraint_name == constraint
