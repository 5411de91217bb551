"""Count database and Redis round trips made in this process (benchmarks only).

PostgreSQL: every exchange psycopg makes with the server goes through
`Connection.wait` / `AsyncConnection.wait` (a statement, BEGIN, COMMIT, a pipeline
sync), so each call that touches the socket is one round trip (a call whose generator
ends without waiting for the socket, such as `commit()` on an idle autocommit
connection, which a pool's `connection()` makes on every return, is not counted). Redis: every command, pipeline or script call is
written by one `send_packed_command` and answered before the next, so each call is one
round trip. Patched at class level while a `RoundTrips` is active.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import redis.asyncio.connection as aconnection
import redis.connection as connection


class RoundTrips:
    """`with RoundTrips() as rt: ...; rt.pg, rt.redis` (or start()/stop()/take())."""

    def __init__(self) -> None:
        self.pg = 0
        self.redis = 0
        self._lock = threading.Lock()
        self._saved: list[tuple[Any, str, Any]] = []

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def start(self) -> RoundTrips:
        counter = self

        sync_wait = psycopg.Connection.wait
        async_wait = psycopg.AsyncConnection.wait
        sync_send = connection.AbstractConnection.send_packed_command
        async_send = aconnection.AbstractConnection.send_packed_command

        def counted(gen: Any) -> Any:
            try:
                ready = next(gen)
            except StopIteration as stop:
                return stop.value  # no I/O at all
            counter._count("pg")
            while True:
                try:
                    ready = gen.send((yield ready))
                except StopIteration as stop:
                    return stop.value

        def wait(self: Any, gen: Any, *args: Any, **kw: Any) -> Any:
            return sync_wait(self, counted(gen), *args, **kw)

        async def await_(self: Any, gen: Any, *args: Any, **kw: Any) -> Any:
            return await async_wait(self, counted(gen), *args, **kw)

        def send(self: Any, *args: Any, **kw: Any) -> Any:
            counter._count("redis")
            return sync_send(self, *args, **kw)

        async def asend(self: Any, *args: Any, **kw: Any) -> Any:
            counter._count("redis")
            return await async_send(self, *args, **kw)

        for owner, name, new in (
            (psycopg.Connection, "wait", wait),
            (psycopg.AsyncConnection, "wait", await_),
            (connection.AbstractConnection, "send_packed_command", send),
            (aconnection.AbstractConnection, "send_packed_command", asend),
        ):
            self._saved.append((owner, name, owner.__dict__[name]))
            setattr(owner, name, new)
        return self

    def stop(self) -> None:
        for owner, name, old in reversed(self._saved):
            setattr(owner, name, old)
        self._saved.clear()

    def take(self) -> tuple[int, int]:
        """(pg, redis) since the last take, and reset."""
        with self._lock:
            counts = (self.pg, self.redis)
            self.pg = self.redis = 0
        return counts

    def __enter__(self) -> RoundTrips:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
