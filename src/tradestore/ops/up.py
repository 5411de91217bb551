"""`tradestore up`: the main job. Start (or attach to) the database, bring the schema up
to date, enable the configured Plus modules, make partitions ahead, then run the
services (API server, workers) until interrupted."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from tradestore.config import Settings
from tradestore.db import migrate
from tradestore.db.connect import resolve_conninfo
from tradestore.db.server import EmbeddedPostgres, install_signal_handlers

# A service runs until its stop event is set. `up` starts each in a thread.
Service = Callable[[str, Settings, threading.Event], None]


@dataclass
class Runtime:
    conninfo: str
    server: EmbeddedPostgres | None
    applied: list[str]
    enabled_modules: list[str]
    partitions_made: int
    stop: threading.Event = field(default_factory=threading.Event)

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
        made = conn.execute("SELECT market.premake_partitions()").fetchone()[0]
    return Runtime(conninfo, server, applied, migrate.enabled_modules(conninfo), made)


def run_services(runtime: Runtime, settings: Settings, services: dict[str, Service]) -> None:
    """Run services in threads until Ctrl-C/SIGTERM (or runtime.stop is set); a service
    that dies stops the others, so `up` never runs half its parts silently."""
    threads = []
    failures: list[tuple[str, BaseException]] = []

    def _guard(name: str, service: Service) -> None:
        try:
            service(runtime.conninfo, settings, runtime.stop)
        except BaseException as exc:  # report, then bring the rest down
            failures.append((name, exc))
        finally:
            runtime.stop.set()

    for name, service in services.items():
        thread = threading.Thread(target=_guard, args=(name, service), name=name, daemon=True)
        thread.start()
        threads.append(thread)
    try:
        while not runtime.stop.wait(0.5):
            pass
    finally:
        runtime.stop.set()
        for thread in threads:
            thread.join(timeout=15)
    if failures:
        name, exc = failures[0]
        raise RuntimeError(f"service {name} stopped: {exc}") from exc
