"""Accounts, portfolio valuation, positions, balances and the ledger of the user.

Everything runs in the user's transaction (ctx.db()), so row-level security decides
what exists: another user's account id is answered like an id that names nothing (404).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from tradestore.api.context import UserContext, current_user, prefetch
from tradestore.api.paging import CursorParam, LimitParam, decode_cursor, encode_cursor
from tradestore.api.schemas import (
    AccountOut,
    AssetBalanceOut,
    BalancesOut,
    LedgerEntryOut,
    LedgerProblemOut,
    LedgerVerifyOut,
    Page,
    PortfolioOut,
    PositionOut,
    ValuationOut,
)
from tradestore.cache import keys
from tradestore.db.errors import NotFound
from tradestore.db.query import dicts
from tradestore.trading import ledger

__all__ = ["router"]

router = APIRouter(tags=["portfolio"])

_ACCOUNTS = """
SELECT a.id, a.name, x.code AS exchange, a.base_currency, a.strategy_type, a.initial_capital,
       a.is_active, a.created_at, a.trading_mode
  FROM account.accounts a LEFT JOIN market.exchanges x ON x.id = a.exchange_id
 WHERE (%(account)s::bigint IS NULL OR a.id = %(account)s)
 ORDER BY a.id
"""

# The valuation of seed 003's portfolios and seed 004's portfolio (trading/sql/valuation.sql).
_VALUATIONS = """
SELECT a.id AS account_id, a.name AS account_name, a.initial_capital, v.base_currency,
       v.cash_balance, v.reserved_balance, v.available_balance, v.invested_balance,
       v.positions_value AS current_value, v.other_value, v.total_value, v.unrealized_pnl,
       v.realized_pnl, v.unvalued_currencies
  FROM account.accounts a CROSS JOIN LATERAL account.account_valuation(a.id) v
 WHERE (%(account)s::bigint IS NULL OR a.id = %(account)s)
 ORDER BY a.id
"""


def _valuation(row: dict[str, Any]) -> ValuationOut:
    initial = row["initial_capital"]
    total = row["total_value"]
    row["total_pnl"] = row["unrealized_pnl"] + row["realized_pnl"]
    row["return_pct"] = (
        ((total / initial - 1) * 100).quantize(Decimal("0.0001")) if initial else None
    )
    row["unvalued_currencies"] = row["unvalued_currencies"] or []
    return ValuationOut.model_validate(row)


def _own_account(conn: Any, account_id: int) -> dict[str, Any]:
    found = dicts(conn, _ACCOUNTS, {"account": account_id})
    if not found:
        raise NotFound("account", account_id)
    return found[0]


@router.get("/accounts", summary="The user's accounts")
def list_accounts(ctx: UserContext = Depends(current_user)) -> list[AccountOut]:
    with ctx.db() as conn:
        return [AccountOut.model_validate(r) for r in dicts(conn, _ACCOUNTS, {"account": None})]


@router.get("/accounts/{account_id}", summary="One account", responses={404: {}})
def get_account(account_id: int, ctx: UserContext = Depends(current_user)) -> AccountOut:
    with ctx.db() as conn:
        return AccountOut.model_validate(_own_account(conn, account_id))


@router.get("/portfolio", summary="Value and PnL of every account of the user",
            response_model=PortfolioOut)  # fmt: skip
@prefetch(keys.PORTFOLIO_KEY_TEMPLATE)
async def portfolio(ctx: UserContext = Depends(current_user)) -> Response:
    """Served from user:{id}:portfolio:{role} when cached: the key is the authenticated
    user's own (and role's), so no other user's valuation can be answered; their orders,
    ledger entries and accounts drop it at commit (cache.invalidation), prices within
    keys.PORTFOLIO_TTL seconds. Otherwise valued in their transaction and cached. The key
    is read in the request's one Redis round trip (`prefetch`)."""
    key = keys.portfolio_key(ctx.user_id, ctx.principal.role.value)
    body = await ctx.get(key)
    ctx.cache.record(body is not None)
    if body is None:
        body = await run_in_threadpool(_portfolio_body, ctx, key)
    return Response(body, 200, media_type="application/json")


def _portfolio_body(ctx: UserContext, key: str) -> str:
    with ctx.db() as conn:
        rows = dicts(conn, _VALUATIONS, {"account": None})
    body = PortfolioOut(accounts=[_valuation(r) for r in rows]).model_dump_json()
    ctx.cache.write(lambda r: r.set(key, body, ex=keys.PORTFOLIO_TTL), [key], f"SET {key}")
    return body


@router.get("/accounts/{account_id}/portfolio", summary="Value and PnL of one account",
            responses={404: {}})  # fmt: skip
def account_portfolio(account_id: int, ctx: UserContext = Depends(current_user)) -> ValuationOut:
    with ctx.db() as conn:
        rows = dicts(conn, _VALUATIONS, {"account": account_id})
    if not rows:
        raise NotFound("account", account_id)
    return _valuation(rows[0])


# trading.positions' query, with the market symbol (exchange:symbol) the market routes take.
_POSITIONS = """
SELECT p.id, p.account_id, p.exchange_instrument_id, x.code || ':' || ei.exchange_symbol AS symbol,
       CASE WHEN p.quantity > 0 THEN 'LONG' WHEN p.quantity < 0 THEN 'SHORT' ELSE 'FLAT' END AS side,
       p.quantity, p.avg_entry_price, p.realized_pnl, p.total_fees, v.current_price, v.cost_basis,
       v.market_value, v.unrealized_pnl, v.quote_currency, p.opened_at, p.closed_at
  FROM trade.positions p
  JOIN trade.position_valuations v ON v.position_id = p.id
  JOIN market.exchange_instruments ei ON ei.id = p.exchange_instrument_id
  JOIN market.exchanges x ON x.id = ei.exchange_id
 WHERE (%(account)s::bigint IS NULL OR p.account_id = %(account)s)
   AND (%(all)s OR p.quantity <> 0)
 ORDER BY p.account_id, x.code, ei.exchange_symbol
"""


@router.get("/positions", summary="Open positions valued at the latest price")
def list_positions(
    account_id: int | None = Query(None, gt=0),
    include_flat: bool = Query(False, description="also positions closed to zero"),
    ctx: UserContext = Depends(current_user),
) -> list[PositionOut]:
    with ctx.db() as conn:
        if account_id is not None:
            _own_account(conn, account_id)
        rows = dicts(conn, _POSITIONS, {"account": account_id, "all": include_flat})
    return [PositionOut.model_validate(r) for r in rows]


@router.get("/accounts/{account_id}/balances", summary="Cash per currency and holdings",
            responses={404: {}})  # fmt: skip
def balances(account_id: int, ctx: UserContext = Depends(current_user)) -> BalancesOut:
    with ctx.db() as conn:
        _own_account(conn, account_id)
        cash = ledger.balances(conn, account_id)
        assets = ledger.asset_balances(conn, account_id)
    return BalancesOut(
        account_id=account_id,
        cash=cash,
        assets=[AssetBalanceOut.model_validate(a) for a in assets],
    )


_LEDGER = """
SELECT t.id, t.chain_seq, t.transaction_type, t.currency, t.amount, t.related_order_id,
       t.related_execution_id, t.description, t."timestamp", encode(t.row_hash, 'hex') AS row_hash
  FROM account.transactions t
 WHERE t.account_id = %(account)s
   AND (%(currency)s::text IS NULL OR t.currency = upper(%(currency)s))
   AND (%(after)s::bigint IS NULL OR t.chain_seq < %(after)s)
 ORDER BY t.chain_seq DESC LIMIT %(limit)s
"""


@router.get("/accounts/{account_id}/ledger", summary="Ledger rows, newest first (keyset paging)",
            responses={404: {}})  # fmt: skip
def ledger_entries(
    account_id: int,
    currency: str | None = Query(None, min_length=1, max_length=20, pattern=r"^[A-Za-z0-9._-]+$"),
    limit: int = LimitParam,
    cursor: str | None = CursorParam,
    ctx: UserContext = Depends(current_user),
) -> Page[LedgerEntryOut]:
    after = decode_cursor(cursor, timed=False)
    with ctx.db() as conn:
        _own_account(conn, account_id)
        rows = dicts(
            conn,
            _LEDGER,
            {
                "account": account_id,
                "currency": currency,
                "after": after[0] if after else None,
                "limit": limit + 1,
            },
        )
    page = rows[:limit]
    next_cursor = (
        encode_cursor(page[-1]["chain_seq"], page[-1]["id"]) if len(rows) > limit else None
    )
    return Page[LedgerEntryOut](
        items=[LedgerEntryOut.model_validate(r) for r in page], next_cursor=next_cursor, limit=limit
    )


@router.get("/accounts/{account_id}/ledger/verify",
            summary="Recompute the ledger's hash chain and compare it with its head",
            responses={404: {}})  # fmt: skip
def ledger_verify(account_id: int, ctx: UserContext = Depends(current_user)) -> LedgerVerifyOut:
    with ctx.db() as conn:
        _own_account(conn, account_id)  # 404 unless it is the user's
    # The chain heads are the engine's bookkeeping, not granted to users: having proved
    # the account is theirs, check it as the application, for this account only.
    with ctx.app_db() as conn:
        result = ledger.verify(conn, account_id)
    head_seq, head_hash = result.heads.get(account_id, (None, None))
    return LedgerVerifyOut(
        account_id=account_id,
        ok=result.ok,
        rows_checked=result.rows_checked,
        head_seq=head_seq,
        head_hash=head_hash,
        problems=[LedgerProblemOut.model_validate(p) for p in result.problems],
    )
