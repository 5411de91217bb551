"""GET /api/v1/kpis/latest: the newest operational KPI snapshot (seed 001 §9-D).

KPIs describe the whole installation (every user's exposure and orders), so they are for
admins. They live in the Plus module `kpi`: when it is not enabled the answer is 409 and
says how to enable it; with the module on but no snapshot taken yet, 404.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tradestore.api.context import UserContext, current_user, require_role
from tradestore.api.errors import ApiError
from tradestore.api.schemas import KpiOut
from tradestore.db.query import dicts
from tradestore.identity.rls import Role

__all__ = ["router"]

router = APIRouter(prefix="/kpis", tags=["kpis"])


@router.get(
    "/latest",
    summary="Newest KPI snapshot (admins)",
    responses={
        403: {"description": "not an admin"},
        404: {"description": "no snapshot taken yet"},
        409: {"description": "the kpi module is not enabled"},
    },
)
def latest(ctx: UserContext = Depends(current_user)) -> KpiOut:
    require_role(ctx, Role.ADMIN)
    with ctx.db() as conn:
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
