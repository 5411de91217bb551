"""/api/v1/brain: picks, their approval and execution, outcomes by model and prompt, and
the user's own LLM traces and spending (the LLM half; the RAG half adds its routes on the
same router below its own section). Every query runs as the user: row-level security
shows a user their own traces, budget and pick orders; reports and picks are shared
research."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from tradestore.api.context import UserContext, current_user
from tradestore.brain import outcomes, picks, traces
from tradestore.db.query import dicts

__all__ = ["router"]

router = APIRouter(prefix="/brain", tags=["brain"])


# ============================================================ LLM: picks, outcomes, traces
class PickOrderIn(BaseModel):
    account_id: int
    quantity: Decimal | None = None


class PickDecisionIn(BaseModel):
    account_id: int
    approve: bool


class PickExecuteIn(BaseModel):
    account_id: int
    quantity: Decimal | None = None
    price: Decimal | None = None


@router.get("/picks", summary="Daily picks (of a day)")
def list_picks(
    day: date | None = None,
    limit: int = Query(100, ge=1, le=1000),
    ctx: UserContext = Depends(current_user),
) -> list[dict[str, Any]]:
    with ctx.db() as conn:
        return picks.list_picks(conn, day, limit)


@router.post("/picks/{pick_id}/request", summary="Propose a pick to one of your accounts")
def request_pick(
    pick_id: int, body: PickOrderIn, ctx: UserContext = Depends(current_user)
) -> dict[str, Any]:
    with ctx.db() as conn:
        return picks.request(conn, pick_id, body.account_id, body.quantity)


@router.post("/picks/{pick_id}/decision", summary="Approve or reject a pending pick order")
def decide_pick(
    pick_id: int, body: PickDecisionIn, ctx: UserContext = Depends(current_user)
) -> dict[str, Any]:
    with ctx.db() as conn:
        return picks.decide(conn, pick_id, body.account_id, body.approve)


@router.post("/picks/{pick_id}/execute", summary="Place an approved pick's order (idempotent)")
def execute_pick(
    pick_id: int, body: PickExecuteIn, ctx: UserContext = Depends(current_user)
) -> dict[str, int]:
    with ctx.db() as conn:
        return {
            "order_id": picks.execute(conn, pick_id, body.account_id, body.quantity, body.price)
        }


@router.get("/performance", summary="Pick outcomes by model and prompt version")
def performance(ctx: UserContext = Depends(current_user)) -> list[dict[str, Any]]:
    with ctx.db() as conn:
        return outcomes.performance(conn)


@router.get("/traces", summary="Your LLM call traces")
def list_traces(
    limit: int = Query(50, ge=1, le=500),
    status: str | None = None,
    ctx: UserContext = Depends(current_user),
) -> list[dict[str, Any]]:
    with ctx.db() as conn:
        return traces.list_traces(conn, limit=limit, status=status)


@router.get("/costs", summary="Your LLM spending today and your daily budget")
def costs_today(ctx: UserContext = Depends(current_user)) -> dict[str, Any]:
    with ctx.db() as conn:
        budget = dicts(conn, "SELECT daily_limit FROM brain.llm_budgets")
        spent = conn.execute("SELECT brain.llm_spent_today(%s)", (ctx.user_id,)).fetchone()
    return {
        "daily_limit": budget[0]["daily_limit"] if budget else None,
        "spent_today": spent[0] if spent else Decimal(0),
    }


# ============================================================ RAG: documents, search, ask (other half)
