"""GET /health: the database, Redis and the background workers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tradestore.config import Settings

__all__ = ["check_database", "check_redis", "check_workers", "router"]

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = 3.0
# A worker is alive when its last heartbeat is at most this many heartbeat intervals old.
MISSED_BEATS = 3
DEFAULT_HEARTBEAT_SECONDS = 15.0
# What the services `up` runs from the configuration (tradestore.ops.fleet) report.
SERVICE_FIELDS = ("service", "service_state", "last_message", "lag_ms", "restarts", "last_error")


async def check_database(request: Request) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            async with request.app.state.pool.connection() as conn:
                row = await (
                    await conn.execute("SELECT current_setting('server_version')")
                ).fetchone()
    except (TimeoutError, psycopg.Error, OSError) as exc:
        return {"status": "down", "detail": str(exc) or type(exc).__name__}
    return {
        "status": "ok",
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "server_version": row[0] if row else None,
    }


async def check_redis(settings: Settings, cache: Any = None) -> dict[str, Any]:
    if not settings.REDIS_URL:
        if cache is None:
            return {
                "status": "not_configured",
                "detail": "REDIS_URL is not set; no Redis is checked (the cache layer is optional)",
            }
        # The embedded server under TRADESTORE_HOME (unix socket).
        started = time.perf_counter()
        cache.reset()
        up = await asyncio.to_thread(cache.ping)
        if not up:
            return {
                "status": "down",
                "embedded": True,
                "detail": "the embedded redis does not answer",
            }
        return {
            "status": "ok",
            "embedded": True,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    import redis.asyncio as redis

    client = redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT, socket_timeout=CHECK_TIMEOUT
    )
    started = time.perf_counter()
    try:
        await client.ping()
    except (redis.RedisError, OSError) as exc:
        return {"status": "down", "detail": str(exc) or type(exc).__name__}
    finally:
        await client.aclose()
    return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


_WORKERS_SQL = """
SELECT worker_id, kind, state, started_at, last_seen_at,
       extract(epoch FROM now() - last_seen_at)::float8 AS age_s, info
  FROM system.worker_heartbeats
 WHERE last_seen_at > now() - interval '1 day'
 ORDER BY kind, last_seen_at DESC
"""
_OUTBOX_SQL = """
SELECT count(*) FILTER (WHERE coalesce(send_after, created_at) <= now()),
       extract(epoch FROM now() - min(coalesce(send_after, created_at))
                              FILTER (WHERE coalesce(send_after, created_at) <= now()))::float8,
       count(*)
  FROM system.notification_outbox WHERE status = 'PENDING'
"""


def _token_set(settings: Settings) -> bool:
    token = getattr(settings, "TELEGRAM_BOT_TOKEN", None)
    return token is not None and bool(token.get_secret_value())


async def check_workers(request: Request) -> dict[str, Any]:
    """Workers seen within a day (alive = a recent heartbeat) and the outbox backlog."""
    async with asyncio.timeout(CHECK_TIMEOUT), request.app.state.pool.connection() as conn:
        rows = await (await conn.execute(_WORKERS_SQL)).fetchall()
        due, oldest, pending = (await (await conn.execute(_OUTBOX_SQL)).fetchone()) or (0, None, 0)
        failed = (
            await (
                await conn.execute(
                    "SELECT count(*) FROM system.notification_outbox WHERE status = 'FAILED'"
                )
            ).fetchone()
        )[0]
    workers = []
    for worker_id, kind, state, started_at, last_seen_at, age, info in rows:
        beat = float((info or {}).get("heartbeat_seconds") or DEFAULT_HEARTBEAT_SECONDS)
        workers.append(
            {
                "worker_id": worker_id,
                "kind": kind,
                "state": state,
                "alive": state == "running" and age <= MISSED_BEATS * beat,
                "started_at": started_at.isoformat(),
                "last_seen_at": last_seen_at.isoformat(),
                "seconds_since_heartbeat": round(age, 1),
                "sent": (info or {}).get("sent"),
                "failed": (info or {}).get("failed"),
            }
        )
        if (info or {}).get("service"):  # a runner, collector, router or paper exchange of `up`
            workers[-1].update({k: info.get(k) for k in SERVICE_FIELDS})
    notify_alive = any(w["alive"] for w in workers if w["kind"] == "notify")
    notify: dict[str, Any] = {}
    if not notify_alive and not _token_set(request.app.state.settings):
        # `up` does not start the worker without a bot token: say so, not just "down".
        notify["reason"] = (
            "TELEGRAM_BOT_TOKEN is not set: the notify worker does not start and queued "
            "messages are not sent"
        )
    return {
        "notify": {
            **notify,
            "status": "ok" if notify_alive else ("idle" if not due else "down"),
            "alive_workers": sum(1 for w in workers if w["kind"] == "notify" and w["alive"]),
            "outbox": {
                "pending": pending,
                "due": due,
                "failed": failed,
                "oldest_due_seconds": None if oldest is None else round(oldest, 1),
            },
        },
        "workers": workers,
    }


@router.get("/health", summary="Database, Redis and worker status")
async def health(request: Request) -> JSONResponse:
    database, redis_status = await asyncio.gather(
        check_database(request),
        check_redis(request.app.state.settings, getattr(request.app.state, "cache", None)),
    )
    body: dict[str, Any] = {"database": database, "redis": redis_status}
    if database["status"] == "ok":
        try:
            body["workers"] = await check_workers(request)
        except (TimeoutError, psycopg.Error) as exc:
            body["workers"] = {"status": "unknown", "detail": str(exc) or type(exc).__name__}
    else:
        body["workers"] = {"status": "unknown", "detail": "the database is down"}
    problems = [name for name in ("redis",) if body[name]["status"] == "down"]
    notify = body["workers"].get("notify", {}) if isinstance(body["workers"], dict) else {}
    if notify.get("status") == "down":
        why = notify.get("reason") or "no worker is alive"
        problems.append(f"notify worker (messages are due and {why})")
    if database["status"] != "ok":
        body["status"] = "down"
        return JSONResponse(body, status_code=503)
    body["status"] = "degraded" if problems else "ok"
    if problems:
        body["problems"] = problems
    return JSONResponse(body)
