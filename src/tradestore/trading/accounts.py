"""Trading accounts (seed 001 accounts; seed 003's portfolios and 004's portfolio are views
over them): open one for a user at an exchange, and list them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.db.errors import ValidationError
from tradestore.trading._sql import dicts, scalar, to_decimal, translated


@dataclass(frozen=True)
class Account:
    id: int
    user_id: int
    username: str
    exchange: str | None
    name: str
    base_currency: str
    initial_capital: Decimal
    is_active: bool
    trading_mode: str = "off"


def create_account(
    conn: psycopg.Connection[Any],
    username: str,
    name: str,
    *,
    exchange: str | None = None,
    base_currency: str = "USDT",
    initial_capital: Decimal | int | str = 0,
    strategy_type: str | None = None,
) -> int:
    """Open an account for a user (by username) at an exchange (by code); returns its id.
    initial_capital is the reference for returns; money arrives with a ledger DEPOSIT."""
    capital = to_decimal("initial_capital", initial_capital)
    currency = base_currency.strip().upper()
    if not currency or len(currency) > 20:
        raise ValidationError("base_currency", "must be 1 to 20 characters", base_currency)
    with translated():
        user_id = scalar(conn, "SELECT id FROM account.users WHERE username = %s", (username,))
        if user_id is None:
            raise ValidationError("username", "must name an existing user", username)
        exchange_id = None
        if exchange is not None:
            exchange_id = scalar(
                conn, "SELECT id FROM market.exchanges WHERE code = %s", (exchange,)
            )
            if exchange_id is None:
                raise ValidationError("exchange", "must name an existing exchange code", exchange)
        return int(
            scalar(
                conn,
                "INSERT INTO account.accounts (user_id, exchange_id, name, base_currency, "
                "initial_capital, strategy_type) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (user_id, exchange_id, name, currency, capital, strategy_type),
            )
        )


def list_accounts(conn: psycopg.Connection[Any], username: str | None = None) -> list[Account]:
    rows = dicts(
        conn,
        "SELECT a.id, a.user_id, u.username, x.code AS exchange, a.name, a.base_currency, "
        "a.initial_capital, a.is_active, a.trading_mode FROM account.accounts a "
        "JOIN account.users u ON u.id = a.user_id LEFT JOIN market.exchanges x ON x.id = a.exchange_id "
        "WHERE %(username)s::text IS NULL OR u.username = %(username)s ORDER BY a.id",
        {"username": username},
    )
    return [Account(**row) for row in rows]
