"""The services `up` runs from the database's configuration, so adding a runner or a
collector (CLI or API) needs no restart:

- `runner:<id>`     each enabled row of analytics.strategy_runners (LiveRunner.run);
- `collector:<id>`  each enabled row of market.collector_feeds (Collector passes);
- `router`          the order router, while some account routes (trading_mode paper/live);
- `fillsync`        fills of those accounts: from the exchange's user stream where it has
                    one (REST catch-up on every reconnect), else polled every
                    `FILL_SYNC_SECONDS`; the balance check (drift raises an alert) every
                    `BALANCE_CHECK_SECONDS`;
- `paper`           tradestore's paper exchange, while some account is in trading_mode sim.

`fleet_service` (one `up` service) compares what runs with what is configured every
`RECONCILE_SECONDS`, starts and stops services to match, and writes each one's heartbeat
(system.worker_heartbeats: state, last message, lag, restarts), which /health and the
dashboard show. Each service runs in its own thread on its own connection; any failure
restarts it after 1, 2, 4 ... 60 s (reset after a run that lasted longer than that),
without touching the others or `up`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tradestore.config import Settings
from tradestore.db.connect import connect
from tradestore.db.query import dicts

__all__ = ["RECONCILE_SECONDS", "Fleet", "ServiceStatus", "configured", "fleet_service"]

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 15.0
FILL_SYNC_SECONDS = 5.0
BALANCE_CHECK_SECONDS = 300.0
RETRY_FIRST = 1.0
RETRY_MAX = 60.0

# The work of one service: runs on `conn` until `stop` is set, reporting into `status`.
Work = Callable[[psycopg.Connection[Any], threading.Event, "ServiceStatus"], None]


@dataclass
class ServiceStatus:
    name: str
    kind: str
    state: str = "starting"  # starting, running, backoff, stopped
    last_message: str | None = None
    lag_ms: float | None = None
    restarts: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.time)

    def info(self) -> dict[str, Any]:
        return {
            "service": self.name,
            "service_state": self.state,
            "last_message": self.last_message,
            "lag_ms": None if self.lag_ms is None else round(self.lag_ms, 1),
            "restarts": self.restarts,
            "last_error": self.last_error,
            "heartbeat_seconds": RECONCILE_SECONDS,
        }


# ---------------------------------------------------------------------- the work
def _runner_work(runner_id: int) -> Work:
    def work(conn: psycopg.Connection[Any], stop: threading.Event, status: ServiceStatus) -> None:
        from tradestore.strategy.live.runner import LiveRunner

        LiveRunner(conn, runner_id).run(stop)

    return work


def _collector_work(collector_id: int, settings: Settings, api_url: str | None) -> Work:
    def work(conn: psycopg.Connection[Any], stop: threading.Event, status: ServiceStatus) -> None:
        from tradestore.cache.client import existing_cache
        from tradestore.market.collect.collector import Collector
        from tradestore.market.collect.feed import MarketSource
        from tradestore.market.collect.feeds import get_collector
        from tradestore.market.collect.stream import stream_source

        row = get_collector(conn, collector_id)
        cache = existing_cache(settings)
        last_ok = time.monotonic()
        try:
            source = MarketSource(row.exchange, api_url)
            stream = stream_source(row.exchange, rest=row.transport == "rest", api_url=api_url)
            with Collector(conn, source, row.specs(), cache=cache, stream=stream) as collector:
                while not stop.is_set():
                    started = time.monotonic()
                    report = collector.run_once()
                    stored = dict(report.flush.stored) if report.flush else {}
                    if not report.failed:
                        last_ok = time.monotonic()
                    status.lag_ms = (time.monotonic() - last_ok) * 1000
                    status.last_message = (
                        f"stored {stored or 'nothing'}"
                        + (f"; failed {report.failed}" if report.failed else "")
                        + (f"; stale {report.stale}" if report.stale else "")
                    )
                    stop.wait(max(0.0, float(row.interval_s) - (time.monotonic() - started)))
        finally:
            if cache is not None:
                cache.close()

    return work


def _router_work(settings: Settings, api_url: str | None) -> Work:
    def work(conn: psycopg.Connection[Any], stop: threading.Event, status: ServiceStatus) -> None:
        from tradestore.identity.secretbox import SecretBox
        from tradestore.trading.exchange.accounts import ConnectorFactory, routing_accounts
        from tradestore.trading.exchange.router import Router

        urls = {a.exchange: api_url for a in routing_accounts(conn)} if api_url else {}
        router = Router(conn, ConnectorFactory(SecretBox.from_settings(settings), base_urls=urls))
        status.last_message = "routing"
        router.run_forever(stop)

    return work


def _fillsync_work(settings: Settings, api_url: str | None) -> Work:
    def work(conn: psycopg.Connection[Any], stop: threading.Event, status: ServiceStatus) -> None:
        import ccxt

        from tradestore.db.errors import TradestoreError
        from tradestore.identity.secretbox import SecretBox
        from tradestore.trading.exchange.accounts import ConnectorFactory, routing_accounts
        from tradestore.trading.exchange.connector import scrub
        from tradestore.trading.exchange.fillsync import FillFollower, check_balances

        box = SecretBox.from_settings(settings)
        factory = ConnectorFactory(box)
        followers: dict[int, FillFollower] = {}
        polled: dict[int, float] = {}
        checked: dict[int, float] = {}
        try:
            while not stop.is_set():
                applied, problems = 0, []
                accounts = routing_accounts(conn)
                urls = {a.exchange: api_url for a in accounts} if api_url else {}
                if urls != factory.base_urls:
                    factory = ConnectorFactory(box, base_urls=urls)
                for gone in set(followers) - {a.account_id for a in accounts}:
                    followers.pop(gone).close()
                for account in accounts:
                    now = time.monotonic()
                    try:
                        follower = followers.get(account.account_id)
                        if follower is None:
                            connector = factory.for_account(conn, account)
                            # A REST override (a fake exchange) has no websocket: poll.
                            stream = None if api_url else factory.stream_for_account(conn, account)
                            follower = FillFollower(conn, account, connector, stream)
                            followers[account.account_id] = follower
                        # A streaming follower is cheap to ask every second; polling goes
                        # to the exchange, so every FILL_SYNC_SECONDS.
                        due = polled.get(account.account_id, float("-inf")) + FILL_SYNC_SECONDS
                        if follower.streaming or now >= due:
                            polled[account.account_id] = now
                            report = follower.run_once()
                            applied += sum(
                                len(r.applied) for r in (report.caught_up, report.streamed) if r
                            )
                            problems += report.failed
                        if now >= checked.get(account.account_id, float("-inf")) + (
                            BALANCE_CHECK_SECONDS
                        ):
                            check_balances(conn, account, follower.connector)
                            checked[account.account_id] = now
                    except (ccxt.BaseError, TradestoreError) as exc:
                        # One account's exchange or key trouble does not stop the others';
                        # the router raises the alert for an authentication error.
                        problems.append(f"account {account.account_id}: {type(exc).__name__}")
                        log.warning("fill sync of account %s: %s", account.account_id, scrub(exc))
                status.last_message = f"{applied} new fill(s)" + (
                    f"; {', '.join(problems)}" if problems else ""
                )
                stop.wait(1.0)
        finally:
            for follower in followers.values():
                follower.close()

    return work


def _paper_work(interval: float = 1.0) -> Work:
    def work(conn: psycopg.Connection[Any], stop: threading.Event, status: ServiceStatus) -> None:
        from tradestore.trading.exchange.paper import PaperExchange

        paper = PaperExchange(conn)
        while not stop.is_set():
            report = paper.run_once()
            status.last_message = f"{report.orders} open orders, {report.fills} fills"
            stop.wait(interval)

    return work


def configured(
    conn: psycopg.Connection[Any], settings: Settings, api_url: str | None = None
) -> dict[str, tuple[str, Work]]:
    """What should run now: service name -> (kind, work). `api_url` sends the router's
    and the collectors' exchange calls to a local fake (tests and benchmarks)."""
    want: dict[str, tuple[str, Work]] = {}
    for r in dicts(conn, "SELECT id FROM analytics.strategy_runners WHERE enabled ORDER BY id"):
        want[f"runner:{r['id']}"] = ("runner", _runner_work(r["id"]))
    for r in dicts(conn, "SELECT id FROM market.collector_feeds WHERE enabled ORDER BY id"):
        want[f"collector:{r['id']}"] = ("collector", _collector_work(r["id"], settings, api_url))
    modes = {
        r["trading_mode"]
        for r in dicts(conn, "SELECT DISTINCT trading_mode FROM account.accounts WHERE is_active")
    }
    if modes & {"paper", "live"}:
        want["router"] = ("router", _router_work(settings, api_url))
        want["fillsync"] = ("fillsync", _fillsync_work(settings, api_url))
    if "sim" in modes:
        want["paper"] = ("paper", _paper_work())
    return want


# ---------------------------------------------------------------------- supervision
def _supervise(
    conninfo: Callable[[], str], work: Work, stop: threading.Event, status: ServiceStatus
) -> None:
    delay = RETRY_FIRST
    while not stop.is_set():
        began = time.monotonic()
        try:
            with connect(conninfo(), autocommit=True) as conn:
                status.state = "running"
                work(conn, stop, status)
            if stop.is_set():
                break
            raise RuntimeError("stopped by itself")
        except Exception as exc:
            if stop.is_set():
                break
            if time.monotonic() - began > RETRY_MAX:
                delay = RETRY_FIRST
            status.restarts += 1
            status.state = "backoff"
            status.last_error = f"{type(exc).__name__}: {str(exc).strip()}"[:500]
            log.warning("service %s failed (%s); restarting in %.0fs",
                        status.name, status.last_error, delay)  # fmt: skip
            if stop.wait(delay):
                break
            delay = min(RETRY_MAX, delay * 2)
    status.state = "stopped"


@dataclass
class _Child:
    thread: threading.Thread
    stop: threading.Event
    status: ServiceStatus


class Fleet:
    """The services configured in the database, each in a supervised thread."""

    def __init__(
        self,
        conninfo: Callable[[], str],
        settings: Settings,
        *,
        api_url: str | None = None,
        holder: str | None = None,
    ) -> None:
        from tradestore.strategy.live.store import holder_name

        self.conninfo = conninfo
        self.settings = settings
        self.api_url = api_url
        self.holder = holder or holder_name()
        self.children: dict[str, _Child] = {}

    def reconcile(self, conn: psycopg.Connection[Any]) -> None:
        """Start what is configured and not running, stop what runs and is not."""
        want = configured(conn, self.settings, self.api_url)
        for name in [n for n in self.children if n not in want]:
            self._stop(conn, name)
        for name, (kind, work) in want.items():
            child = self.children.get(name)
            if child is not None and child.thread.is_alive():
                continue
            stop = threading.Event()
            status = ServiceStatus(name, kind)
            thread = threading.Thread(
                target=_supervise, args=(self.conninfo, work, stop, status),
                name=name, daemon=True,
            )  # fmt: skip
            self.children[name] = _Child(thread, stop, status)
            thread.start()
        self.beat(conn)

    def beat(self, conn: psycopg.Connection[Any]) -> None:
        """Each service's heartbeat; a runner's message and lag are its row's."""
        runners = {
            f"runner:{r['id']}": r
            for r in dicts(
                conn,
                "SELECT id, state, last_message, last_lag_ms FROM analytics.strategy_runners",
            )
        }
        for name, child in self.children.items():
            info = child.status.info()
            row = runners.get(name)
            if row is not None:
                info.update(runner_state=row["state"], last_message=row["last_message"],
                            lag_ms=None if row["last_lag_ms"] is None
                            else float(row["last_lag_ms"]))  # fmt: skip
            state = "running" if child.status.state in ("starting", "running") else "stopped"
            conn.execute(
                "SELECT system.worker_heartbeat(%s, %s, %s, %s::jsonb)",
                (f"{name}@{self.holder}", child.status.kind, state, json.dumps(info)),
            )

    def _stop(self, conn: psycopg.Connection[Any] | None, name: str) -> None:
        child = self.children.pop(name)
        child.stop.set()
        child.thread.join(timeout=15)
        if conn is not None:
            conn.execute(
                "SELECT system.worker_heartbeat(%s, %s, 'stopped', %s::jsonb)",
                (f"{name}@{self.holder}", child.status.kind, json.dumps(child.status.info())),
            )

    def stop_all(self, conn: psycopg.Connection[Any] | None = None) -> None:
        for name in list(self.children):
            self._stop(conn, name)

    def run(self, stop: threading.Event, interval: float = RECONCILE_SECONDS) -> None:
        try:
            while True:
                with connect(self.conninfo(), autocommit=True) as conn:
                    self.reconcile(conn)
                    if stop.wait(interval):
                        self.stop_all(conn)
                        return
        finally:
            self.stop_all()


def fleet_service(conninfo: str, settings: Settings, stop: threading.Event) -> None:
    """The `up` service that runs the configured runners, collectors, router and paper
    exchange (restarted by `up` with backoff if it loses the database)."""
    started = dt.datetime.now(dt.UTC)
    log.info("fleet: starting the configured services (%s)", started.isoformat())
    Fleet(lambda: conninfo, settings).run(stop)
