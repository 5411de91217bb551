"""Keeping `tradestore up`'s database alive.

The embedded PostgreSQL is a child of nobody once started (pg_ctl puts it in its own
session), so `up` watches it: when the postmaster is gone (killed, crashed, OOM), `up`
starts it again, waiting 1, 2, 4 ... up to 60 seconds between failed attempts, and gives
up (so `up` exits non-zero and a service manager can restart it) after
`give_up_after` failed attempts in a row. With an external DATABASE_URL there is nothing
to start: `up` keeps probing the connection with the same backoff while the services
keep retrying, and /health reports the database down meanwhile.

Whenever the database comes back, the start hooks run (DATABASE_START_HOOKS: work left
half-done by the outage, e.g. inbound alerts stored but never judged) and an alert is
raised through system.alerts, which queues its Telegram notifications.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg

from tradestore.db.errors import TradestoreError
from tradestore.db.server import EmbeddedPostgres

__all__ = [
    "DATABASE_START_HOOKS",
    "DatabaseHook",
    "DatabaseLost",
    "DatabaseSupervisor",
    "run_start_hooks",
]

log = logging.getLogger(__name__)

# Called with the conninfo after `up` has brought the database up: once at start (after
# migrations) and again after every restart or reconnection. A hook that fails is logged
# and does not stop the others.
DatabaseHook = Callable[[str], None]
DATABASE_START_HOOKS: list[DatabaseHook] = []


class DatabaseLost(TradestoreError, RuntimeError):
    """The embedded PostgreSQL died and could not be started again."""


def run_start_hooks(conninfo: str, hooks: list[DatabaseHook] | None = None) -> None:
    for hook in list(DATABASE_START_HOOKS if hooks is None else hooks):
        try:
            hook(conninfo)
        except Exception:
            log.exception("database start hook %s failed", getattr(hook, "__name__", hook))


def _reachable(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


class DatabaseSupervisor:
    """Call `check()` every second or so; it restarts or re-probes the database as needed."""

    def __init__(
        self,
        conninfo: str,
        server: EmbeddedPostgres | None,
        *,
        hooks: list[DatabaseHook] | None = None,
        first_delay: float = 1.0,
        max_delay: float = 60.0,
        give_up_after: int = 10,
        probe_every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conninfo = conninfo
        self.server = server
        self.hooks = hooks
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.give_up_after = give_up_after
        self.probe_every = probe_every
        self.clock = clock
        self.restarts = 0
        self.failures = 0  # failed attempts since the database was last up
        self.down_since: float | None = None
        self.last_error: str | None = None
        self._next_try = 0.0

    @property
    def healthy(self) -> bool:
        return self.down_since is None

    def check(self) -> None:
        now = self.clock()
        if now < self._next_try:
            return
        if self.server is not None:
            self._check_embedded(now)
        else:
            self._check_external(now)

    def _delay(self) -> float:
        return min(self.max_delay, self.first_delay * 2 ** max(0, self.failures - 1))

    def _check_embedded(self, now: float) -> None:
        assert self.server is not None
        if self.server.status().running:
            return
        if self.down_since is None:
            self.down_since = now
            log.error("embedded PostgreSQL in %s is not running; restarting it", self.server.home)
        try:
            self.server.start()
        except Exception as exc:
            self.failures += 1
            self.last_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if self.failures >= self.give_up_after:
                raise DatabaseLost(
                    f"the embedded PostgreSQL in {self.server.home} died and {self.failures} "
                    f"attempts to start it again failed; last error: {self.last_error}"
                ) from exc
            self._next_try = now + self._delay()
            log.error(
                "restarting PostgreSQL failed (attempt %d, next in %.0fs): %s",
                self.failures, self._next_try - now, self.last_error,
            )  # fmt: skip
            return
        self.conninfo = self.server.conninfo()
        self._recovered(now, "the embedded PostgreSQL stopped unexpectedly and was restarted")

    def _check_external(self, now: float) -> None:
        if _reachable(self.conninfo):
            if self.down_since is not None:
                self._recovered(now, "the database (DATABASE_URL) is reachable again")
            else:
                self._next_try = now + self.probe_every
            return
        if self.down_since is None:
            self.down_since = now
            log.error("the database (DATABASE_URL) is unreachable; retrying")
        self.failures += 1
        self.last_error = "connection refused or timed out"
        self._next_try = now + self._delay()

    def _recovered(self, now: float, what: str) -> None:
        down_for = now - (self.down_since if self.down_since is not None else now)
        attempts = self.failures + 1
        self.restarts += 1
        self.failures = 0
        self.down_since = None
        self._next_try = now + (self.probe_every if self.server is None else 0.0)
        log.warning("%s after %.0fs (%d attempt(s))", what, down_for, attempts)
        run_start_hooks(self.conninfo, self.hooks)
        self._alert(what, down_for, attempts)

    def _alert(self, what: str, down_for: float, attempts: int) -> None:
        from tradestore.notify.alerts import raise_alert

        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                raise_alert(
                    conn,
                    "HIGH",
                    f"{what} (down about {down_for:.0f}s, {attempts} attempt(s))",
                    module="ops",
                    alert_type="WARNING",
                    data={"event": "database_restarted", "down_seconds": round(down_for, 1),
                          "attempts": attempts, "restarts": self.restarts},
                )  # fmt: skip
        except Exception:
            log.exception("could not raise the database-restart alert")
