"""Keeping Redis current after writes: invalidations announced by the database.

PostgreSQL triggers (cache/sql/invalidation.sql) send a NOTIFY for every change to a
mirrored table, naming what changed (order 12 of user 3, the 1m bars of binance:BTCUSDT
from t1 to t2, ...). NOTIFY is delivered only after COMMIT and dropped on ROLLBACK, so
this module only ever hears about committed writes, and a write never waits on Redis.
`apply` turns a notification into deletes of the keys it makes stale (and, for the
outbox, a push onto telegram_queue); the next read rebuilds each key from PostgreSQL.

Who applies a notification (exactly one process):

* `attach(conn, cache)`: the connection LISTENs on its own channel
  (`tradestore_cache_<backend pid>`); the triggers see that and send the session's
  changes there, and PostgreSQL delivers them with the COMMIT's reply, so they are
  applied inside `commit()` (psycopg's notify handler), before it returns: the writer
  reads its own writes (`attach_async`, for the API's asyncio pool, hands them to one
  worker thread instead, so the event loop never waits on Redis). `install(cache)` attaches every connection that
  `tradestore.db.connect` opens in this process (the CLI does this); the API attaches
  its pools' connections.
* `Listener` (run by `tradestore up`): LISTENs on `tradestore_cache` and applies the
  changes of every other session: psql, your own scripts, the scheduler.

Redis errors never reach the writer: Cache.run logs them and the keys are deleted once
Redis is back (Cache.invalidate remembers them).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from tradestore.cache import keys
from tradestore.cache.client import Cache, open_cache
from tradestore.config import Settings
from tradestore.db import connect as db_connect
from tradestore.db.errors import ValidationError

__all__ = [
    "CHANNEL",
    "Listener",
    "apply",
    "attach",
    "attach_async",
    "drain_async",
    "install",
    "service",
    "session_channel",
    "stale_keys",
    "uninstall",
]

log = logging.getLogger(__name__)

CHANNEL = "tradestore_cache"
# A range of more bars than this is dropped by pattern (SCAN) instead of key by key.
MAX_CANDLE_KEYS = 2_000


def session_channel(backend_pid: int) -> str:
    """The channel on which a session attached to a cache gets its own changes back."""
    return f"{CHANNEL}_{backend_pid}"


# --------------------------------------------------------------------------- payloads
def stale_keys(change: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(keys, key patterns) a change makes stale. Raises ValidationError for a symbol or
    id that cannot be part of a key (nothing of it can be cached either)."""
    kind = change.get("kind")
    found: list[str] = []
    patterns: list[str] = []
    if kind == "order":
        found.append(keys.order_status_key(int(change["order"])))
        if change.get("user") is not None:
            found.append(keys.active_orders_key(int(change["user"])))
            found += keys.portfolio_keys(int(change["user"]))
        if change.get("strategy") is not None:
            strategy = int(change["strategy"])
            found += [keys.strategy_status_key(strategy), keys.strategy_signals_key(strategy)]
    elif kind == "strategy":
        strategy = int(change["strategy"])
        found += [keys.strategy_status_key(strategy), keys.strategy_signals_key(strategy)]
    elif kind == "signals":
        found.append(keys.strategy_signals_key(int(change["strategy"])))
    elif kind == "alert":
        if change.get("user") is None:  # an alert of nobody is in every user's list
            patterns.append("notifications:*")
        else:
            found.append(keys.notifications_key(int(change["user"])))
    elif kind == "session":
        found.append(keys.session_key(int(change["session"])))
    elif kind == "portfolio":
        found += keys.portfolio_keys(int(change["user"]))
    elif kind == "preferences":
        found.append(keys.preferences_key(int(change["user"])))
    elif kind == "ticker":
        found.append(keys.ticker_key(change["symbol"]))
    elif kind == "orderbook":
        found.append(keys.orderbook_key(change["symbol"]))
    elif kind == "candles":
        symbol = change["symbol"]
        found.append(keys.market_latest_key(symbol))
        for timeframe, first, last, step in change.get("bars") or []:
            first_key = keys.candle_key(symbol, timeframe, _utc(first))  # validates the parts
            if step <= 0 or (last - first) // step + 1 > MAX_CANDLE_KEYS:
                patterns.append(first_key.rsplit(":", 1)[0] + ":*")
                continue
            found += [
                keys.candle_key(symbol, timeframe, _utc(ts)) for ts in range(first, last + 1, step)
            ]
    return found, patterns


def _utc(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def apply(cache: Cache, payload: str) -> None:
    """Apply one notification to Redis. Never raises: a bad payload is logged, a Redis
    outage is the cache's to remember (its keys are deleted once Redis is back)."""
    try:
        change = json.loads(payload)
        if change.get("kind") == "outbox":
            keys.push_telegram(cache, int(change["id"]))
            return
        found, patterns = stale_keys(change)
    except ValidationError as exc:
        log.debug("cache change names nothing cacheable (%s): %s", exc, payload)
        return
    except Exception:
        log.exception("unreadable cache change %r", payload)
        return
    try:
        for start in range(0, len(found), 1000):
            cache.invalidate(*found[start : start + 1000])
        for pattern in patterns:
            cache.invalidate_pattern(pattern)
    except Exception:  # never fail the commit this runs inside
        log.exception("applying cache change %r failed", payload)


# --------------------------------------------------------------------------- writers
def _handler(cache: Cache, channel: str) -> Callable[[psycopg.Notify], None]:
    def on_notify(notify: psycopg.Notify) -> None:
        if notify.channel == channel:
            apply(cache, notify.payload)

    return on_notify


def attach(conn: psycopg.Connection[Any], cache: Cache) -> None:
    """Make `conn` apply its own committed changes to `cache` as each commit returns.
    On an idle connection in a transaction-per-call mode the LISTEN is committed at once;
    inside an open transaction it takes effect when that transaction commits (its own
    changes until then go to the `up` listener)."""
    channel = session_channel(conn.info.backend_pid)
    conn.add_notify_handler(_handler(cache, channel))
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    if idle and not conn.autocommit:
        conn.commit()


async def attach_async(conn: psycopg.AsyncConnection[Any], cache: Cache) -> None:
    """`attach` for an asyncio connection. The Redis deletes run on one worker thread
    (in commit order), not on the event loop: a commit returns without waiting for them,
    so another reader may see a just-changed key for the moment the delete takes."""
    channel = session_channel(conn.info.backend_pid)

    def on_notify(notify: psycopg.Notify) -> None:
        if notify.channel == channel:
            _applier().submit(apply, cache, notify.payload)

    conn.add_notify_handler(on_notify)
    idle = conn.info.transaction_status == TransactionStatus.IDLE
    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    if idle and not conn.autocommit:
        await conn.commit()


_applier_lock = threading.Lock()
_applier_pool: ThreadPoolExecutor | None = None


def _applier() -> ThreadPoolExecutor:
    """The one thread that applies the async connections' changes, in order."""
    global _applier_pool
    with _applier_lock:
        if _applier_pool is None:
            _applier_pool = ThreadPoolExecutor(1, thread_name_prefix="cache-invalidation")
        return _applier_pool


def drain_async(timeout: float = 30.0) -> None:
    """Wait until the changes handed to the worker thread so far are applied (bounded: a
    Redis that stopped answering must not hold up a shutdown)."""
    _applier().submit(lambda: None).result(timeout=timeout)


_installed: list[db_connect.ConnectHook] = []


def install(cache: Cache) -> None:
    """Attach every connection `tradestore.db.connect` opens in this process to `cache`."""
    uninstall()
    hook: db_connect.ConnectHook = lambda conn: attach(conn, cache)  # noqa: E731
    _installed.append(hook)
    db_connect.add_connect_hook(hook)


def uninstall() -> None:
    while _installed:
        db_connect.remove_connect_hook(_installed.pop())


# --------------------------------------------------------------------------- listener
class Listener:
    """Applies the changes of sessions that are not attached to a cache (psql, scripts,
    other services). Notifications sent while nobody listened are lost, so on every
    (re)connect the mirror keys are dropped: they are rebuilt from PostgreSQL on read."""

    def __init__(self, conninfo: str, cache: Cache, settings: Settings | None = None) -> None:
        self.conninfo = db_connect.session_conninfo(
            conninfo, settings, application_name="tradestore-cache"
        )
        self.cache = cache
        self.conn: psycopg.Connection[Any] | None = None
        self.applied = 0

    def listen(self) -> None:
        self.close()
        # psycopg.connect, not tradestore's connect: this connection is never attached.
        self.conn = psycopg.connect(self.conninfo, autocommit=True)
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        self.cache.invalidate_mirrors()

    def poll(self, timeout: float = 1.0) -> int:
        """Apply the notifications that arrive within `timeout` seconds; how many."""
        if self.conn is None:
            self.listen()
        assert self.conn is not None
        count = 0
        for notify in self.conn.notifies(timeout=timeout):
            apply(self.cache, notify.payload)
            count += 1
        self.applied += count
        return count

    def run(self, stop: threading.Event, *, poll: float = 1.0, retry: float = 2.0) -> None:
        while not stop.is_set():
            try:
                if self.conn is None or self.conn.closed:
                    self.listen()
                self.poll(poll)
            except psycopg.Error as exc:  # the server restarted, a network blip, ...
                log.warning("cache listener lost its connection (%s); retrying", exc)
                self.close()
                stop.wait(retry)
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def service(conninfo: str, settings: Settings, stop: threading.Event) -> None:
    """A `tradestore up` service: the listener, on the cache the API uses."""
    cache = open_cache(settings)
    try:
        Listener(conninfo, cache, settings).run(stop)
    finally:
        cache.close()
