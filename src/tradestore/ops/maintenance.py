"""Maintenance windows: `tradestore db upgrade` tells a running `up` to refuse writes.

The flag is a session-level advisory lock held by the migrating process for as long as
the migration runs. A lock, not a row: it lives in the database every process of the
deployment shares (embedded or DATABASE_URL), and it disappears by itself if the
migrating process dies, so a crash never leaves the system refusing writes. The holder's
application_name says what it is doing, which the refusal repeats.

Write paths check it: the API answers 503 to every write request (anything but GET,
HEAD, OPTIONS) while it is held, and the scheduler skips its jobs. The API remembers that
no window was open for RECHECK_SECONDS (so a write does not pay a pool checkout and a
pg_locks query every time), and `hold` waits that long after taking the lock before its
block runs, so every running API has seen the window before the migration starts. An
open window is never remembered: writes resume with the first request after it closes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["MAINTENANCE_LOCK", "MaintenanceWindow", "active", "hold", "refuse_writes"]

# pg_advisory_lock(int, int) key: "tradestore" / "maintenance" (arbitrary, fixed).
MAINTENANCE_LOCK = (0x7452_4144, 0x4D41_494E)
_PREFIX = "tradestore-maintenance: "
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# How long an API trusts that no maintenance window is open.
RECHECK_SECONDS = 0.5


@dataclass(frozen=True)
class MaintenanceWindow:
    what: str
    since: dt.datetime | None

    def message(self) -> str:
        since = f" since {self.since:%Y-%m-%d %H:%M:%S} UTC" if self.since else ""
        return (
            f"writes are paused: {self.what} is running{since}; "
            "retry when it has finished (reads still work)"
        )


_ACTIVE_SQL = """
SELECT a.application_name, a.backend_start
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
           SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 2
 LIMIT 1
"""


def _window(row: tuple[Any, ...] | None) -> MaintenanceWindow | None:
    if row is None:
        return None
    name = str(row[0] or "")
    what = name[len(_PREFIX) :] if name.startswith(_PREFIX) else "a schema migration"
    since = row[1].astimezone(dt.UTC) if row[1] is not None else None
    return MaintenanceWindow(what, since)


def active(conn: psycopg.Connection[Any]) -> MaintenanceWindow | None:
    """The maintenance window in progress on this database, if any."""
    return _window(conn.execute(_ACTIVE_SQL, MAINTENANCE_LOCK).fetchone())


async def active_async(conn: psycopg.AsyncConnection[Any]) -> MaintenanceWindow | None:
    cur = await conn.execute(_ACTIVE_SQL, MAINTENANCE_LOCK)
    return _window(await cur.fetchone())


@contextlib.contextmanager
def hold(conninfo: str, what: str) -> Iterator[None]:
    """Hold the maintenance flag while the block runs (released on exit or if we die)."""
    conn = psycopg.connect(conninfo, autocommit=True, application_name=(_PREFIX + what)[:63])
    try:
        conn.execute("SELECT pg_advisory_lock(%s, %s)", MAINTENANCE_LOCK)
        time.sleep(RECHECK_SECONDS + 0.1)  # every running API has looked again by now
        yield
    finally:
        conn.close()


class refuse_writes:
    """ASGI middleware: 503 with a clear message to write requests during maintenance.
    Reads pass; a database that cannot be asked lets the request through to fail (or not)
    on its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._clear_until = 0.0  # monotonic time until which no window is assumed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if time.monotonic() < self._clear_until:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        window = None
        pool = getattr(request.app.state, "pool", None)
        if pool is not None:
            with contextlib.suppress(Exception):
                async with pool.connection(timeout=2) as conn:
                    window = await active_async(conn)
        if window is None:
            self._clear_until = time.monotonic() + RECHECK_SECONDS
            await self.app(scope, receive, send)
            return
        response: Response = JSONResponse(
            {"detail": window.message(), "maintenance": window.what},
            status_code=503,
            headers={"Retry-After": "30"},
        )
        await response(scope, receive, send)
