"""A small trading desk in a migrated database: a user, an exchange, listings and an
account, built through the reference-data and trading APIs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.market import reference
from tradestore.trading import ledger

SPOT_RULES = {"tick_size": "0.01", "step_size": "0.0001", "min_qty": "0.0001", "min_notional": "5"}
PERP_RULES = {"tick_size": "0.1", "step_size": "0.001", "contract_size": "1"}


@dataclass
class Desk:
    conn: psycopg.Connection[Any]
    user_id: int
    exchange_id: int
    account_id: int
    btc: int  # BTC/USDT spot listing
    eth: int  # ETH/USDT spot listing
    perp: int  # BTC/USDT:USDT perpetual
    _minute: itertools.count = field(default_factory=lambda: itertools.count(1))

    def new_account(self, name: str, cash: Decimal | int = 0) -> int:
        account_id = self.conn.execute(
            "INSERT INTO account.accounts (user_id, exchange_id, name, base_currency) "
            "VALUES (%s, %s, %s, 'USDT') RETURNING id",
            (self.user_id, self.exchange_id, name),
        ).fetchone()[0]
        if cash:
            ledger.deposit(self.conn, account_id, "USDT", cash)
        return int(account_id)

    def hold(self, account_id: int, currency: str, amount: Decimal | int) -> None:
        """Deposit what an order needs to be funded (a spot SELL sells held base)."""
        ledger.deposit(self.conn, account_id, currency, amount)

    def set_price(self, listing_id: int, price: Decimal | str) -> None:
        """A newer daily close at price (ahead of today, inside premade partitions)."""
        self.conn.execute(
            """INSERT INTO market.daily_prices (stock_id, trade_date, close_price, volume)
               SELECT ei.instrument_id, current_date + %s, %s, 0
                 FROM market.exchange_instruments ei WHERE ei.id = %s""",
            (next(self._minute), price, listing_id),
        )

    def count(self, table: str) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def build_desk(conn: psycopg.Connection[Any], cash: Decimal | int = 1_000_000) -> Desk:
    # The desk's trader sets the widest risk limits: these tests are about the books; the
    # limits (seed 003's defaults 2% / 10% / 5) have their own tests.
    user_id = conn.execute(
        "INSERT INTO account.users (username, email, password_hash, max_risk_per_trade, "
        "max_total_risk, max_positions) VALUES ('trader', 't@example.com', 'x', 100, 100, 1000) "
        "RETURNING id"
    ).fetchone()[0]
    exchange_id = reference.upsert_exchange(conn, "binance", "Binance")
    listings = {}
    for symbol, ex_symbol, asset_class, base, quote, rules in (
        ("BTC/USDT", "BTCUSDT", "CRYPTO", "BTC", "USDT", SPOT_RULES),
        ("ETH/USDT", "ETHUSDT", "CRYPTO", "ETH", "USDT", SPOT_RULES),
        ("BTC/USDT:USDT", "BTCUSDT_PERP", "PERPETUAL", "BTC", "USDT", PERP_RULES),
    ):
        instrument_id = reference.upsert_instrument(
            conn, symbol, symbol, asset_class=asset_class, base_currency=base, quote_currency=quote
        )
        listings[symbol], _ = reference.upsert_listing(
            conn, exchange_id, instrument_id, ex_symbol, rules
        )
    desk = Desk(
        conn,
        user_id,
        exchange_id,
        0,
        listings["BTC/USDT"],
        listings["ETH/USDT"],
        listings["BTC/USDT:USDT"],
    )
    desk.account_id = desk.new_account("main", cash)
    return desk
