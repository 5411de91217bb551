from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from tests.notify.botapi import BotApiServer
from tradestore.config import Settings, load_settings
from tradestore.notify.config import NotifySettings, load_notify_settings
from tradestore.notify.worker import WorkerStats, run_worker

TOKEN = "123456:TEST-token"


@pytest.fixture
def botapi() -> Iterator[BotApiServer]:
    with BotApiServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def app_settings(db: str, tmp_path: Any) -> Settings:
    return load_settings(
        None, DATABASE_URL=db, TELEGRAM_BOT_TOKEN=TOKEN, TRADESTORE_HOME=tmp_path / "home"
    )


@pytest.fixture
def options(botapi: BotApiServer) -> NotifySettings:
    """Fast settings for tests: rate limits off unless a test turns them on."""
    return load_notify_settings(
        None,
        TELEGRAM_API_BASE=botapi.base_url,
        NOTIFY_CHAT_RATE=0,
        NOTIFY_GROUP_RATE=0,
        NOTIFY_GLOBAL_RATE=0,
        NOTIFY_HTTP_TIMEOUT=5,
        NOTIFY_FLUSH_SECONDS=0.05,
        NOTIFY_POLL_SECONDS=2,
        NOTIFY_LEASE_SECONDS=30,
        NOTIFY_HEARTBEAT_SECONDS=1,
    )


@contextmanager
def running_worker(
    db: str, settings: Settings, options: NotifySettings, worker_id: str | None = None
) -> Iterator[dict[str, WorkerStats]]:
    """A worker in a thread; stopped (gracefully) on exit. Yields {'stats': ...} once done."""
    stop = threading.Event()
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["stats"] = run_worker(db, settings, stop, options, worker_id=worker_id)
        except BaseException as exc:  # surfaced by the test below
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "worker did not stop"
    if "error" in out:
        raise out["error"]


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until predicate() is truthy (a generous timeout: this is not a timing check)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    return None if row is None else row[0]
