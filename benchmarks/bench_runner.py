"""Bar close to order acknowledged by the exchange: p50 and p99 (goal: p99 under 50 ms).

A `paper` runner (its own process, LISTENing for stored bars as `tradestore run` does)
trades an SMA(2) / SMA(3) crossover on closes alternating 100 / 102, which signals on
every bar and so places a MARKET BUY on every other bar (the fake exchange fills
nothing, so the exit signals in between have nothing to sell). A router (its own
process, `route run`'s `Router.run_forever`) sends each order through real CCXT to the
loopback fake Binance (tests/support/fake_exchange.py), which runs in this process and
records when it acknowledged each order. Bars are stored one at a time as the collector
stores them (`ingest(..., "candles", imported=False)`: its commit sends NOTIFY
tradestore_bars). The latency of a bar is from its commit (ingest returned) to the
fake's acknowledgement of the order it caused; the next bar waits until the runner has
recorded the previous one, as bars a minute apart would.

Anchor: the same loopback round trip made by a bare CCXT `create_order` call (same
fake, same signing), so the ratio is tradestore's overhead on top of the HTTP call.

Size: BENCH_RUNNER_BARS bars (default 300: 150 orders).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import statistics
import threading
import time
from decimal import Decimal
from typing import Any

from tests.support.fake_exchange import API_KEY, API_SECRET, FakeBinance
from tests.trading.desk import build_desk

from benchmarks.harness import Bench, Figure
from tradestore.db import migrate
from tradestore.db.connect import connect
from tradestore.identity import apikeys
from tradestore.identity.secretbox import SecretBox
from tradestore.market.ingest import ingest
from tradestore.strategy.live import store
from tradestore.strategy.registry import create_strategy
from tradestore.trading.exchange.accounts import set_routing
from tradestore.trading.exchange.connector import build_exchange, profile_for

BOX_KEY = "b" * 40
HISTORY = 10
T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


class TimedFake(FakeBinance):
    """The fake exchange, noting when it acknowledged each order (by client order id)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.acked: dict[str, float] = {}
        self.acked_wall: dict[str, float] = {}

    def dispatch(
        self, method: str, path: str, query: str, body: str, key: str | None
    ) -> tuple[int, Any]:
        status, answer = super().dispatch(method, path, query, body, key)
        if (method, path) == ("POST", "/api/v3/order") and status == 200:
            self.acked[answer["clientOrderId"]] = time.perf_counter()
            self.acked_wall[answer["clientOrderId"]] = time.time()
        return status, answer


def _bar(k: int) -> dict[str, Any]:
    close = "100" if k % 2 == 0 else "102"
    return {"time": T0 + dt.timedelta(minutes=k), "open": "101", "high": "103",
            "low": "99", "close": close, "volume": "10"}  # fmt: skip


def _run_runner(db: str, runner_id: int, stop: Any) -> None:
    from tradestore.strategy.live.runner import LiveRunner

    with connect(db, autocommit=True) as conn:
        done = threading.Event()
        threading.Thread(target=lambda: (stop.wait(), done.set()), daemon=True).start()
        LiveRunner(conn, runner_id, history_bars=HISTORY).run(done, heartbeat=1.0)


def _run_router(db: str, url: str, stop: Any) -> None:
    from tradestore.trading.exchange.accounts import ConnectorFactory
    from tradestore.trading.exchange.router import Router

    with connect(db, autocommit=True) as conn:
        done = threading.Event()
        threading.Thread(target=lambda: (stop.wait(), done.set()), daemon=True).start()
        router = Router(conn, ConnectorFactory(SecretBox(BOX_KEY), base_urls={"binance": url}))
        router.run_forever(done, idle_s=1.0)


def _setup(db: str) -> tuple[int, int]:
    """A paper account routing to the fake, a runner on it, HISTORY bars stored."""
    with connect(db, autocommit=True) as conn:
        desk = build_desk(conn, cash=10_000_000)
        key = apikeys.store(conn, SecretBox(BOX_KEY), desk.user_id, "binance", API_KEY,
                            API_SECRET, permissions=("read", "trade"))  # fmt: skip
        set_routing(conn, desk.account_id, "paper", key.id)
        create_strategy(conn, user_id=desk.user_id, name="every-bar",
                        implementation="sma_crossover", parameters={"fast": 2, "slow": 3})  # fmt: skip
        runner_id = store.add_runner(conn, "every-bar", desk.account_id, ["BTCUSDT"],
                                     mode="paper", position_size_pct=Decimal("0.01"))  # fmt: skip
        for k in range(HISTORY):
            ingest(conn, "candles", [_bar(k)], listing_id=desk.btc, timeframe="1m",
                   imported=False)  # fmt: skip
        return desk.btc, runner_id


def _wait(what: Any, timeout: float = 10.0, sleep: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(sleep)
    raise RuntimeError("benchmark: timed out waiting")


def _tradestore(db: str, fake: TimedFake, bars: int) -> tuple[list[float], dict[str, Any]]:
    listing, runner_id = _setup(db)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    procs = [
        ctx.Process(target=_run_runner, args=(db, runner_id, stop)),
        ctx.Process(target=_run_router, args=(db, fake.url, stop)),
    ]
    for p in procs:
        p.start()
    committed: dict[int, float] = {}
    committed_wall: dict[int, float] = {}
    try:
        with connect(db, autocommit=True) as conn:

            def last_bar() -> Any:
                return conn.execute(
                    "SELECT last_bar_at FROM analytics.strategy_runners WHERE id = %s "
                    "AND lease_holder IS NOT NULL AND state = 'RUNNING'",
                    (runner_id,),
                ).fetchone()

            _wait(lambda: (row := last_bar()) is not None and row, timeout=60)
            time.sleep(1.0)  # the router's first pass is done
            for k in range(HISTORY, HISTORY + bars + 2):
                ingest(conn, "candles", [_bar(k)], listing_id=listing, timeframe="1m",
                       imported=False)  # fmt: skip
                committed[k] = time.perf_counter()
                committed_wall[k] = time.time()
                if k % 2 == 0:  # an entry signal: wait for its ack without querying
                    _wait(lambda n=len(fake.acked): len(fake.acked) > n, sleep=0.001)
                t = _bar(k)["time"]
                _wait(lambda t=t: (row := last_bar()) is not None and row[0] == t)
            # The router records each ack just after the exchange sent it.
            _wait(
                lambda: conn.execute(
                    "SELECT count(*) = 0 FROM trade.order_routes WHERE state <> 'SENT'"
                ).fetchone()[0]
            )
            rows = conn.execute(
                "SELECT o.client_order_id, o.idempotency_key, r.state, "
                "extract(epoch FROM o.created_at)::float8 FROM trade.orders o "
                "JOIN trade.order_routes r ON r.order_id = o.id ORDER BY o.id"
            ).fetchall()
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    latencies, to_order, to_ack = [], [], []
    for cid, key, state, created in rows[2:]:  # the first orders warm CCXT and the connections up
        assert state == "SENT", (cid, state)
        bar_time = dt.datetime.fromtimestamp(int(key.split(":")[1]), dt.UTC)
        k = round((bar_time - T0).total_seconds() / 60)
        latencies.append((fake.acked[cid] - committed[k]) * 1000)
        to_order.append((created - committed_wall[k]) * 1000)
        to_ack.append((fake.acked_wall[cid] - created) * 1000)
    return latencies, {
        "orders": len(rows),
        "measured": len(latencies),
        # Where the time goes (wall clocks of one machine): the runner's part, from the
        # bar's commit to place_order's transaction start, and the rest (the order's
        # commit, the router's wake-up, claim and CCXT send) to the exchange's ack.
        "commit_to_order_p50_ms": statistics.median(to_order),
        "order_to_ack_p50_ms": statistics.median(to_ack),
    }


def _bare_ccxt(fake: TimedFake, calls: int) -> list[float]:
    exchange = build_exchange(profile_for("binance"), API_KEY, API_SECRET, sandbox=True,
                              base_url=fake.url)  # fmt: skip
    exchange.load_markets()
    timings = []
    for i in range(calls + 5):
        # Spaced like the benchmark's orders: back to back, CCXT's rate limiter (50 ms
        # for binance) would be measured instead of the round trip.
        time.sleep(0.1)
        start = time.perf_counter()
        exchange.create_order("BTC/USDT", "market", "buy", "0.0001", None,
                              {"clientOrderId": f"bare-{i}"})  # fmt: skip
        timings.append((time.perf_counter() - start) * 1000)
    return timings[5:]


def _quantiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[98]


def run(bench: Bench) -> list[Figure]:
    bars = int(os.environ.get("BENCH_RUNNER_BARS", "300"))
    db = bench.create_database("runner")
    migrate.upgrade(db)
    fake = TimedFake(balances={"USDT": Decimal(10_000_000)}).serve()
    try:
        ours, notes = _tradestore(db, fake, bars)
        anchor = _bare_ccxt(fake, len(ours))
    finally:
        fake.close()
        bench.drop_database(db)
    (p50, p99), (a50, a99) = _quantiles(ours), _quantiles(anchor)
    notes |= {"max_ms": max(ours), "anchor_max_ms": max(anchor), "machine": "2 cores, shared"}
    return [
        Figure(
            "bar close to exchange ack p50",
            p50,
            "ms",
            anchor="bare CCXT create_order round trip p50",
            anchor_value=a50,
            higher_is_better=False,
            notes=dict(notes),
        ),
        Figure(
            "bar close to exchange ack p99",
            p99,
            "ms",
            anchor="bare CCXT create_order round trip p99",
            anchor_value=a99,
            higher_is_better=False,
            notes=dict(notes | {"goal_ms": 50, "met": p99 < 50}),
        ),
    ]
