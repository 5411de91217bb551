"""Alerts stored but never judged (the database or the server stopped between storing
and judging) are judged again, or closed, by `sweep_unjudged`.

system.sweep_unjudged_inbound (inbound/sql/module_dedupe.sql) closes what cannot or must
not be judged late: unauthenticated alerts become REJECTED, and so do alerts whose
credential was revoked, or rotated after the alert arrived, or whose owner may no longer
trade; alerts older than WEBHOOK_REJUDGE_WINDOW_SECONDS become EXPIRED (a stale trading
signal never acts). The rest, authenticated and recent, are judged again here as a live
request would be, asking the owner's authentication once more under the lock of the
verdict (a credential revoked in between, or a legacy secret no longer set for the
owner, makes it REJECTED): the owner's idempotency key decides, so a key already used is
a DUPLICATE or a CONFLICT, never a second order; an accepted one has its order placed
(idempotent by key in trade.place_order as well).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.inbound.config import WebhookSettings, load_webhook_settings
from tradestore.inbound.tradingview import Facts, Owner, judge, process_alert

__all__ = ["stored_facts", "sweep_unjudged"]


async def sweep_unjudged(
    conn: psycopg.AsyncConnection[Any],
    settings: WebhookSettings | None = None,
    *,
    min_age_seconds: float = 10.0,
) -> dict[str, int]:
    """Judge or close RECEIVED alerts older than min_age_seconds (younger ones may still
    be judged by the request that stored them). Returns counts per outcome, e.g.
    {"REJECTED": 1, "EXPIRED": 2, "ACCEPTED": 1, "DUPLICATE": 1}. Safe to run from
    several processes at once (rows being judged elsewhere are skipped)."""
    settings = settings or load_webhook_settings()
    counts: dict[str, int] = {}
    try:
        async with conn.transaction():
            rows = await (
                await conn.execute(
                    "SELECT alert_id, action FROM system.sweep_unjudged_inbound("
                    "make_interval(secs => %s), make_interval(secs => %s))",
                    (min_age_seconds, settings.WEBHOOK_REJUDGE_WINDOW_SECONDS),
                )
            ).fetchall()
    except psycopg.errors.UndefinedFunction:
        return counts  # the dedupe module is not enabled
    for alert_id, action in rows:
        if action != "REJUDGE":
            counts[action] = counts.get(action, 0) + 1
            continue
        facts = await stored_facts(conn, alert_id)
        if facts is None:
            continue
        reply = await judge(conn, alert_id, facts, settings, skip_locked=True, recheck_owner=True)
        outcome = str(reply.body.get("status", "")).upper()
        counts[outcome] = counts.get(outcome, 0) + 1
        if reply.process_alert_id is not None:
            await process_alert(conn, reply.process_alert_id, reply.judged)
    return counts


async def stored_facts(conn: psycopg.AsyncConnection[Any], alert_id: int) -> Facts | None:
    """What judging the stored alert needs, read back from its row (None: judged already)."""
    row = await (
        await conn.execute(
            "SELECT payload::text, jsonb_typeof(payload) = 'object', user_id, credential_id, "
            "raw_truncated, host(remote_addr) FROM system.inbound_alerts "
            "WHERE id = %s AND disposition = 'RECEIVED'",
            (alert_id,),
        )
    ).fetchone()
    if row is None:
        return None
    text, is_object, user_id, credential_id, truncated, ip = row
    return Facts(
        value=json.loads(text, parse_float=Decimal) if is_object else None,
        is_json=bool(is_object),
        owner=Owner(int(user_id), credential_id) if user_id is not None else None,
        truncated=bool(truncated),
        ip=ip,
    )
