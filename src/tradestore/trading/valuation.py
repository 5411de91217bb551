"""Portfolio valuation: the same SQL function serves seed 003's bithumb.portfolios, seed
004's account.portfolio and this API, so the three always agree."""

from __future__ import annotations

from typing import Any

import psycopg

from tradestore.db.errors import NotFound
from tradestore.db.query import dicts
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
