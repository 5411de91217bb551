"""The Telegram outbox worker (seed 001 §3, §6): `tradestore worker notify`.

One asyncio task loop per worker process:

1. claim up to NOTIFY_BATCH_SIZE due PENDING rows in one statement
   (system.claim_notifications: FOR UPDATE SKIP LOCKED, then a lease in
   claimed_by/claimed_at, so several workers run side by side and a killed worker's rows
   are taken over once its lease runs out);
2. send them with sendMessage, one sequential stream per chat (order kept, ~1 msg/s),
   chats in parallel under the 30 msg/s overall limit; long messages go out in parts;
3. write the outcomes back in one statement per flush (system.record_notification_results),
   at least every NOTIFY_FLUSH_SECONDS, and renew the lease of rows still held;
4. when nothing is due, sleep until the next row is due, a NOTIFY on channel
   `tradestore_outbox` arrives (an insert into the outbox), or NOTIFY_POLL_SECONDS pass.

Delivery is at-least-once: a message is marked SENT after Telegram accepted it, so a crash
(or a timeout whose request did arrive) between the two sends it again.

The worker connects as the least-privilege role `tradestore_notifier` (SET ROLE), which may
read the outbox and update its delivery columns only (seed 001 §10); its heartbeat goes
through the SECURITY DEFINER function system.worker_heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from tradestore.config import Settings, get_settings
from tradestore.db.connect import session_conninfo
from tradestore.db.errors import ValidationError
from tradestore.notify.config import NotifySettings, load_notify_settings
from tradestore.notify.ratelimit import RateLimiter
from tradestore.notify.telegram import TelegramClient, format_message, redact, split_message

__all__ = ["CHANNEL", "NotifyWorker", "WorkerStats", "main", "run_worker", "service"]

log = logging.getLogger(__name__)

CHANNEL = "tradestore_outbox"
KIND = "notify"
# When rows are due but none could be claimed (another worker holds their chat), look
# again after this long rather than spinning.
CONTENTION_WAIT = 1.0
RECONNECT_MAX_WAIT = 30.0


@dataclass(frozen=True)
class Claimed:
    id: int
    chat_id: int
    severity: str
    title: str
    message: str
    fail_count: int
    parts_sent: int
    created_at: datetime


@dataclass
class WorkerStats:
    batches: int = 0
    claimed: int = 0
    sent: int = 0
    parts: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    released: int = 0
    reconnects: int = 0
    started_at: str = field(default_factory=lambda: datetime.now().astimezone().isoformat())

    def count(self, outcome: str) -> None:
        name = {
            "sent": "sent",
            "retry": "retried",
            "failed": "failed",
            "deferred": "deferred",
            "release": "released",
        }[outcome]
        setattr(self, name, getattr(self, name) + 1)


class _RedactToken(logging.Filter):
    """httpx logs request URLs, and the Bot API URL carries the token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = redact(message, self.token), ()
        return True


class NotifyWorker:
    def __init__(
        self,
        conninfo: str,
        settings: Settings,
        options: NotifySettings | None = None,
        *,
        worker_id: str | None = None,
    ) -> None:
        if (
            settings.TELEGRAM_BOT_TOKEN is None
            or not settings.TELEGRAM_BOT_TOKEN.get_secret_value()
        ):
            raise ValidationError(
                "TELEGRAM_BOT_TOKEN", "must be set in the environment (never in the database)", None
            )
        self.conninfo = conninfo
        self.settings = settings
        self.options = options or load_notify_settings()
        self.worker_id = (
            worker_id
            or self.options.NOTIFY_WORKER_ID
            or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        )
        self.stats = WorkerStats()
        self._token = settings.TELEGRAM_BOT_TOKEN.get_secret_value()
        o = self.options
        self._limiter = RateLimiter(o.NOTIFY_CHAT_RATE, o.NOTIFY_GROUP_RATE, o.NOTIFY_GLOBAL_RATE)
        self._in_flight = asyncio.Semaphore(o.NOTIFY_MAX_IN_FLIGHT)
        self._lease = f"{o.NOTIFY_LEASE_SECONDS} seconds"
        slowest = min((r for r in (o.NOTIFY_CHAT_RATE, o.NOTIFY_GROUP_RATE) if r > 0), default=0.0)
        # Rows per chat in one claim: what the chat's rate lets go out in half a lease.
        self._per_chat = max(1, int(o.NOTIFY_LEASE_SECONDS * slowest / 2)) if slowest else None

    # ------------------------------------------------------------------ connections
    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        o = self.options
        conn = await psycopg.AsyncConnection.connect(
            session_conninfo(
                o.NOTIFY_DATABASE_URL or self.conninfo,
                self.settings,
                application_name="tradestore-notify",
            ),
            autocommit=True,
        )
        if o.NOTIFY_SET_ROLE and not o.NOTIFY_DATABASE_URL and o.NOTIFY_DB_ROLE:
            await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(o.NOTIFY_DB_ROLE)))
        return conn

    # ------------------------------------------------------------------ main loop
    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; reconnects after losing the database."""
        httpx_log = logging.getLogger("httpx")
        redactor = _RedactToken(self._token)
        httpx_log.addFilter(redactor)
        wait = 1.0
        try:
            while not stop.is_set():
                try:
                    await self._session(stop)
                    wait = 1.0
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    self.stats.reconnects += 1
                    log.warning(
                        "notify worker %s lost the database (%s); retrying in %.0fs",
                        self.worker_id,
                        exc,
                        wait,
                    )
                    await _wait_any(stop, None, wait)
                    wait = min(wait * 2, RECONNECT_MAX_WAIT)
        finally:
            httpx_log.removeFilter(redactor)

    async def _session(self, stop: asyncio.Event) -> None:
        db = await self._connect()
        listen = await self._connect()
        try:
            await listen.execute(f"LISTEN {CHANNEL}")
            wake = asyncio.Event()
            monitors = [
                asyncio.create_task(self._listen(listen, wake), name="notify-listen"),
                asyncio.create_task(self._heartbeats(db, stop), name="notify-heartbeat"),
            ]
            log.info(
                "notify worker %s started (batch %d, lease %ss)",
                self.worker_id,
                self.options.NOTIFY_BATCH_SIZE,
                self.options.NOTIFY_LEASE_SECONDS,
            )
            try:
                timeout = httpx.Timeout(self.options.NOTIFY_HTTP_TIMEOUT)
                limits = httpx.Limits(
                    max_connections=self.options.NOTIFY_MAX_IN_FLIGHT,
                    max_keepalive_connections=self.options.NOTIFY_MAX_IN_FLIGHT,
                )
                async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
                    client = TelegramClient(http, self._token, self.options.TELEGRAM_API_BASE)
                    while not stop.is_set():
                        _raise_if_failed(monitors)
                        wake.clear()
                        rows = await self._claim(db)
                        if rows:
                            await self._dispatch(db, client, rows, stop)
                            continue
                        await _wait_any(stop, wake, await self._idle_delay(db), monitors)
                await self._beat(db, "stopped")
            finally:
                for task in monitors:
                    task.cancel()
                await asyncio.gather(*monitors, return_exceptions=True)
        finally:
            await listen.close()
            await db.close()

    async def _listen(self, conn: psycopg.AsyncConnection[Any], wake: asyncio.Event) -> None:
        async for _ in conn.notifies():
            wake.set()

    async def _heartbeats(self, db: psycopg.AsyncConnection[Any], stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._beat(db, "running")
            await _wait_any(stop, None, self.options.NOTIFY_HEARTBEAT_SECONDS)

    async def _beat(self, db: psycopg.AsyncConnection[Any], state: str) -> None:
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "heartbeat_seconds": self.options.NOTIFY_HEARTBEAT_SECONDS,
            **asdict(self.stats),
        }
        await db.execute(
            "SELECT system.worker_heartbeat(%s, %s, %s, %s)",
            (self.worker_id, KIND, state, Jsonb(info)),
        )

    async def _claim(self, db: psycopg.AsyncConnection[Any]) -> list[Claimed]:
        async with db.cursor(row_factory=class_row(Claimed)) as cur:
            await cur.execute(
                "SELECT id, chat_id, severity::text, title, message, fail_count, parts_sent, created_at "
                "FROM system.claim_notifications(%s, %s, %s::interval, %s)",
                (self.worker_id, self.options.NOTIFY_BATCH_SIZE, self._lease, self._per_chat),
            )
            rows = await cur.fetchall()
        if rows:
            self.stats.batches += 1
            self.stats.claimed += len(rows)
        return rows

    async def _idle_delay(self, db: psycopg.AsyncConnection[Any]) -> float:
        row = await (
            await db.execute("SELECT system.next_notification_due(%s::interval)", (self._lease,))
        ).fetchone()
        poll = self.options.NOTIFY_POLL_SECONDS
        due = row[0] if row else None
        if due is None:
            return poll
        if due <= 0:
            return min(poll, CONTENTION_WAIT)
        return min(poll, due + 0.01)

    # ------------------------------------------------------------------ sending
    async def _dispatch(
        self,
        db: psycopg.AsyncConnection[Any],
        client: TelegramClient,
        rows: list[Claimed],
        stop: asyncio.Event,
    ) -> None:
        results: list[dict[str, Any]] = []
        by_chat: dict[int, list[Claimed]] = defaultdict(list)
        for row in rows:
            by_chat[row.chat_id].append(row)
        done = asyncio.Event()
        flusher = asyncio.create_task(self._flush_loop(db, results, done))
        try:
            await asyncio.gather(
                *(self._send_chat(client, items, results, stop) for items in by_chat.values())
            )
        finally:
            done.set()
            await flusher  # writes whatever is left, or raises what the last flush raised

    async def _flush_loop(
        self, db: psycopg.AsyncConnection[Any], results: list[dict[str, Any]], done: asyncio.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        renew_every = self.options.NOTIFY_LEASE_SECONDS / 3
        last_renew = loop.time()
        while not done.is_set():
            await _wait_any(done, None, self.options.NOTIFY_FLUSH_SECONDS)
            await self._flush(db, results)
            if loop.time() - last_renew >= renew_every and not done.is_set():
                await db.execute("SELECT system.renew_notification_claims(%s)", (self.worker_id,))
                last_renew = loop.time()
        await self._flush(db, results)  # what arrived while the last flush was running

    async def _flush(self, db: psycopg.AsyncConnection[Any], results: list[dict[str, Any]]) -> None:
        if not results:
            return
        batch = results[:]
        del results[:]
        await db.execute(
            "SELECT system.record_notification_results(%s, %s, %s)",
            (self.worker_id, Jsonb(batch), self.options.NOTIFY_MAX_FAILURES),
        )
        for item in batch:
            self.stats.count(item["outcome"])

    async def _send_chat(
        self,
        client: TelegramClient,
        items: list[Claimed],
        results: list[dict[str, Any]],
        stop: asyncio.Event,
    ) -> None:
        for index, row in enumerate(items):
            if stop.is_set():
                results.extend({"id": r.id, "outcome": "release"} for r in items[index:])
                return
            outcome = await self._send_row(client, row)
            results.append(outcome)
            if outcome["outcome"] == "deferred":
                # Telegram said 429 for this chat: hold back the rest of it as well.
                results.extend(
                    {"id": r.id, "outcome": "deferred", "retry_after": outcome["retry_after"]}
                    for r in items[index + 1 :]
                )
                return

    async def _send_row(self, client: TelegramClient, row: Claimed) -> dict[str, Any]:
        parts = split_message(format_message(row.severity, row.title, row.message))
        sent = min(row.parts_sent, len(parts))
        while sent < len(parts):
            await self._limiter.acquire(row.chat_id)
            async with self._in_flight:
                result = await client.send_message(row.chat_id, parts[sent])
            if result.ok:
                sent += 1
                self.stats.parts += 1
                continue
            log.warning("notify %s to chat %s: %s", row.id, row.chat_id, result.error)
            if result.retry_after is not None:
                self._limiter.pause(row.chat_id, result.retry_after)
                return {
                    "id": row.id,
                    "outcome": "deferred",
                    "retry_after": result.retry_after,
                    "error": result.error,
                    "parts_sent": sent,
                }
            return {
                "id": row.id,
                "outcome": "failed" if result.permanent else "retry",
                "error": result.error,
                "parts_sent": sent,
            }
        return {"id": row.id, "outcome": "sent"}


def _raise_if_failed(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        if task.done() and not task.cancelled():
            raise psycopg.OperationalError(f"{task.get_name()} ended unexpectedly")


async def _wait_any(
    stop: asyncio.Event,
    wake: asyncio.Event | None,
    timeout: float,
    monitors: list[asyncio.Task[Any]] | None = None,
) -> None:
    """Sleep up to `timeout`, returning early when stop or wake is set or a monitor ends."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(
            [*waiters, *(monitors or [])],
            timeout=max(timeout, 0.0),
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        for waiter in waiters:
            waiter.cancel()


def run_worker(
    conninfo: str,
    settings: Settings | None = None,
    stop_event: threading.Event | None = None,
    options: NotifySettings | None = None,
    *,
    worker_id: str | None = None,
) -> WorkerStats:
    """Run a worker in this thread until `stop_event` is set (for `tradestore up`, which
    runs it in a thread or a process of its own). Returns its counters."""
    worker = NotifyWorker(conninfo, settings or get_settings(), options, worker_id=worker_id)

    async def main() -> None:
        stop = asyncio.Event()

        async def watch() -> None:
            while stop_event is not None and not stop_event.is_set():
                await asyncio.sleep(0.1)
            if stop_event is not None:
                stop.set()

        watcher = asyncio.create_task(watch())
        try:
            await worker.run(stop)
        finally:
            watcher.cancel()

    asyncio.run(main())
    return worker.stats


def service(conninfo: str, settings: Settings, stop: threading.Event) -> None:
    """A `tradestore up` service. Without TELEGRAM_BOT_TOKEN it says so and idles until
    `stop` (notifications stay queued in the outbox), rather than bringing `up` down."""
    if settings.TELEGRAM_BOT_TOKEN is None or not settings.TELEGRAM_BOT_TOKEN.get_secret_value():
        log.warning(
            "notify worker not started: TELEGRAM_BOT_TOKEN is not set; "
            "notifications stay queued in system.notification_outbox"
        )
        stop.wait()
        return
    run_worker(conninfo, settings, stop)


def main() -> None:
    """`python -m tradestore.notify.worker`: settings from the environment; SIGTERM or
    SIGINT stops it gracefully (claimed but unsent rows are released)."""
    from tradestore.db.connect import resolve_conninfo

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = get_settings()
    conninfo, _server = resolve_conninfo(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_worker(conninfo, settings, stop)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
