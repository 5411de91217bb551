"""Portfolio valuation: the same SQL function serves seed 003's bithumb.portfolios, seed
004's account.portfolio and this API, so the three always agree."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from tradestore.db.errors import NotFound
from tradestore.db.query import dicts, scalar
from tradestore.trading.models import Valuation


def portfolio_valuation(conn: psycopg.Connection[Any], account_id: int) -> Valuation:
    found = dicts(
        conn,
        """SELECT a.id AS account_id, v.base_currency, v.cash_balance, v.reserved_balance,
                  v.available_balance, v.invested_balance, v.positions_value, v.other_value,
                  v.total_value, v.unrealized_pnl, v.realized_pnl, v.unvalued_currencies
             FROM account.accounts a CROSS JOIN LATERAL account.account_valuation(a.id) v
            WHERE a.id = %s""",
        (account_id,),
    )
    if not found:
        raise NotFound("account", account_id)
    return Valuation(**found[0])


def snapshot_equity(conn: psycopg.Connection[Any], at: dt.datetime | None = None) -> int:
    """Write one equity snapshot (account.account_valuation now) for every active account,
    at `at` (default now); returns how many were written. The scheduler runs it at each
    UTC day's start: the daily-loss limit starts the day from it and seed 003's portfolio
    returns, drawdown and Sharpe ratio are computed from the daily series. A snapshot
    already taken at that time is kept."""
    return int(
        scalar(
            conn,
            """WITH made AS (
                   INSERT INTO account.equity_snapshots
                          (account_id, ts, total_value, cash_balance, invested_value)
                   SELECT a.id, coalesce(%s, now()), v.total_value, v.cash_balance,
                          v.invested_balance
                     FROM account.accounts a CROSS JOIN LATERAL account.account_valuation(a.id) v
                    WHERE a.is_active AND v.total_value IS NOT NULL
                   ON CONFLICT (account_id, ts) DO NOTHING RETURNING 1)
               SELECT count(*) FROM made""",
            (at,),
        )
    )
