"""Telegram outbox figures, against the loopback Bot API server in a process of its own.

- dispatch: messages/s through the worker (claim, send, write back) with the rate limits
  off, beside the anchor of the same number of sendMessage calls made straight with httpx
  at the same concurrency (no database): the ratio is the share of raw HTTP throughput
  the outbox keeps.
- latency: enqueue (committed) to arrival at the server, p50 and p99, with Telegram's
  rate limits on, messages paced at 10/s over 50 chats. Anchor: the same measurement for
  rows queued without NOTIFY (the trigger skipped), which only the worker's 1-second
  fallback poll finds: the ratio is what LISTEN/NOTIFY buys.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from benchmarks.harness import Bench, Figure
from tradestore.config import load_settings
from tradestore.db import migrate
from tradestore.notify.config import load_notify_settings
from tradestore.notify.worker import run_worker

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "123456:BENCH-token"
DISPATCH_MESSAGES = 2000
DISPATCH_CHATS = 50
CONCURRENCY = 4  # httpx async slows down past a few connections on this loopback server
LATENCY_MESSAGES = 150
LATENCY_RATE = 10.0  # messages/s offered


class BotApi:
    """tests.notify.botapi in a subprocess."""

    def __enter__(self) -> BotApi:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.notify.botapi", "--token", TOKEN],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"
        return self

    def received(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/_received", timeout=30).json()

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _raw_http(url: str, n: int) -> float:
    async def go() -> float:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(limits=limits, timeout=30) as http:
            sem = asyncio.Semaphore(CONCURRENCY)

            async def one(i: int) -> None:
                async with sem:
                    r = await http.post(
                        f"{url}/bot{TOKEN}/sendMessage",
                        json={"chat_id": 1 + i % DISPATCH_CHATS, "text": f"raw {i}"},
                    )
                    r.raise_for_status()

            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            return n / (time.perf_counter() - start)

    return asyncio.run(go())


class Worker:
    def __init__(self, db: str, api: str, **options: Any) -> None:
        self.settings = load_settings(None, DATABASE_URL=db, TELEGRAM_BOT_TOKEN=TOKEN)
        self.options = load_notify_settings(
            None, TELEGRAM_API_BASE=api, NOTIFY_MAX_IN_FLIGHT=CONCURRENCY, **options
        )
        self.db = db
        self.stop = threading.Event()

    def __enter__(self) -> Worker:
        self.thread = threading.Thread(
            target=run_worker, args=(self.db, self.settings, self.stop, self.options), daemon=True
        )
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def _sent(conn: psycopg.Connection[Any]) -> int:
    return conn.execute(
        "SELECT count(*) FROM system.notification_outbox WHERE status = 'SENT'"
    ).fetchone()[0]


def _dispatch(db: str, api: BotApi) -> float:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("TRUNCATE system.notification_outbox")
        # Queue everything first (no NOTIFY while loading), then time the worker alone.
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(
                "INSERT INTO system.notification_outbox (chat_id, severity, title, message) "
                "SELECT 1 + g %% %s, 'WARN', 'bench ' || g, 'dispatch' FROM generate_series(1, %s) g",
                (DISPATCH_CHATS, DISPATCH_MESSAGES),
            )
        start = time.perf_counter()
        with Worker(
            db,
            api.url,
            NOTIFY_CHAT_RATE=0,
            NOTIFY_GROUP_RATE=0,
            NOTIFY_GLOBAL_RATE=0,
            NOTIFY_BATCH_SIZE=200,
            NOTIFY_FLUSH_SECONDS=0.2,
        ):
            while _sent(conn) < DISPATCH_MESSAGES:
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
    return DISPATCH_MESSAGES / elapsed


def _latency(db: str, api: BotApi, *, notify: bool) -> list[float]:
    """Enqueue-to-arrival latencies (ms), messages paced at LATENCY_RATE over 50 chats."""
    tag = "notify" if notify else "poll"
    queued: dict[str, float] = {}
    with (
        psycopg.connect(db, autocommit=True) as conn,
        Worker(db, api.url, NOTIFY_POLL_SECONDS=1.0, NOTIFY_FLUSH_SECONDS=0.2),
    ):
        time.sleep(1.0)  # the worker is up and idle
        for i in range(LATENCY_MESSAGES):
            title = f"{tag}-{i}"
            if notify:
                conn.execute(
                    "SELECT enqueue_notification(%s, 'WARN', %s, 'latency')", (1 + i % 50, title)
                )
            else:
                with conn.transaction():
                    conn.execute(
                        "SET LOCAL session_replication_role = replica"
                    )  # no trigger, no NOTIFY
                    conn.execute(
                        "INSERT INTO system.notification_outbox (chat_id, severity, title, message) "
                        "VALUES (%s, 'WARN', %s, 'latency')",
                        (1 + i % 50, title),
                    )
            queued[title] = time.monotonic()
            time.sleep(1 / LATENCY_RATE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            arrived = {
                r["text"].split("\n")[0].split(" ", 1)[1]: r["at"]
                for r in api.received()
                if r["status"] == 200 and f" {tag}-" in r["text"].split("\n")[0]
            }
            if len(arrived) >= LATENCY_MESSAGES:
                break
            time.sleep(0.2)
    return [(arrived[t] - queued[t]) * 1000 for t in queued if t in arrived]


def run(bench: Bench) -> list[Figure]:
    db = bench.create_database("bench_notify")
    migrate.upgrade(db)
    try:
        with BotApi() as api:
            raw = statistics.median(_raw_http(api.url, DISPATCH_MESSAGES) for _ in range(2))
            dispatch = _dispatch(db, api)
            with_notify = _latency(db, api, notify=True)
            poll_only = _latency(db, api, notify=False)
    finally:
        bench.drop_database(db)
    notes = {"messages": DISPATCH_MESSAGES, "chats": DISPATCH_CHATS, "concurrency": CONCURRENCY}
    lat_notes = {
        "messages": len(with_notify),
        "offered_per_s": LATENCY_RATE,
        "limits": "1/s per chat, 30/s overall",
        "poll_seconds": 1.0,
    }
    return [
        Figure(
            "notify_dispatch",
            dispatch,
            "msg/s",
            anchor="raw httpx sendMessage",
            anchor_value=raw,
            notes=notes,
        ),
        Figure(
            "notify_latency_p50",
            statistics.median(with_notify),
            "ms",
            anchor="poll-only p50",
            anchor_value=statistics.median(poll_only),
            higher_is_better=False,
            notes=lat_notes,
        ),
        Figure(
            "notify_latency_p99",
            _percentile(with_notify, 0.99),
            "ms",
            anchor="poll-only p99",
            anchor_value=_percentile(poll_only, 0.99),
            higher_is_better=False,
            notes=lat_notes,
        ),
    ]
