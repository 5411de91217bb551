"""Trading accounts (seed 001 accounts; seed 003's portfolios and 004's portfolio are views
over them): open one for a user at an exchange, and list them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.db.errors import ValidationError
from tradestore.db.query import dicts, scalar, translated
from tradestore.trading._input import to_decimal


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


def update_account(
    conn: psycopg.Connection[Any],
    account_id: int,
    *,
    name: str | None = None,
    exchange: str | None = None,
    description: str | None = None,
    initial_capital: Decimal | int | str | None = None,
) -> None:
    """Change an account's name, description, reference capital or exchange. The exchange
    may be set or changed only while the account has no orders: its orders, fills and
    positions are at that exchange."""
    sets: dict[str, Any] = {}
    if name is not None:
        sets["name"] = name
    if description is not None:
        sets["description"] = description
    if initial_capital is not None:
        sets["initial_capital"] = to_decimal("initial_capital", initial_capital)
    with translated(), conn.transaction():
        found = conn.execute(
            "SELECT exchange_id FROM account.accounts WHERE id = %s FOR UPDATE", (account_id,)
        ).fetchone()
        if found is None:
            raise ValidationError("account_id", "must name an existing account", account_id)
        current = found[0]
        if exchange is not None:
            exchange_id = scalar(
                conn, "SELECT id FROM market.exchanges WHERE code = %s", (exchange,)
            )
            if exchange_id is None:
                raise ValidationError("exchange", "must name an existing exchange code", exchange)
            if exchange_id != current:
                has_orders = scalar(
                    conn, "SELECT 1 FROM trade.orders WHERE account_id = %s LIMIT 1", (account_id,)
                )
                if has_orders:
                    raise ValidationError(
                        "exchange", "can change only while the account has no orders", exchange
                    )
            sets["exchange_id"] = exchange_id
        if not sets:
            raise ValidationError("account", "give at least one field to change", None)
        assignments = ", ".join(f"{col} = %({col})s" for col in sets)
        conn.execute(
            f"UPDATE account.accounts SET {assignments} WHERE id = %(id)s",
            {**sets, "id": account_id},
        )


def close_account(conn: psycopg.Connection[Any], account_id: int) -> None:
    """Close an account: it takes no more orders (place_order refuses an inactive
    account). Refused while it has open orders or open positions: cancel and close them
    first, so nothing is left working at the exchange."""
    with translated(), conn.transaction():
        active = scalar(
            conn, "SELECT is_active FROM account.accounts WHERE id = %s FOR UPDATE", (account_id,)
        )
        if active is None:
            raise ValidationError("account_id", "must name an existing account", account_id)
        open_orders = scalar(
            conn,
            "SELECT count(*) FROM trade.orders WHERE account_id = %s "
            "AND status IN ('NEW', 'PARTIALLY_FILLED')",
            (account_id,),
        )
        if open_orders:
            raise ValidationError(
                "account_id", f"has {open_orders} open order(s): cancel them first", account_id
            )
        open_positions = scalar(
            conn,
            "SELECT count(*) FROM trade.positions WHERE account_id = %s AND quantity <> 0",
            (account_id,),
        )
        if open_positions:
            raise ValidationError(
                "account_id", f"has {open_positions} open position(s): close them first", account_id
            )
        conn.execute("UPDATE account.accounts SET is_active = false WHERE id = %s", (account_id,))
