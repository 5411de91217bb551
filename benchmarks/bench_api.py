"""REST API latency under load: GET /api/v1/portfolio and GET /api/v1/market/ticker.

The app (create_app, the real routes, PostgreSQL, Redis) is served by uvicorn on
127.0.0.1 in this process; the load comes from a second process (multiprocessing, spawn)
with CONCURRENCY keep-alive connections sending a bounded number of requests. Latency is
measured by the client, end to end over loopback.

Each endpoint runs twice (and every kind, the anchor included, in ROUNDS interleaved
rounds, so that each sees the same load of the shared machine):
- Redis warm: session:{id} and ticker:{symbol} are cached (ticker:{symbol} lives 1s, so
  about one request a second misses and refills it);
- Redis flushed: the load process sends FLUSHALL before every request (outside the timed
  part), so each request authenticates from PostgreSQL and reads the ticker from it,
  then puts the keys back.

Anchors, measured in the same run: a bare async FastAPI endpoint on the same server
(HTTP and JSON only: the floor), and the flushed figure for the warm one. Goals: a
cached read within 1.5x of the bare endpoint (ratio >= 0.67) and at least 3x faster than
the same read with Redis flushed. The cache hit ratio of each run is the server's
read-through hits / (hits + misses).

Round trips: before the load, ROUNDTRIP_REQUESTS requests of each kind are sent one at
a time with the server's PostgreSQL and Redis round trips counted (benchmarks.roundtrips);
the per-request averages are printed and kept in the figures' notes.
"""

from __future__ import annotations

import multiprocessing
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn

from benchmarks.harness import Bench, Figure
from benchmarks.roundtrips import RoundTrips
from tradestore.api.app import create_app
from tradestore.api.config import ApiSettings
from tradestore.api.server import fast_io
from tradestore.cache.client import Cache
from tradestore.cache.server import EmbeddedRedis
from tradestore.config import load_settings
from tradestore.db import migrate
from tradestore.db.connect import SEARCH_PATH
from tradestore.identity import users
from tradestore.inbound.config import load_webhook_settings

REQUESTS = 1500
# Each kind's requests are sent in ROUNDS interleaved rounds (bare, portfolio warm, ...,
# then again), so every side sees the same changes of the shared machine's load.
ROUNDS = 5
ROUNDTRIP_REQUESTS = 50
CONCURRENCY = 4
SYMBOL = "binance:BTCUSDT"

SETUP = """
INSERT INTO market.exchanges (code, name) VALUES ('binance', 'Binance');
INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency)
VALUES ('BTC/USDT', 'Bitcoin', 'CRYPTO', 'BTC', 'USDT');
INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, trading_rules)
VALUES (1, 1, 'BTCUSDT', '{"tick_size": "0.01", "step_size": "0.00001", "min_notional": "5"}');
INSERT INTO market.tickers (exchange_instrument_id, "time", opening_price, closing_price, high_price,
                            low_price, volume, value, change_24h, change_rate_24h)
SELECT 1, date_trunc('minute', now()) - g * interval '1 second', 100, 101, 102, 99, 5, 500, 1, 0.01
  FROM generate_series(0, 3000) g;
"""


def _load(
    url: str,
    headers: dict[str, str],
    count: int,
    concurrency: int,
    redis_url: str | None,
    results: Any,
) -> None:
    """The second process: `count` GETs over `concurrency` connections; latencies (s)."""
    import redis

    flusher = redis.Redis.from_url(redis_url) if redis_url else None
    lock = threading.Lock()
    latencies: list[float] = []
    failures = [0]

    def worker(n: int) -> None:
        with httpx.Client(headers=headers, timeout=30) as client:
            for _ in range(n):
                if flusher is not None:
                    with lock:  # one flush per request, not timed
                        flusher.flushall()
                start = time.perf_counter()
                response = client.get(url)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 200:
                        failures[0] += 1

    share = [
        count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)
    ]
    threads = [threading.Thread(target=worker, args=(n,)) for n in share]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(
        {"latencies": latencies, "failures": failures[0], "seconds": time.perf_counter() - started}
    )


def _round(
    url: str, headers: dict[str, str], count: int, redis_url: str | None = None
) -> tuple[list[float], float]:
    """One round of `count` requests from the load process: (latencies, seconds)."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=_load, args=(url, headers, count, CONCURRENCY, redis_url, results))
    process.start()
    out = results.get(timeout=600)
    process.join(timeout=60)
    if out["failures"]:
        raise RuntimeError(f"{out['failures']} of {count} requests to {url} failed")
    return out["latencies"], out["seconds"]


def _summary(latencies: list[float], seconds: float) -> dict[str, float]:
    lat = sorted(latencies)
    return {
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        "rps": len(lat) / seconds,
    }


def _count_round_trips(
    base: str, headers: dict[str, str], paths: dict[str, str], redis_url: str
) -> dict[str, tuple[float, float]]:
    """PostgreSQL and Redis round trips per request of each kind, warm and flushed (the
    server runs in this process, so its connections are counted here)."""
    import redis

    flusher = redis.Redis.from_url(redis_url)
    out: dict[str, tuple[float, float]] = {}
    with httpx.Client(headers=headers, timeout=30) as client:
        for name, path in paths.items():
            for state in ("warm", "flushed"):
                client.get(base + path).raise_for_status()  # warm the keys
                with RoundTrips() as counter:
                    pg = rd = 0
                    for _ in range(ROUNDTRIP_REQUESTS):
                        if state == "flushed":
                            flusher.flushall()
                            counter.take()  # not the flush itself
                        client.get(base + path).raise_for_status()
                        p, r = counter.take()
                        pg, rd = pg + p, rd + r
                out[f"{name}_{state}"] = (pg / ROUNDTRIP_REQUESTS, rd / ROUNDTRIP_REQUESTS)
    flusher.close()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(bench: Bench) -> list[Figure]:
    db = bench.create_database("bench_api")
    migrate.upgrade(db)
    home = Path(tempfile.mkdtemp(prefix="tradestore-bench-api-"))
    redis_server = EmbeddedRedis(home / "redis")
    redis_server.start()
    cache = Cache.from_url(redis_server.url)
    with psycopg.connect(
        db, autocommit=True, options=f"-c search_path={SEARCH_PATH.replace(' ', '')}"
    ) as conn:
        alice = users.create_user(conn, "alice", "alice@example.com", "bench-password")
        conn.execute(SETUP)
        account = conn.execute(
            "INSERT INTO account.accounts (user_id, exchange_id, name, initial_capital) "
            "VALUES (%s, 1, 'main', 10000) RETURNING id",
            (alice.id,),
        ).fetchone()[0]
        conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'USDT', 10000)", (account,))
        order = conn.execute(
            "SELECT submit_order(%s, 1, 'BUY', 'LIMIT', 1, 100)", (account,)
        ).fetchone()[0]
        conn.execute("SELECT apply_fill(%s, 'T-1', 1, 100, 0.1, 'USDT')", (order,))
        for i in range(50):
            conn.execute("SELECT submit_order(%s, 1, 'BUY', 'LIMIT', 0.1, %s)", (account, 50 + i))

    settings = load_settings(None, DATABASE_URL=db, TRADESTORE_HOME=home, DB_POOL_SIZE=8)
    limits = ApiSettings(  # type: ignore[call-arg]
        _env_file=None, API_RATE_LIMIT_PER_IP=10**8, API_RATE_LIMIT_PER_USER=10**8
    )
    app = create_app(
        settings,
        conninfo=db,
        webhook_settings=load_webhook_settings(None),
        api_settings=limits,
        cache=cache,
    )

    @app.get("/bench/noop")
    async def noop() -> dict[str, bool]:  # the anchor: HTTP and JSON; no database
        return {"ok": True}

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False, **fast_io()
        )
    )
    thread = threading.Thread(target=server.run, name="bench-api", daemon=True)
    thread.start()
    figures: list[Figure] = []
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        login = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": "alice", "password": "bench-password"},
            timeout=30,
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

        paths = {
            "portfolio": "/api/v1/portfolio",
            "ticker": f"/api/v1/market/ticker?symbol={SYMBOL}",
        }
        trips = _count_round_trips(base, headers, paths, redis_server.url)
        for kind, (pg, rd) in trips.items():
            print(f"# round trips per request, {kind}: PostgreSQL {pg:.2f}, Redis {rd:.2f}")

        runs: dict[str, tuple[str, str | None]] = {"bare": (f"{base}/bench/noop", None)}
        for name, path in paths.items():
            runs[f"{name}_warm"] = (base + path, None)
            runs[f"{name}_flushed"] = (base + path, redis_server.url)
        latencies: dict[str, list[float]] = {kind: [] for kind in runs}
        seconds = dict.fromkeys(runs, 0.0)
        hits_misses = {kind: [0, 0] for kind in runs}
        for _ in range(ROUNDS):
            for kind, (url, flush) in runs.items():
                hits, misses = cache.hits, cache.misses
                lat, took = _round(url, headers, REQUESTS // ROUNDS, flush)
                latencies[kind] += lat
                seconds[kind] += took
                hits_misses[kind][0] += cache.hits - hits
                hits_misses[kind][1] += cache.misses - misses
        results: dict[str, dict[str, float]] = {}
        for kind in runs:
            results[kind] = _summary(latencies[kind], seconds[kind])
            dh, dm = hits_misses[kind]
            results[kind]["hit_ratio"] = dh / (dh + dm) if dh + dm else 0.0
        bare = results["bare"]

        for name in paths:
            warm, flushed = results[f"{name}_warm"], results[f"{name}_flushed"]
            notes = {
                "requests": REQUESTS,
                "rounds": ROUNDS,
                "concurrency": CONCURRENCY,
                "hit_ratio_warm": round(warm["hit_ratio"], 4),
                "hit_ratio_flushed": round(flushed["hit_ratio"], 4),
                "rps_warm": round(warm["rps"]),
                "rps_flushed": round(flushed["rps"]),
                "pg_round_trips_warm": round(trips[f"{name}_warm"][0], 2),
                "redis_round_trips_warm": round(trips[f"{name}_warm"][1], 2),
                "pg_round_trips_flushed": round(trips[f"{name}_flushed"][0], 2),
                "redis_round_trips_flushed": round(trips[f"{name}_flushed"][1], 2),
            }
            figures += [
                Figure(f"api_{name}_p50_warm", warm["p50_ms"], "ms", "bare endpoint p50",
                       bare["p50_ms"], higher_is_better=False, goal=1 / 1.5, notes=notes),
                Figure(f"api_{name}_p99_warm", warm["p99_ms"], "ms", "bare endpoint p99",
                       bare["p99_ms"], higher_is_better=False, notes=notes),
                Figure(f"api_{name}_p50_warm_vs_flushed", warm["p50_ms"], "ms",
                       f"{name} p50 flushed", flushed["p50_ms"], higher_is_better=False,
                       goal=3, notes=notes),
                Figure(f"api_{name}_p50_flushed", flushed["p50_ms"], "ms", "bare endpoint p50",
                       bare["p50_ms"], higher_is_better=False, notes=notes),
                Figure(f"api_{name}_p99_flushed", flushed["p99_ms"], "ms", f"{name} p99 warm",
                       warm["p99_ms"], higher_is_better=False, notes=notes),
                Figure(f"api_{name}_hit_ratio_warm", warm["hit_ratio"], "ratio",
                       "hit ratio flushed", flushed["hit_ratio"], notes=notes),
            ]  # fmt: skip
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        cache.redis.close()
        redis_server.stop()
        bench.drop_database(db)
    return figures
