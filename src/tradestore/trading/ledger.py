"""The ledger (seed 001 transactions): append-only cash movements, balances derived from
it, and the hash-chain check behind `tradestore ledger verify`."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, cast

import psycopg

from tradestore.db.query import dicts, scalar
from tradestore.trading._input import Number, to_decimal, utc
from tradestore.trading.models import (
    AssetBalance,
    LedgerEntry,
    LedgerProblem,
    LedgerVerification,
    TransactionType,
    from_row,
)


def post_entry(
    conn: psycopg.Connection[Any],
    account_id: int,
    transaction_type: TransactionType | str,
    currency: str,
    amount: Number,
    *,
    description: str | None = None,
    timestamp: dt.datetime | None = None,
    related_position_id: int | None = None,
    related_order_id: int | None = None,
    related_execution_id: int | None = None,
) -> int:
    """Append a DEPOSIT (> 0), WITHDRAWAL (< 0, not past the balance), ADJUSTMENT,
    FUNDING_FEE, FEE, DIVIDEND or TAX row; returns its id. TRADE rows only come from fills."""
    return cast(
        int,
        scalar(
            conn,
            "SELECT public.post_ledger_entry(%s, %s, %s, %s, %s, coalesce(%s, now()), %s, %s, %s)",
            (
                account_id,
                str(transaction_type),
                currency,
                to_decimal("amount", amount),
                description,
                utc(timestamp, "timestamp"),
                related_position_id,
                related_order_id,
                related_execution_id,
            ),
        ),
    )


def deposit(
    conn: psycopg.Connection[Any],
    account_id: int,
    currency: str,
    amount: Number,
    description: str | None = None,
) -> int:
    return post_entry(
        conn, account_id, TransactionType.DEPOSIT, currency, amount, description=description
    )


def withdraw(
    conn: psycopg.Connection[Any],
    account_id: int,
    currency: str,
    amount: Number,
    description: str | None = None,
) -> int:
    """Withdraw a positive amount (booked as a negative WITHDRAWAL row)."""
    value = cast(Decimal, to_decimal("amount", amount))
    return post_entry(
        conn, account_id, TransactionType.WITHDRAWAL, currency, -value, description=description
    )


def entries(
    conn: psycopg.Connection[Any],
    account_id: int,
    *,
    currency: str | None = None,
    transaction_type: TransactionType | str | None = None,
    limit: int = 100,
) -> list[LedgerEntry]:
    """Ledger rows of an account, newest first."""
    found = dicts(
        conn,
        """SELECT t.id, t.account_id, t.chain_seq, t.transaction_type, t.currency, t.amount,
                  t.related_order_id, t.related_execution_id, t.related_position_id, t.description,
                  t."timestamp" AS timestamp, t.created_by, encode(t.row_hash, 'hex') AS row_hash
             FROM account.transactions t
            WHERE t.account_id = %(account)s
              AND (%(currency)s::text IS NULL OR t.currency = upper(%(currency)s))
              AND (%(type)s::text IS NULL OR t.transaction_type = upper(%(type)s))
            ORDER BY t.chain_seq DESC LIMIT %(limit)s""",
        {
            "account": account_id,
            "currency": currency,
            "type": str(transaction_type) if transaction_type else None,
            "limit": limit,
        },
    )
    return [cast(LedgerEntry, from_row(LedgerEntry, r)) for r in found]


def balances(conn: psycopg.Connection[Any], account_id: int) -> dict[str, Decimal]:
    """Ledger balance per currency (cash; spot assets are positions, see asset_balances)."""
    found = dicts(
        conn,
        "SELECT currency, balance FROM account.balances WHERE account_id = %s ORDER BY currency",
        (account_id,),
    )
    return {r["currency"]: r["balance"] for r in found}


def asset_balances(conn: psycopg.Connection[Any], account_id: int) -> list[AssetBalance]:
    """What the account holds per currency, free/used/total like CCXT's fetch_balance."""
    found = dicts(
        conn,
        "SELECT currency, free, used, total FROM account.asset_balances WHERE account_id = %s "
        "ORDER BY currency",
        (account_id,),
    )
    return [AssetBalance(**r) for r in found]


def verify(conn: psycopg.Connection[Any], account_id: int | None = None) -> LedgerVerification:
    """Recompute every row's hash and walk each account's chain to its head. Catches a row
    edited or deleted behind the append-only triggers (e.g. by a superuser)."""
    problems = [
        LedgerProblem(**r)
        for r in dicts(conn, "SELECT * FROM account.verify_ledger(%s)", (account_id,))
    ]
    checked = scalar(
        conn,
        "SELECT count(*) FROM account.transactions WHERE %(a)s::bigint IS NULL OR account_id = %(a)s",
        {"a": account_id},
    )
    heads = {
        r["account_id"]: (r["last_seq"], r["last_hash"])
        for r in dicts(
            conn,
            "SELECT account_id, last_seq, encode(last_hash, 'hex') AS last_hash FROM account.ledger_heads "
            "WHERE %(a)s::bigint IS NULL OR account_id = %(a)s ORDER BY account_id",
            {"a": account_id},
        )
    }
    return LedgerVerification(rows_checked=int(checked), problems=problems, heads=heads)
