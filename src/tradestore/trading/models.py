"""Typed records of the trading core. Money, prices and quantities are Decimal."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"

    @property
    def is_active(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class TransactionType(StrEnum):
    TRADE = "TRADE"
    FEE = "FEE"
    FUNDING_FEE = "FUNDING_FEE"
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    ADJUSTMENT = "ADJUSTMENT"
    DIVIDEND = "DIVIDEND"
    TAX = "TAX"


@dataclass(frozen=True)
class Order:
    id: int
    account_id: int
    exchange_instrument_id: int
    symbol: str
    side: Side
    order_type: OrderType
    status: OrderStatus
    quantity: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    filled_quantity: Decimal
    remaining_quantity: Decimal
    average_fill_price: Decimal | None
    fee: Decimal
    fee_currency: str | None
    source: str
    idempotency_key: str | None
    client_order_id: str | None
    exchange_order_id: str | None
    strategy_id: int | None
    pick_id: int | None
    holding_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    filled_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class Execution:
    id: int
    order_id: int
    account_id: int
    exchange_instrument_id: int
    symbol: str
    exchange_trade_id: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str | None
    net_amount: Decimal | None
    is_late: bool
    executed_at: dt.datetime


@dataclass(frozen=True)
class FillResult:
    """What apply_fill did: the execution id, and whether this call recorded it (False:
    a repeat of a fill already in the books, which changed nothing)."""

    execution_id: int
    created: bool


@dataclass(frozen=True)
class Position:
    id: int
    account_id: int
    exchange_instrument_id: int
    symbol: str
    quantity: Decimal
    avg_entry_price: Decimal
    realized_pnl: Decimal
    total_fees: Decimal
    current_price: Decimal | None
    cost_basis: Decimal
    market_value: Decimal | None
    unrealized_pnl: Decimal | None
    quote_currency: str
    is_derivative: bool
    opened_at: dt.datetime | None
    closed_at: dt.datetime | None

    @property
    def side(self) -> str:
        return "LONG" if self.quantity > 0 else "SHORT" if self.quantity < 0 else "FLAT"


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    account_id: int
    chain_seq: int
    transaction_type: TransactionType
    currency: str
    amount: Decimal
    related_order_id: int | None
    related_execution_id: int | None
    related_position_id: int | None
    description: str | None
    timestamp: dt.datetime
    created_by: str
    row_hash: str


@dataclass(frozen=True)
class AssetBalance:
    """Holdings per currency as an exchange's fetch_balance reports them: total = ledger
    balance + spot positions in the asset; used = held by open orders; free = the rest."""

    currency: str
    free: Decimal
    used: Decimal
    total: Decimal


@dataclass(frozen=True)
class Valuation:
    """An account's value in its base currency (see trading/sql/valuation.sql)."""

    account_id: int
    base_currency: str
    cash_balance: Decimal
    reserved_balance: Decimal
    available_balance: Decimal
    invested_balance: Decimal
    positions_value: Decimal
    other_value: Decimal
    total_value: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    unvalued_currencies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LedgerProblem:
    account_id: int
    chain_seq: int | None  # None: a problem of the account's running balance, not a row
    transaction_id: int | None
    problem: str


@dataclass(frozen=True)
class LedgerVerification:
    """Result of checking the ledger hash chains. `heads` maps each account to its chain
    head (last sequence number, hex hash), to write down and compare later."""

    rows_checked: int
    problems: list[LedgerProblem]
    heads: dict[int, tuple[int, str | None]]

    @property
    def ok(self) -> bool:
        return not self.problems


_ENUMS: dict[str, type[StrEnum]] = {
    "Side": Side,
    "OrderType": OrderType,
    "OrderStatus": OrderStatus,
    "TransactionType": TransactionType,
}


def from_row(cls: type, row: dict[str, object]) -> object:
    """Build a record from a dict row, turning enum columns into their StrEnum."""
    from dataclasses import fields

    kwargs = {}
    for f in fields(cls):
        if f.name in row:
            value = row[f.name]
            enum = _ENUMS.get(str(f.type))
            kwargs[f.name] = enum(str(value)) if enum is not None and value is not None else value
    return cls(**kwargs)
