"""GET /api/v1/kpis/latest: the newest operational KPI snapshot (seed 001 §9-D), and
GET /api/v1/kpis/history: the snapshots of a period with the alarm levels and the alarms
going on, for the dashboard's KPI view.

KPIs describe the whole installation (every user's exposure and orders), so they are for
admins. They live in the Plus module `kpi`: when it is not enabled the answer is 409 and
says how to enable it; with the module on but no snapshot taken yet, /latest is 404.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import psycopg
from fastapi import APIRouter, Depends, Query

from tradestore.api.context import UserContext, current_user, require_role
from tradestore.api.errors import ApiError
from tradestore.api.schemas import KpiOut, Out
from tradestore.db.query import dicts
from tradestore.identity.rls import Role

__all__ = ["router"]

router = APIRouter(prefix="/kpis", tags=["kpis"])


class KpiThresholdOut(Out):
    kpi: str
    raise_above: Decimal
    clear_at: Decimal
    severity: str
    enabled: bool
    customized: bool


class KpiAlarmOut(Out):
    kpi: str
    since: dt.datetime
    last_value: Decimal | None = None


class KpiHistoryOut(Out):
    snapshots: list[KpiOut]
    thresholds: list[KpiThresholdOut]
    alarms: list[KpiAlarmOut]


def _require_module(conn: psycopg.Connection[Any]) -> None:
    present = conn.execute("SELECT to_regclass('system.ops_kpi_snapshots')").fetchone()
    if not present or present[0] is None:
        raise ApiError(
            409,
            "KPIs need the Plus module kpi: run `tradestore modules enable kpi` "
            "(or add kpi to TRADESTORE_MODULES for `tradestore up`)",
            code="module_disabled",
            field="module",
            rule="must be enabled",
            value="kpi",
        )


_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "not an admin"},
    409: {"description": "the kpi module is not enabled"},
}


@router.get(
    "/latest",
    summary="Newest KPI snapshot (admins)",
    responses={**_ERRORS, 404: {"description": "no snapshot taken yet"}},
)
def latest(ctx: UserContext = Depends(current_user)) -> KpiOut:
    require_role(ctx, Role.ADMIN)
    with ctx.db() as conn:
        _require_module(conn)
        rows = dicts(conn, "SELECT * FROM system.ops_kpi_snapshots ORDER BY ts DESC LIMIT 1")
    if not rows:
        raise ApiError(
            404,
            "no KPI snapshot yet: `tradestore up` takes one every hour "
            "(or SELECT system.take_kpi_snapshot())",
            field="ops_kpi_snapshots",
            rule="must hold a snapshot",
        )
    return KpiOut.model_validate(rows[0])


@router.get("/history", summary="KPI snapshots of a period, levels and alarms (admins)",
            responses=_ERRORS)  # fmt: skip
def history(
    hours: int = Query(168, ge=1, le=24 * 90, description="how far back, in hours"),
    ctx: UserContext = Depends(current_user),
) -> KpiHistoryOut:
    require_role(ctx, Role.ADMIN)
    with ctx.db() as conn:
        _require_module(conn)
        snapshots = dicts(
            conn,
            "SELECT * FROM system.ops_kpi_snapshots WHERE ts >= now() - make_interval(hours => %s) "
            "ORDER BY ts LIMIT 5000",
            (hours,),
        )
        thresholds = dicts(conn, "SELECT * FROM system.kpi_thresholds ORDER BY kpi")
        alarms = dicts(
            conn,
            "SELECT substr(condition, 5) AS kpi, since, last_value FROM system.ops_alert_state "
            "WHERE condition LIKE 'kpi:%%' ORDER BY condition",
        )
    return KpiHistoryOut(
        snapshots=[KpiOut.model_validate(r) for r in snapshots],
        thresholds=[KpiThresholdOut.model_validate(r) for r in thresholds],
        alarms=[KpiAlarmOut.model_validate(r) for r in alarms],
    )
