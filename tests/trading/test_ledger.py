"""The ledger: append-only for the application role, balances derived from it, and a
per-account hash chain that `ledger verify` checks."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from tests.trading.desk import Desk
from tradestore.db.errors import ValidationError
from tradestore.trading import (
    apply_fill,
    balances,
    deposit,
    entries,
    post_entry,
    submit_order,
    verify,
    withdraw,
)
from tradestore.trading.models import TransactionType


def _some_activity(desk: Desk) -> None:
    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
    apply_fill(desk.conn, order, "t1", 1, 100, "0.1")
    withdraw(desk.conn, desk.account_id, "USDT", 50)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE account.transactions SET amount = amount + 1",
        "DELETE FROM account.transactions",
        "TRUNCATE account.transactions",
        "UPDATE account.ledger_heads SET last_seq = 0",
    ],
)
def test_application_role_cannot_change_the_ledger(desk: Desk, statement: str) -> None:
    _some_activity(desk)
    before = desk.conn.execute("SELECT count(*), sum(amount) FROM account.transactions").fetchone()
    with desk.conn.transaction(), desk.conn.cursor() as cur:
        cur.execute("SET LOCAL ROLE tradestore_app")
        with (
            pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.RestrictViolation)),
            desk.conn.transaction(),
        ):
            cur.execute(statement)
        # ... while appending through the API works as that role.
        cur.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'USDT', 1)", (desk.account_id,))
    after = desk.conn.execute("SELECT count(*), sum(amount) FROM account.transactions").fetchone()
    assert after == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE account.transactions SET amount = amount + 1",
        "DELETE FROM account.transactions",
        # CASCADE: a module table referencing the ledger (settlement's funding payments)
        # makes PostgreSQL refuse a plain TRUNCATE before the trigger is reached.
        "TRUNCATE account.transactions CASCADE",
    ],
)
def test_triggers_refuse_changes_even_for_the_owner(desk: Desk, statement: str) -> None:
    _some_activity(desk)
    before = desk.count("account.transactions")
    with pytest.raises(psycopg.errors.RestrictViolation):
        desk.conn.execute(statement)
    assert desk.count("account.transactions") == before


def test_verify_passes_on_an_intact_ledger_and_hash_ignores_session_timezone(desk: Desk) -> None:
    _some_activity(desk)
    result = verify(desk.conn)
    assert result.ok and result.rows_checked == desk.count("account.transactions")
    seq, head = result.heads[desk.account_id]
    assert seq == result.rows_checked and head and len(head) == 64
    desk.conn.execute("SET TimeZone = 'Asia/Seoul'")
    assert verify(desk.conn).ok


def _tamper(desk: Desk, sql: str) -> None:
    """What a superuser can do behind the append-only triggers."""
    with desk.conn.transaction():
        desk.conn.execute("SET LOCAL session_replication_role = replica")
        desk.conn.execute(sql)


def test_verify_catches_an_altered_row(desk: Desk) -> None:
    _some_activity(desk)
    row_id = desk.conn.execute(
        "SELECT min(id) FROM account.transactions WHERE transaction_type = 'TRADE'"
    ).fetchone()[0]
    _tamper(desk, f"UPDATE account.transactions SET amount = amount / 10 WHERE id = {row_id}")
    result = verify(desk.conn)
    assert not result.ok
    # The row, and the running balance its old amount went into.
    assert [(p.transaction_id, "altered" in p.problem) for p in result.problems] == [
        (row_id, True),
        (None, True),
    ]
    assert "rows sum to" in result.problems[1].problem


def test_verify_catches_an_altered_row_whose_hash_was_recomputed(desk: Desk) -> None:
    _some_activity(desk)
    row_id = desk.conn.execute(
        "SELECT min(id) FROM account.transactions WHERE transaction_type = 'TRADE'"
    ).fetchone()[0]
    _tamper(
        desk,
        f"""UPDATE account.transactions t SET amount = 1,
        row_hash = account.ledger_row_hash(prev_hash, chain_seq, account_id, transaction_type, currency, 1::numeric,
            related_order_id, related_execution_id, related_position_id, description, "timestamp", created_by,
            created_at)
        WHERE id = {row_id}""",
    )
    problems = verify(desk.conn).problems
    rows = [p for p in problems if p.chain_seq is not None]
    assert rows and all("chain broken" in p.problem for p in rows)
    # ... and the running balance no longer matches the rows.
    assert next(p.problem for p in problems if p.chain_seq is None).endswith("(balance altered)")


def test_verify_catches_a_moved_chain_head(desk: Desk) -> None:
    _some_activity(desk)
    desk.conn.execute("UPDATE account.ledger_heads SET last_seq = last_seq - 1")
    assert any("head" in p.problem for p in verify(desk.conn).problems)


def test_verify_catches_deleted_rows(desk: Desk) -> None:
    _some_activity(desk)
    middle, last = desk.conn.execute(
        "SELECT (array_agg(id ORDER BY chain_seq))[2], max(id) FROM account.transactions"
    ).fetchone()
    _tamper(desk, f"DELETE FROM account.transactions WHERE id = {middle}")
    assert any("sequence gap" in p.problem for p in verify(desk.conn).problems)
    _tamper(desk, f"DELETE FROM account.transactions WHERE id = {last}")
    assert any("head" in p.problem for p in verify(desk.conn).problems)


def test_verify_catches_an_altered_running_balance(desk: Desk) -> None:
    _some_activity(desk)
    assert verify(desk.conn).ok
    desk.conn.execute(
        "UPDATE account.ledger_balances SET balance = balance + 1 WHERE currency = 'USDT'"
    )
    (problem,) = verify(desk.conn).problems
    assert problem.account_id == desk.account_id and problem.chain_seq is None
    assert problem.problem.startswith("USDT balance is") and "balance altered" in problem.problem


def test_running_balances_are_the_sums_of_the_rows_and_only_the_trigger_writes_them(
    desk: Desk,
) -> None:
    _some_activity(desk)
    deposit(desk.conn, desk.account_id, "BTC", "0.5")
    sums = desk.conn.execute(
        'SELECT account_id, currency, sum(amount), count(*), max("timestamp") '
        "FROM account.transactions GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()
    running = desk.conn.execute(
        "SELECT account_id, currency, balance, entries, last_movement_at "
        "FROM account.ledger_balances ORDER BY 1, 2"
    ).fetchall()
    assert running == sums
    with desk.conn.transaction(), desk.conn.cursor() as cur:
        cur.execute("SET LOCAL ROLE tradestore_app")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), desk.conn.transaction():
            cur.execute("UPDATE account.ledger_balances SET balance = 0")


def test_balances_and_ledger_entry_rules(desk: Desk) -> None:
    assert balances(desk.conn, desk.account_id) == {"USDT": Decimal(1_000_000)}
    deposit(desk.conn, desk.account_id, "btc", "0.5")
    withdraw(desk.conn, desk.account_id, "BTC", "0.2")
    post_entry(desk.conn, desk.account_id, "ADJUSTMENT", "USDT", "-0.01", description="rounding")
    post_entry(desk.conn, desk.account_id, TransactionType.DIVIDEND, "USDT", "1.5")
    post_entry(desk.conn, desk.account_id, "tax", "USDT", "-0.5", description="transaction tax")
    assert balances(desk.conn, desk.account_id) == {
        "BTC": Decimal("0.3"),
        "USDT": Decimal("1000000.99"),
    }
    newest = entries(desk.conn, desk.account_id, limit=2)  # newest first
    assert [(e.transaction_type, e.amount) for e in newest] == [
        (TransactionType.TAX, Decimal("-0.5")),
        (TransactionType.DIVIDEND, Decimal("1.5")),
    ]
    before = desk.count("account.transactions")
    for args, field in (
        (("WITHDRAWAL", "BTC", "-1"), "amount"),  # more than the balance
        (("DEPOSIT", "USDT", "-5"), "amount"),
        (("DEPOSIT", "USDT", "NaN"), "amount"),
        (("TRADE", "USDT", "5"), "transaction_type"),  # trades only come from fills
        (("BONUS", "USDT", "5"), "transaction_type"),
    ):
        with pytest.raises(ValidationError) as caught:
            post_entry(desk.conn, desk.account_id, *args)
        assert caught.value.field == field
    with pytest.raises(ValidationError) as caught:
        post_entry(desk.conn, 999_999, "DEPOSIT", "USDT", 1)
    assert (caught.value.field, caught.value.value) == ("account_id", "999999")
    assert desk.count("account.transactions") == before
