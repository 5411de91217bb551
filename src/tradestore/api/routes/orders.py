"""Orders and fills: submit, cancel, list (seed 001 §9-B paging), read, status.

Writes go through the SQL API (trade.place_order / public.cancel_order) in the user's
transaction, so the same rules hold as for every other client; after the commit the
order's Redis keys (order:{id}:status, user:{id}:active_orders) are written through.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response, status

from tradestore.api.context import UserContext, current_user
from tradestore.api.paging import CursorParam, LimitParam, decode_cursor, split_page
from tradestore.api.schemas import FillOut, OrderOut, OrderRequest, OrderStatusOut, Page
from tradestore.cache import keys
from tradestore.cache import orders as order_cache
from tradestore.cache.market import listing_id
from tradestore.db.errors import NotFound, ValidationError
from tradestore.db.query import scalar
from tradestore.trading import fills, orders

__all__ = ["router"]

router = APIRouter(tags=["orders"])

StatusFilter = Literal[
    "active", "all", "NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED"
]


def _get(conn: Any, order_id: int) -> OrderOut:
    return OrderOut.model_validate(orders.get_order(conn, order_id))


def _listing(conn: Any, body: OrderRequest) -> int:
    if body.exchange_instrument_id is not None:
        if body.symbol is not None:
            raise ValidationError(
                "symbol", "give symbol or exchange_instrument_id, not both", body.symbol
            )
        return body.exchange_instrument_id
    if body.symbol is None:
        raise ValidationError("symbol", "is required (or exchange_instrument_id)", None)
    found = listing_id(conn, body.symbol)
    if found is None:
        raise ValidationError("symbol", "must name an existing listing", body.symbol)
    return found


@router.post(
    "/orders",
    status_code=status.HTTP_201_CREATED,
    summary="Submit an order (idempotent with idempotency_key)",
    responses={
        200: {"description": "an active order with this idempotency_key already exists"},
        404: {"description": "the account or listing does not exist (or is not yours)"},
        422: {"description": "the order breaks a rule (field, rule, value say which)"},
    },
)
def submit(
    body: OrderRequest, response: Response, ctx: UserContext = Depends(current_user)
) -> OrderOut:
    with ctx.db() as conn:
        listing = _listing(conn, body)
        order_id = orders.submit_order(
            conn,
            body.account_id,
            listing,
            body.side.upper(),
            body.order_type.upper(),
            body.quantity,
            body.price,
            idempotency_key=body.idempotency_key,
            client_order_id=body.client_order_id,
            stop_price=body.stop_price,
            expires_at=body.expires_at,
            notes=body.notes,
            source="API",
        )
        order = _get(conn, order_id)
        # created_at defaults to now(), the transaction's start: an older order is the
        # one an active idempotency key already named.
        created = scalar(conn, "SELECT %s::timestamptz >= now()", (order.created_at,))
    response.headers["Location"] = f"/api/v1/orders/{order_id}"
    if not created:
        response.status_code = status.HTTP_200_OK
    return order


@router.post("/orders/{order_id}/cancel", summary="Cancel an active order (repeats are no-ops)",
             responses={404: {}, 409: {"description": "the order is already finished"}})  # fmt: skip
def cancel(order_id: int, ctx: UserContext = Depends(current_user)) -> OrderOut:
    with ctx.db() as conn:
        orders.cancel_order(conn, order_id)
        return _get(conn, order_id)


@router.get("/orders", summary="Orders, newest first (default: the active ones, seed 001 §9-B)")
def list_orders(
    account_id: int | None = Query(None, gt=0),
    status_filter: StatusFilter = Query("active", alias="status"),
    limit: int = LimitParam,
    cursor: str | None = CursorParam,
    ctx: UserContext = Depends(current_user),
) -> Page[OrderOut]:
    with ctx.db() as conn:
        found = orders.list_orders(
            conn,
            account_id,
            status=None if status_filter in ("active", "all") else status_filter,
            active_only=status_filter == "active",
            limit=limit + 1,
            before=decode_cursor(cursor),
        )
    page, next_cursor = split_page(found, limit, "created_at")
    return Page[OrderOut](
        items=[OrderOut.model_validate(o) for o in page], next_cursor=next_cursor, limit=limit
    )


@router.get("/orders/{order_id}", summary="One order", responses={404: {}})
def get_order(order_id: int, ctx: UserContext = Depends(current_user)) -> OrderOut:
    with ctx.db() as conn:
        return _get(conn, order_id)


@router.get("/orders/{order_id}/status", summary="An order's status, from Redis when cached",
            responses={404: {}})  # fmt: skip
def order_status(order_id: int, ctx: UserContext = Depends(current_user)) -> OrderStatusOut:
    cache = ctx.cache
    with ctx.db() as conn:  # the user's transaction even on a hit: act_as checks the session
        entry = keys.get_order_status(cache, order_id)
        cached = entry is not None
        if cached:
            cache.record(True)
        else:
            entry = order_cache.order_status(cache, conn, order_id)  # PostgreSQL, re-cached
    # The cached entry is shared and carries its owner: another user's order is a 404,
    # exactly as row-level security answers in SQL.
    if entry is None or entry.user_id != ctx.user_id:
        raise NotFound("order", order_id)
    return OrderStatusOut(**entry.model_dump(exclude={"user_id"}), cached=cached)


@router.get("/fills", tags=["fills"], summary="Fills (executions), newest first")
def list_fills(
    account_id: int | None = Query(None, gt=0),
    order_id: int | None = Query(None, gt=0),
    limit: int = LimitParam,
    cursor: str | None = CursorParam,
    ctx: UserContext = Depends(current_user),
) -> Page[FillOut]:
    with ctx.db() as conn:
        found = fills.list_executions(
            conn, account_id, order_id=order_id, limit=limit + 1, before=decode_cursor(cursor)
        )
    page, next_cursor = split_page(found, limit, "executed_at")
    return Page[FillOut](
        items=[FillOut.model_validate(f) for f in page], next_cursor=next_cursor, limit=limit
    )
