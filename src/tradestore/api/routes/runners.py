"""Live strategy runners (docs/live.md): list them, halt and resume one, and the global
trading halt.

GET /runners reads analytics.strategy_runners as the caller, so row-level security shows
a user the runners of their own accounts (admins all of them). Halting and resuming go
through the SQL functions the CLI and the runner use (analytics.halt_runner,
trade.resume_trading, trade.halt_trading), so the same rules, order cancels and alerts
apply. A user's role may read runners but not write them (only the engine and admins do),
so for an owner the route first proves, in the owner's own transaction, that the runner is
theirs (another user's runner is a 404), then runs the function as the application. An
owner cannot resume a runner the global halt stopped while that halt is on: that is an
admin's call (POST /trading/resume).
"""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter, Body, Depends

from tradestore.api.context import UserContext, current_user, require_role
from tradestore.api.errors import ApiError
from tradestore.api.schemas import HaltRequest, RunnerActionOut, RunnerOut, TradingHaltOut
from tradestore.db.query import dicts, scalar
from tradestore.identity.rls import Role
from tradestore.strategy.live import store

__all__ = ["router"]

router = APIRouter(tags=["runners"])

# Who may halt and resume: the owners of accounts (traders) and admins.
_OPERATORS = (Role.TRADER, Role.ADMIN)
_ONE: dict[int | str, dict[str, Any]] = {
    403: {"description": "your role may not halt or resume runners"},
    404: {},
}
_ADMIN: dict[int | str, dict[str, Any]] = {403: {"description": "not an admin"}}


def _runner(conn: psycopg.Connection[Any], runner_id: int) -> RunnerOut:
    return RunnerOut.model_validate(store.get_runner(conn, runner_id))


def _halt_state(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    rows = dicts(conn, "SELECT halted, reason, changed_at FROM trade.trading_halt")
    return rows[0]


@router.get("/runners", summary="Live strategy runners of your accounts (admins: all)")
def list_runners(ctx: UserContext = Depends(current_user)) -> list[RunnerOut]:
    with ctx.db() as conn:
        return [RunnerOut.model_validate(r) for r in store.list_runners(conn)]


@router.get("/runners/{runner_id}", summary="One runner", responses={404: {}})
def get_runner(runner_id: int, ctx: UserContext = Depends(current_user)) -> RunnerOut:
    with ctx.db() as conn:
        return _runner(conn, runner_id)


@router.post("/runners/{runner_id}/halt", responses=_ONE,
             summary="Halt a runner: state HALTED, its open orders canceled, an alert")  # fmt: skip
def halt_runner(runner_id: int, ctx: UserContext = Depends(current_user)) -> RunnerActionOut:
    require_role(ctx, *_OPERATORS)
    with ctx.db() as conn:
        before = _runner(conn, runner_id)  # 404 unless the caller sees it
    if before.state == "HALTED":
        return RunnerActionOut(runner=before, changed=False)
    message = f"halted by {ctx.principal.username}"
    with ctx.app_db() as conn:
        canceled = scalar(
            conn, "SELECT analytics.halt_runner(%s, 'manual', %s)", (runner_id, message)
        )
    with ctx.db() as conn:
        return RunnerActionOut(runner=_runner(conn, runner_id), changed=True,
                               canceled_orders=int(canceled))  # fmt: skip


@router.post("/runners/{runner_id}/resume", summary="Resume a halted runner",
             responses={**_ONE, 409: {"description": "halted by the global halt, still on"}})  # fmt: skip
def resume_runner(runner_id: int, ctx: UserContext = Depends(current_user)) -> RunnerActionOut:
    require_role(ctx, *_OPERATORS)
    with ctx.db() as conn:
        before = _runner(conn, runner_id)
        halt = _halt_state(conn)
    if before.state != "HALTED":
        return RunnerActionOut(runner=before, changed=False)
    if before.halted_by == "halt" and halt["halted"] and ctx.principal.role is not Role.ADMIN:
        raise ApiError(
            409,
            "runner: stopped by the global trading halt, which is still on; "
            "an admin resumes trading",
            code="conflict",
            field="runner",
            rule="an owner cannot resume a runner the global halt stopped while it is on",
            value=runner_id,
        )
    with ctx.app_db() as conn:
        resumed = store.resume(conn, runner_id)
    with ctx.db() as conn:
        return RunnerActionOut(runner=_runner(conn, runner_id), changed=resumed > 0)


@router.get("/trading/halt", summary="Whether trading is halted (the global halt)")
def trading_halt(ctx: UserContext = Depends(current_user)) -> TradingHaltOut:
    with ctx.db() as conn:
        return TradingHaltOut.model_validate(_halt_state(conn))


@router.post("/trading/halt", responses=_ADMIN,
             summary="Halt all trading (admins): every runner HALTED, every open order canceled")  # fmt: skip
def halt_trading(
    body: HaltRequest | None = Body(None), ctx: UserContext = Depends(current_user)
) -> TradingHaltOut:
    require_role(ctx, Role.ADMIN)
    with ctx.db() as conn:
        canceled = store.halt(conn, body.reason if body else None)
        return TradingHaltOut(**_halt_state(conn), canceled_orders=canceled)


@router.post("/trading/resume", responses=_ADMIN,
             summary="Lift the global halt (admins); the runners it stopped run again")  # fmt: skip
def resume_trading(ctx: UserContext = Depends(current_user)) -> TradingHaltOut:
    require_role(ctx, Role.ADMIN)
    with ctx.db() as conn:
        resumed = store.resume(conn, None)
        return TradingHaltOut(**_halt_state(conn), resumed_runners=resumed)
