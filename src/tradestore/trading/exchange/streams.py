"""CCXT's websocket (`watch*`) methods for synchronous callers.

ccxt.pro is asyncio; tradestore's collector and fill sync are synchronous code on a
psycopg connection. `StreamLoop` runs the watch calls of one ccxt.pro exchange on an
asyncio loop in a daemon thread and hands what they bring back as `StreamEvent`s on a
thread-safe queue; the caller drains it in its own thread, so the database is only ever
touched there.

Each watch runs in a loop of its own:

- its first result after a (re)connect is preceded by a `connected` event (or, with a
  `connect` step, the event comes once that step is done: the user stream is subscribed),
  so the caller can catch up over REST before it stores live data;
- a failure (CCXT's NetworkError: a dropped connection, a refused handshake, a timeout;
  or any other error of the exchange) is a `disconnected` event, and the watch is called
  again after 1 s, 2 s, 4 s ... up to `max_backoff_s` (CCXT opens a new connection and
  subscribes again);
- `close()` cancels the watches and closes the exchange's connections.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ccxt

log = logging.getLogger(__name__)

CONNECTED = "connected"
DATA = "data"
DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class StreamEvent:
    key: str  # the watch's name (a feed key, an account's user stream)
    kind: str  # connected | data | disconnected
    data: Any = None
    error: str | None = None
    network: bool = False  # a disconnected event caused by a NetworkError


class StreamLoop:
    """Watch loops of one ccxt.pro `exchange` on a private asyncio loop (see module)."""

    def __init__(
        self, exchange: Any, *, backoff_s: float = 1.0, max_backoff_s: float = 60.0
    ) -> None:
        self.exchange = exchange
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.events: queue.SimpleQueue[StreamEvent] = queue.SimpleQueue()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Future[None]] = []

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="ccxt-stream", daemon=True
            )
            self._thread.start()

    def watch(
        self,
        key: str,
        call: Callable[[], Awaitable[Any]],
        connect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Call `call` (a watch) again and again, putting each result on `events`;
        `connect`, if given, runs before the first call of each connection."""
        self._ensure_thread()

        async def start() -> None:
            self._tasks.append(asyncio.ensure_future(self._run(key, call, connect)))

        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)

    async def _run(
        self,
        key: str,
        call: Callable[[], Awaitable[Any]],
        connect: Callable[[], Awaitable[None]] | None,
    ) -> None:
        failures = 0
        up = False
        while True:
            try:
                if not up and connect is not None:
                    await connect()
                    up = True
                    self.events.put(StreamEvent(key, CONNECTED))
                data = await call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: report, back off, reconnect
                failures += 1
                up = False
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1))
                text = f"{type(exc).__name__}: {exc}"
                self.events.put(
                    StreamEvent(
                        key, DISCONNECTED, error=text, network=isinstance(exc, ccxt.NetworkError)
                    )
                )
                log.warning("stream %s: %s; reconnecting in %.2f s", key, text[:300], delay)
                await asyncio.sleep(delay)
                continue
            if not up:
                up = True
                self.events.put(StreamEvent(key, CONNECTED))
            failures = 0
            self.events.put(StreamEvent(key, DATA, data))

    def drain(self) -> list[StreamEvent]:
        """Every event that has arrived, oldest first (does not wait)."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Stop the watches and close the exchange's connections."""
        if self._thread is None:
            return

        async def stop() -> None:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            await self.exchange.close()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None
            self._loop.close()
