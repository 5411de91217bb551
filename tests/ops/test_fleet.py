"""`up`'s fleet: the runners and collectors configured in the database (plus the router
and the paper exchange when accounts need them), each in a supervised thread restarted
with backoff, each with a heartbeat that /health shows."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.strategy.live.test_runner import _runner, _series
from tests.strategy.market import insert_candles
from tests.support.fake_exchange import API_KEY, API_SECRET, FakeBinance
from tests.trading.desk import build_desk
from tradestore.config import load_settings
from tradestore.identity import apikeys
from tradestore.identity.secretbox import SecretBox
from tradestore.market.collect.feeds import add_collector
from tradestore.ops import fleet
from tradestore.trading import get_order, get_position, submit_order
from tradestore.trading.exchange.accounts import set_routing


def _until(check: Any, what: Any, deadline: float = 20.0) -> None:
    """Wait for a condition the threads bring about (a deadline, not a timing)."""
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what() if callable(what) else what}")
        time.sleep(0.05)


def test_configured_services_follow_the_database(
    conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    settings = load_settings(None, DATABASE_URL="postgresql://unused", TRADESTORE_HOME=tmp_path)
    desk = build_desk(conn, cash=10_000)
    assert fleet.configured(conn, settings) == {}
    runner_id = _runner(conn, desk)
    add_collector(conn, "binance", ["BTC/USDT"], ["trades"])
    add_collector(conn, "binance", ["ETH/USDT"], ["ticker"], enabled=False)
    set_routing(conn, desk.account_id, "sim")
    want = fleet.configured(conn, settings)
    assert {n: k for n, (k, _w) in want.items()} == {
        f"runner:{runner_id}": "runner",
        "collector:1": "collector",
        "paper": "paper",
    }
    conn.execute("UPDATE analytics.strategy_runners SET enabled = false")
    conn.execute("UPDATE account.accounts SET trading_mode = 'off'")
    assert set(fleet.configured(conn, settings)) == {"collector:1"}


def test_the_fleet_runs_a_configured_runner_and_stops_it_when_disabled(
    conn: psycopg.Connection[Any], db: str, tmp_path: Path
) -> None:
    settings = load_settings(None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path)
    desk = build_desk(conn, cash=10_000)
    runner_id = _runner(conn, desk)
    name = f"runner:{runner_id}"
    f = fleet.Fleet(lambda: db, settings, holder="test:1")
    try:
        f.reconcile(conn)
        _until(lambda: conn.execute("SELECT state FROM analytics.strategy_runners").fetchone()
               == ("RUNNING",), "the runner started")  # fmt: skip
        times, o, h, lo, c = _series(2)
        insert_candles(conn, desk.btc, times, o, h, lo, c)  # NOTIFY wakes the runner
        _until(lambda: conn.execute("SELECT last_bar_at IS NOT NULL FROM "
                                    "analytics.strategy_runners").fetchone() == (True,),
               lambda: f"the runner handled the stored bars: {f.children[name].status}")  # fmt: skip
        f.beat(conn)
        kind, state, info = conn.execute(
            "SELECT kind, state, info FROM system.worker_heartbeats WHERE worker_id = %s",
            (f"{name}@test:1",),
        ).fetchone()
        assert (kind, state, info["service"], info["runner_state"]) == \
            ("runner", "running", name, "RUNNING")  # fmt: skip
        assert info["last_message"].startswith("bar ") and info["lag_ms"] is not None
        conn.execute("UPDATE analytics.strategy_runners SET enabled = false")
        f.reconcile(conn)
        assert name not in f.children
        assert conn.execute(
            "SELECT state, lease_holder FROM analytics.strategy_runners"
        ).fetchone() == ("STOPPED", None)
        assert conn.execute(
            "SELECT state FROM system.worker_heartbeats WHERE worker_id = %s", (f"{name}@test:1",)
        ).fetchone() == ("stopped",)
    finally:
        f.stop_all()


def test_a_failing_service_is_restarted_with_backoff(
    monkeypatch: pytest.MonkeyPatch, db: str
) -> None:
    delays: list[float] = []
    stop = threading.Event()
    real_wait = stop.wait

    def wait(timeout: float | None = None) -> bool:  # record the backoff, do not sleep it
        delays.append(timeout or 0.0)
        return real_wait(0)

    monkeypatch.setattr(stop, "wait", wait)
    calls = []

    def work(
        conn: psycopg.Connection[Any], stop_: threading.Event, st: fleet.ServiceStatus
    ) -> None:
        calls.append(1)
        if len(calls) == 4:
            stop.set()
            return
        raise ConnectionError(f"exchange down #{len(calls)}")

    status = fleet.ServiceStatus("collector:9", "collector")
    fleet._supervise(lambda: db, work, stop, status)
    assert len(calls) == 4 and delays == [1.0, 2.0, 4.0]
    assert status.restarts == 3 and status.state == "stopped"
    assert status.last_error == "ConnectionError: exchange down #3"


def test_the_fleet_routes_orders_and_syncs_their_fills_for_a_live_account(
    conn: psycopg.Connection[Any], db: str, tmp_path: Path
) -> None:
    settings = load_settings(
        None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path, TRADESTORE_SECRET_KEY="k" * 40
    )
    desk = build_desk(conn, cash=100_000)
    key = apikeys.store(
        conn, SecretBox.from_settings(settings), desk.user_id, "binance", API_KEY, API_SECRET,
        permissions=("read", "trade"),
    )  # fmt: skip
    set_routing(conn, desk.account_id, "live", key.id)
    fake = FakeBinance(balances={"USDT": Decimal(100_000)}).serve()
    f = fleet.Fleet(lambda: db, settings, api_url=fake.url, holder="test:2")
    try:
        f.reconcile(conn)
        assert {"router", "fillsync"} <= set(f.children)
        order_id = submit_order(
            conn, desk.account_id, desk.btc, "BUY", "LIMIT", Decimal("0.01"), Decimal(50_000)
        )
        _until(lambda: fake.orders, "the router sent the order")
        fake.fill(fake.orders[0].client_order_id, "0.01", "50000", "0.5", "USDT")
        _until(lambda: get_order(conn, order_id).status == "FILLED",
               lambda: f"the fill was synced: {f.children['fillsync'].status}")  # fmt: skip
        assert get_position(conn, desk.account_id, desk.btc).quantity == Decimal("0.01")
    finally:
        f.stop_all()
        fake.close()
