"""Alerts (seed 004 system.alerts): the user's own and the system's, and acknowledging.

Row-level security shows a user only their own alerts (admins see all, system alerts
included: those belong to nobody and may name any user's objects); users acknowledge
their own, admins any. A non-admin asking for a system alert gets 404, as for one that
does not exist.
After an acknowledgement the Redis list notifications:{user_id} that showed it is dropped
as the transaction commits (cache.invalidation) and rebuilt from PostgreSQL on its next
read.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query

from tradestore.api.context import UserContext, current_user
from tradestore.api.paging import CursorParam, LimitParam, decode_cursor, split_page
from tradestore.api.schemas import AcknowledgeOut, AlertOut, Page
from tradestore.db.errors import NotFound
from tradestore.db.query import dicts
from tradestore.identity.errors import Forbidden
from tradestore.identity.rls import Role
from tradestore.notify import alerts

__all__ = ["router"]

router = APIRouter(tags=["alerts"])

_ALERT = """
SELECT alert_id, alert_type, severity, module, message, user_id, is_acknowledged,
       acknowledged_at, acknowledged_by, created_at
  FROM system.alerts
"""
_LIST = (
    _ALERT
    + """
 WHERE (%(open)s IS NOT TRUE OR NOT is_acknowledged)
   AND (%(at)s::timestamptz IS NULL OR (created_at, alert_id) < (%(at)s, %(id)s))
 ORDER BY created_at DESC, alert_id DESC
 LIMIT %(limit)s
"""
)


@router.get("/alerts", summary="Alerts, newest first (default: not yet acknowledged)")
def list_alerts(
    state: Literal["open", "all"] = Query("open", alias="status"),
    limit: int = LimitParam,
    cursor: str | None = CursorParam,
    ctx: UserContext = Depends(current_user),
) -> Page[AlertOut]:
    after = decode_cursor(cursor)
    params = {
        "open": state == "open",
        "at": after[0] if after else None,
        "id": after[1] if after else None,
        "limit": limit + 1,
    }
    with ctx.db() as conn:
        rows = dicts(conn, _LIST, params)
    page, next_cursor = split_page(rows, limit, "created_at", "alert_id")
    return Page[AlertOut](
        items=[AlertOut.model_validate(r) for r in page], next_cursor=next_cursor, limit=limit
    )


@router.post("/alerts/{alert_id}/acknowledge", summary="Acknowledge an alert",
             responses={403: {"description": "a system alert, and you are not an admin"},
                        404: {}})  # fmt: skip
def acknowledge(alert_id: int, ctx: UserContext = Depends(current_user)) -> AcknowledgeOut:
    with ctx.db() as conn:
        found = dicts(conn, _ALERT + " WHERE alert_id = %s", (alert_id,))
        if not found:
            raise NotFound("alert", alert_id)
        owner = found[0]["user_id"]
        if owner is None and ctx.principal.role is not Role.ADMIN:
            raise Forbidden("alert_id", "system alerts are acknowledged by an admin", alert_id)
        changed = alerts.acknowledge(conn, alert_id, by=ctx.principal.username)
    return AcknowledgeOut(alert_id=alert_id, acknowledged=changed)
