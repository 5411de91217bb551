"""`tradestore up`: the main job. Start (or attach to) the database, bring the schema up
to date, enable the configured Plus modules, make partitions ahead, then run the
services (API server, workers) until interrupted, keeping the database alive meanwhile
(tradestore.ops.supervise)."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import psycopg

from tradestore.config import Settings
from tradestore.db import migrate
from tradestore.db.connect import resolve_conninfo
from tradestore.db.query import scalar
from tradestore.db.server import EmbeddedPostgres, install_signal_handlers
from tradestore.ops.supervise import DATABASE_START_HOOKS, DatabaseSupervisor, run_start_hooks

log = logging.getLogger(__name__)

# A service that loses its database connection is started again after these many seconds
# (doubling up to the cap) instead of bringing `up` down: the supervisor restarts the
# database meanwhile.
SERVICE_RETRY_FIRST = 1.0
SERVICE_RETRY_MAX = 30.0

# A service runs until its stop event is set. `up` starts each in a thread.
Service = Callable[[str, Settings, threading.Event], None]


def sweep_inbound_alerts(conninfo: str) -> None:
    """Judge or close the TradingView alerts that were stored but not judged when the
    database (or `up`) went away; without the dedupe module there is no alert box."""
    if "dedupe" not in migrate.enabled_modules(conninfo):
        return
    from tradestore.inbound.sweep import sweep_unjudged

    async def _sweep() -> dict[str, int]:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            return await sweep_unjudged(conn)

    counts = asyncio.run(_sweep())
    if counts:
        log.info("inbound alerts left unjudged were swept: %s", counts)


if sweep_inbound_alerts not in DATABASE_START_HOOKS:
    DATABASE_START_HOOKS.append(sweep_inbound_alerts)


@dataclass
class Runtime:
    conninfo: str
    server: EmbeddedPostgres | None
    applied: list[str]
    enabled_modules: list[str]
    partitions_made: int
    stop: threading.Event = field(default_factory=threading.Event)
    # Why `up` stopped, for its last line ("received SIGTERM", "service api failed: ...").
    stop_reason: str | None = None

    @property
    def embedded(self) -> bool:
        return self.server is not None


def prepare(settings: Settings) -> Runtime:
    """Everything `up` does before its services start. Idempotent."""
    conninfo, server = resolve_conninfo(settings)
    if server is not None and threading.current_thread() is threading.main_thread():
        install_signal_handlers(server)
    applied = migrate.upgrade(conninfo)
    migrate.enable_modules(conninfo, settings.modules)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        made = scalar(conn, "SELECT market.premake_partitions()")
    runtime = Runtime(conninfo, server, applied, migrate.enabled_modules(conninfo), made)
    run_start_hooks(conninfo)
    return runtime


def stop_on_signals(
    runtime: Runtime, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)
) -> None:
    """Make SIGTERM/SIGHUP stop the services gracefully and record why (main thread only)."""

    def _stop(signum: int, frame: FrameType | None) -> None:
        if runtime.stop_reason is None:
            runtime.stop_reason = f"received {signal.Signals(signum).name}"
        runtime.stop.set()

    for sig in signals:
        signal.signal(sig, _stop)


def _is_connection_loss(exc: BaseException) -> bool:
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


def run_services(
    runtime: Runtime,
    settings: Settings,
    services: dict[str, Service],
    *,
    supervisor: DatabaseSupervisor | None = None,
    tick: float = 0.5,
) -> None:
    """Run services in threads until Ctrl-C/SIGTERM (or runtime.stop is set); a service
    that dies stops the others, so `up` never runs half its parts silently. A service
    that lost its database connection is started again with backoff instead, while
    `supervisor` (checked every `tick` seconds) brings the database back."""
    threads = []
    failures: list[tuple[str, BaseException]] = []

    def _guard(name: str, service: Service) -> None:
        delay = SERVICE_RETRY_FIRST
        try:
            while True:
                try:
                    service(runtime.conninfo, settings, runtime.stop)
                    return
                except BaseException as exc:
                    if runtime.stop.is_set() or not _is_connection_loss(exc):
                        raise
                    log.warning("service %s lost the database (%s); retrying in %.0fs",
                                name, str(exc).strip() or type(exc).__name__, delay)  # fmt: skip
                    if runtime.stop.wait(delay):
                        return
                    delay = min(SERVICE_RETRY_MAX, delay * 2)
        except BaseException as exc:  # report, then bring the rest down
            failures.append((name, exc))
            if runtime.stop_reason is None:
                runtime.stop_reason = f"service {name} failed: {exc}"
        finally:
            runtime.stop.set()

    for name, service in services.items():
        thread = threading.Thread(target=_guard, args=(name, service), name=name, daemon=True)
        thread.start()
        threads.append(thread)
    try:
        while not runtime.stop.wait(tick):
            if supervisor is not None:
                supervisor.check()
                runtime.conninfo = supervisor.conninfo
    except BaseException as exc:
        if runtime.stop_reason is None:
            runtime.stop_reason = (
                "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else str(exc)
            )
        raise
    finally:
        runtime.stop.set()
        for thread in threads:
            thread.join(timeout=15)
    if failures:
        name, exc = failures[0]
        raise RuntimeError(f"service {name} stopped: {exc}") from exc
