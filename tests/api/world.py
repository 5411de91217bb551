"""A small, realistic world for the API tests: users with passwords, a BTC/USDT listing
with a day of 1-minute bars and a ticker, accounts with deposits, a filled and an open
order, alerts, a strategy with a signal and a completed backtest with an equity curve."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
from argon2 import PasswordHasher

from tradestore.identity import users
from tradestore.identity.rls import Role

# Cheap argon2 parameters keep the suite fast (identity's tests cover the defaults).
FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
PASSWORD = "s3cret-enough"
SYMBOL = "binance:BTCUSDT"
BARS = 24 * 60


@dataclass
class Trader:
    user_id: int
    username: str
    account_id: int
    filled_order_id: int
    open_order_id: int
    alert_id: int
    strategy_id: int
    backtest_id: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class World:
    listing_id: int
    alice: Trader
    bob: Trader
    admin_id: int
    readonly_id: int
    system_alert_id: int
    last_bar: dt.datetime


def _bars(end: dt.datetime, n: int, seed: int = 7) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(seed)
    close = np.round(41000 * np.exp(np.cumsum(rng.normal(0, 0.0015, n))), 2)
    rows = []
    prev = float(close[0])
    for i in range(n):
        c = float(close[i])
        h = round(max(prev, c) + float(abs(rng.normal(0, 8))), 2)
        lo = round(min(prev, c) - float(abs(rng.normal(0, 8))), 2)
        rows.append(
            (
                end - (n - i) * dt.timedelta(minutes=1),
                f"{prev:.2f}",
                f"{h:.2f}",
                f"{lo:.2f}",
                f"{c:.2f}",
                f"{rng.gamma(2.0, 1.5):.4f}",
            )
        )
        prev = c
    return rows


def _trader(conn: psycopg.Connection[Any], listing: int, username: str, price: str) -> Trader:
    user = users.create_user(conn, username, f"{username}@example.com", PASSWORD, hasher=FAST)
    # Orders are held to the owner's risk limits; these traders set wide ones.
    conn.execute(
        "UPDATE account.users SET max_risk_per_trade = 100, max_total_risk = 100 WHERE id = %s",
        (user.id,),
    )
    account = conn.execute(
        "INSERT INTO account.accounts (user_id, exchange_id, name, initial_capital) "
        "VALUES (%s, 1, 'main', 10000) RETURNING id",
        (user.id,),
    ).fetchone()[0]
    conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'USDT', 10000)", (account,))
    filled = conn.execute(
        "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 0.1, %s)", (account, listing, price)
    ).fetchone()[0]
    conn.execute("SELECT apply_fill(%s, %s, 0.1, %s, 1, 'USDT')", (filled, f"T-{username}", price))
    open_order = conn.execute(
        "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 0.01, 30000)", (account, listing)
    ).fetchone()[0]
    alert = conn.execute(
        "SELECT raise_alert('HIGH', %s, 'risk', NULL, 'WARNING', NULL, %s)",
        (f"{username}: drawdown over limit", user.id),
    ).fetchone()[0]
    strategy = conn.execute(
        "INSERT INTO analytics.strategies (user_id, name, strategy_type, parameters) "
        "VALUES (%s, %s, 'swing_trading', '{\"fast\": 10, \"slow\": 30}') RETURNING id",
        (user.id, f"{username}-sma"),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO analytics.strategy_executions (strategy_id, user_id, execution_type, signal_data) "
        "VALUES (%s, %s, 'signal', '{\"side\": \"BUY\"}')",
        (strategy, user.id),
    )
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    curve = [
        {"t": (start + dt.timedelta(days=i)).isoformat().replace("+00:00", "Z"),
         "equity": 10000 + 25 * i + (i % 7) * 10}
        for i in range(60)
    ]  # fmt: skip
    backtest = conn.execute(
        """INSERT INTO analytics.backtest_runs
               (user_id, strategy_id, strategy_name, start_date, end_date, symbols, timeframe,
                status, initial_capital, final_value, total_return, sharpe_ratio, max_drawdown,
                win_rate, total_trades, equity_curve, trade_history, finished_at)
           VALUES (%s, %s, %s, %s, %s, ARRAY['BTCUSDT'], '1h', 'COMPLETED', 10000, 11475,
                   0.1475, 1.8, 0.05, 0.6, 12, %s, %s, now())
        RETURNING id""",
        (
            user.id,
            strategy,
            f"{username}-sma",
            start,
            start + dt.timedelta(days=60),
            json.dumps(curve),
            json.dumps([{"entry": "40000", "exit": "41000", "pnl": "100"}] * 3),
        ),
    ).fetchone()[0]
    return Trader(user.id, username, account, filled, open_order, alert, strategy, backtest)


def build_world(conn: psycopg.Connection[Any]) -> World:
    """Seed the world into a fresh migrated database (autocommit connection)."""
    conn.execute("INSERT INTO market.exchanges (code, name) VALUES ('binance', 'Binance')")
    conn.execute(
        "INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency) "
        "VALUES ('BTC/USDT', 'Bitcoin', 'CRYPTO', 'BTC', 'USDT')"
    )
    listing = conn.execute(
        "INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, trading_rules) "
        'VALUES (1, 1, \'BTCUSDT\', \'{"tick_size": "0.01", "step_size": "0.00001", '
        '"min_notional": "5"}\') RETURNING id'
    ).fetchone()[0]
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    rows = _bars(end, BARS)
    conn.execute("SELECT system.ensure_partitions('market.candles', %s, %s)", (rows[0][0], end))
    with conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO market.candles (exchange_instrument_id, timeframe, "time", open, high, '
            "low, close, volume) VALUES (%s, '1m', %s, %s, %s, %s, %s, %s)",
            [(listing, *r) for r in rows],
        )
    last_close = Decimal(rows[-1][4])
    conn.execute("SELECT system.ensure_partitions('market.tickers', %s, %s)", (end, end))
    conn.execute(
        """INSERT INTO market.tickers (exchange_instrument_id, "time", opening_price, closing_price,
               high_price, low_price, volume, value, change_24h, change_rate_24h, bid_price, ask_price)
           VALUES (%s, %s, 40500, %s, 42000, 40000, 1234.5, 50000000, 100, 0.25, %s, %s)""",
        (listing, end, last_close, last_close - Decimal("0.5"), last_close + Decimal("0.5")),
    )
    alice = _trader(conn, listing, "alice", "40000")
    bob = _trader(conn, listing, "bob", "39000")
    admin = users.create_user(
        conn, "adam", "adam@example.com", PASSWORD, role=Role.ADMIN, hasher=FAST
    )
    readonly = users.create_user(
        conn, "rita", "rita@example.com", PASSWORD, role=Role.READONLY, hasher=FAST
    )
    system_alert = conn.execute(
        "SELECT raise_alert('CRITICAL', 'database backup failed', 'ops')"
    ).fetchone()[0]
    return World(listing, alice, bob, admin.id, readonly.id, system_alert, rows[-1][0])
