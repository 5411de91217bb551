"""TradingView webhook figures: requests/s and latency under load on loopback.

The app (create_app, served by uvicorn) runs in a process of its own; this process is
the load generator: CONNECTIONS keep-alive connections, each sending its share of
REQUESTS one after another, each side in ROUNDS rounds interleaved with the anchors'. Every webhook request is a valid alert with a new
idempotency key, so each is stored, authenticated, validated, resolved, deduplicated and
answered 202, then places an order after the reply. Two anchors in the same app, measured
in the same run with the same load: a bare FastAPI endpoint that does nothing, and one
that does nothing but place the same order with one `submit_order` statement (the goal:
the webhook's p50 under twice that endpoint's).

It also prints the database and Redis round trips per request of each kind (accepted
with its order, duplicate, conflict, invalid, unauthenticated), counted in the server.

The load generator speaks HTTP/1.1 over asyncio streams directly: httpx's client costs
more per request than the endpoint being measured and would hide the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from fastapi import Request

from benchmarks.harness import Bench, Figure
from benchmarks.roundtrips import RoundTrips
from tradestore.db import migrate
from tradestore.inbound import credentials

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 3000
# Each side's requests go in ROUNDS interleaved rounds (bare, order, webhook, then again),
# so that every side sees the same changes of the shared machine's load.
ROUNDS = 5
WARMUP = 200
ROUNDTRIP_REQUESTS = 50
# The order both the webhook and the submit_order anchor place.
ORDER = "SELECT public.submit_order(1, 1, 'BUY', 'LIMIT', 0.01, 65000, %s)"
CONNECTIONS = 8
LISTING = """
INSERT INTO market.exchanges (code, name) VALUES ('binance', 'Binance');
INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency)
VALUES ('BTC/USDT', 'Bitcoin', 'CRYPTO', 'BTC', 'USDT');
INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, trading_rules)
VALUES (1, 1, 'BTCUSDT', '{"tick_size": "0.01", "step_size": "0.00001", "min_notional": "5"}');
INSERT INTO account.users (username, email, password_hash) VALUES ('bench', 'bench@example.com', 'x');
INSERT INTO account.accounts (user_id, exchange_id, name) VALUES (1, 1, 'main');
-- Spot orders hold their funds and meet the owner's risk limits: fund every order both the
-- webhook and the anchor place, and let one order be the whole account (the benchmark
-- measures the intake, not the limits).
UPDATE account.users SET max_risk_per_trade = 100, max_total_risk = 100, max_positions = 1000;
SELECT post_ledger_entry(1, 'DEPOSIT', 'USDT', 1e14);
"""


def _body(i: int, run: str, secret: str = "", **extra: str) -> bytes:
    return json.dumps(
        {
            "secret": secret,
            "idempotency_key": f"{run}-{i}",
            "exchange": "binance",
            "symbol": "BTCUSDT",
            "account": "main",
            "side": "buy",
            "order_type": "limit",
            "quantity": "0.01",
            "price": "65000",
            **extra,
        }
    ).encode()


async def _connection(port: int, path: str, bodies: list[bytes], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for body in bodies:
            request = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status not in (200, 202):
                raise RuntimeError(f"{path} answered {status}")
    finally:
        writer.close()


def _load(port: int, path: str, bodies: list[bytes]) -> tuple[float, list[float]]:
    """(requests/s, latencies in s) for `bodies` spread over CONNECTIONS connections."""

    async def go() -> tuple[float, list[float]]:
        latencies: list[float] = []
        shares = [bodies[i::CONNECTIONS] for i in range(CONNECTIONS)]
        start = time.perf_counter()
        await asyncio.gather(*(_connection(port, path, share, latencies) for share in shares))
        return len(bodies) / (time.perf_counter() - start), latencies

    return asyncio.run(go())


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def _serve(conninfo: str, port: int) -> None:
    """The server process: the tradestore app plus the two anchors."""
    import uvicorn

    from tradestore.api.app import create_app
    from tradestore.api.server import fast_io
    from tradestore.config import load_settings
    from tradestore.inbound.config import load_webhook_settings

    app = create_app(
        load_settings(None, DATABASE_URL=conninfo),
        conninfo=conninfo,
        webhook_settings=load_webhook_settings(
            None,
            WEBHOOK_RATE_LIMIT_PER_IP=10**9,  # one load generator, one address
        ),
    )

    @app.post("/bare")
    async def bare() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/bench/order")
    async def order(request: Request) -> dict[str, int]:
        key = json.loads(await request.body())["idempotency_key"]
        async with app.state.pool.connection() as conn:
            row = await (await conn.execute(ORDER, (key,))).fetchone()
        return {"order_id": row[0]}

    counter = RoundTrips()

    @app.post("/bench/roundtrips/start")
    async def count_start() -> dict[str, bool]:
        counter.start()
        counter.take()
        return {"ok": True}

    @app.post("/bench/roundtrips/stop")
    async def count_stop() -> dict[str, int]:
        counter.stop()
        pg, rd = counter.take()
        return {"pg": pg, "redis": rd}

    # as `tradestore serve` runs it (uvloop, httptools)
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **fast_io()
    )


def _count_round_trips(port: int, secret: str) -> dict[str, tuple[float, float]]:
    """PostgreSQL and Redis round trips per webhook request of each kind, the order placed
    after the 202 included: ROUNDTRIP_REQUESTS of each sent one at a time, counted in the
    server."""
    base = f"http://127.0.0.1:{port}"
    n = ROUNDTRIP_REQUESTS
    kinds = {
        "accepted": [_body(i, "count", secret) for i in range(n)],
        "duplicate": [_body(i, "count", secret) for i in range(n)],
        "conflict": [_body(i, "count", secret, comment="other") for i in range(n)],
        "invalid": [_body(i, "bad", secret, side="hold") for i in range(n)],
        "unauthenticated": [
            _body(i, "anon", "tvwh_0000000000000000_" + "x" * 43) for i in range(n)
        ],
    }
    found: dict[str, tuple[float, float]] = {}
    with httpx.Client(timeout=30) as client:
        for kind, bodies in kinds.items():
            client.post(f"{base}/bench/roundtrips/start").raise_for_status()
            for body in bodies:
                client.post(
                    f"{base}/webhooks/tradingview",
                    content=body,
                    headers={"content-type": "application/json"},
                )
            time.sleep(1)  # the orders are placed after the reply
            counts = client.post(f"{base}/bench/roundtrips/stop").json()
            found[kind] = (counts["pg"] / n, counts["redis"] / n)
    return found


def _orders_placed(db: str, timeout: float = 120.0) -> None:
    """Wait until every accepted alert has its order (they are placed after the reply)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(db, autocommit=True) as conn:
        while conn.execute(
            "SELECT count(*) FROM system.inbound_alerts "
            "WHERE disposition = 'ACCEPTED' AND processed_at IS NULL"
        ).fetchone()[0]:
            if time.monotonic() > deadline:
                raise RuntimeError("the accepted alerts' orders were not placed in time")
            time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(bench: Bench) -> list[Figure]:
    db = bench.create_database("bench_webhook")
    migrate.upgrade(db)
    migrate.enable_modules(db, ["dedupe"])
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(LISTING)
        secret = credentials.create(conn, 1, "bench").token
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_webhook", "--serve", db, str(port)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the webhook server did not come up")
            time.sleep(0.2)
        bare_bodies = [_body(i, "bare") for i in range(REQUESTS)]
        _load(port, "/bare", bare_bodies[:WARMUP])
        _load(port, "/bench/order", [_body(i, "order-warm") for i in range(WARMUP)])
        _load(port, "/webhooks/tradingview", [_body(i, "warm", secret) for i in range(WARMUP)])
        trips = _count_round_trips(port, secret)
        for kind, (pg, rd) in trips.items():
            print(f"# round trips per {kind} webhook request: PostgreSQL {pg:.2f}, Redis {rd:.2f}")
        sides = {
            "/bare": bare_bodies,
            "/bench/order": [_body(i, "order") for i in range(REQUESTS)],
            "/webhooks/tradingview": [_body(i, "run", secret) for i in range(REQUESTS)],
        }
        latencies: dict[str, list[float]] = {path: [] for path in sides}
        seconds = dict.fromkeys(sides, 0.0)
        for r in range(ROUNDS):
            for path, bodies in sides.items():
                share = bodies[r * REQUESTS // ROUNDS : (r + 1) * REQUESTS // ROUNDS]
                rps, lat = _load(port, path, share)
                latencies[path] += lat
                seconds[path] += len(share) / rps
                if path == "/webhooks/tradingview":
                    _orders_placed(db)  # the round's orders land before the next side runs
        bare_rps, bare_lat = REQUESTS / seconds["/bare"], latencies["/bare"]
        order_rps, order_lat = REQUESTS / seconds["/bench/order"], latencies["/bench/order"]
        hook_rps = REQUESTS / seconds["/webhooks/tradingview"]
        hook_lat = latencies["/webhooks/tradingview"]
        time.sleep(2)  # let the last background orders land
        with psycopg.connect(db, autocommit=True) as conn:
            orders = conn.execute(
                "SELECT count(*) FROM trade.orders WHERE idempotency_key LIKE 'run-%'"
            ).fetchone()[0]
    finally:
        server.terminate()
        server.wait(timeout=30)
        bench.drop_database(db)
    notes = {
        "requests": REQUESTS,
        "rounds": ROUNDS,
        "connections": CONNECTIONS,
        "orders_placed": orders,
        "bare_p50_ms": round(_p(bare_lat, 0.5), 3),
        "bare_rps": round(bare_rps, 1),
        "round_trips": {
            k: {"pg": round(v[0], 2), "redis": round(v[1], 2)} for k, v in trips.items()
        },
    }
    return [
        Figure(
            "webhook_throughput",
            hook_rps,
            "req/s",
            anchor="bare FastAPI endpoint",
            anchor_value=bare_rps,
            notes=notes,
        ),
        Figure(
            "webhook_p50",
            _p(hook_lat, 0.5),
            "ms",
            anchor="bare p50",
            anchor_value=_p(bare_lat, 0.5),
            higher_is_better=False,
            notes=notes,
        ),
        Figure(
            "webhook_p50_vs_submit_order",
            _p(hook_lat, 0.5),
            "ms",
            anchor="bare endpoint + one submit_order p50",
            anchor_value=_p(order_lat, 0.5),
            higher_is_better=False,
            goal=0.5,
            notes={**notes, "submit_order_rps": round(order_rps, 1)},
        ),
        Figure(
            "webhook_p99",
            _p(hook_lat, 0.99),
            "ms",
            anchor="bare p99",
            anchor_value=_p(bare_lat, 0.99),
            higher_is_better=False,
            notes={**notes, "tradingview_timeout_ms": 3000},
        ),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=2, metavar=("CONNINFO", "PORT"), required=True)
    args = parser.parse_args()
    _serve(args.serve[0], int(args.serve[1]))
