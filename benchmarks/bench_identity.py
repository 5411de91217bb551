"""Identity, cache and row-level-security figures (median of many calls, one client).

- authenticate_cached: an access token checked against session:{id} in Redis, against
  the same check in PostgreSQL with Redis flushed (anchor).
- ticker_cached: the latest ticker through Redis, against the read-through's PostgreSQL
  query (anchor: the cost of every miss).
- rate_limit_hit: one rate-limit decision (the Lua script), against a bare Redis PING
  (anchor: the floor of any Redis round trip).
- rls_own_orders: reading one's orders in a transaction as the user (act_as + RLS),
  against the same query in a plain transaction (anchor).
- login: a full login (argon2id verify, session rows, cache), against the argon2id
  verify alone (anchor).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from benchmarks.harness import Bench, Figure
from tradestore.cache import keys, market
from tradestore.cache.client import Cache
from tradestore.cache.ratelimit import Limit, RateLimiter
from tradestore.cache.server import EmbeddedRedis
from tradestore.db import migrate
from tradestore.db.connect import SEARCH_PATH
from tradestore.identity import passwords, users
from tradestore.identity.auth import AuthConfig, AuthService
from tradestore.identity.rls import as_user

CALLS = 2000
LOGINS = 15
SYM = "binance:BTCUSDT"

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
INSERT INTO account.accounts (user_id, exchange_id, name)
SELECT u.id, 1, 'main' FROM account.users u;
"""


def _median_us(fn: Callable[[], object], calls: int = CALLS) -> float:
    for _ in range(min(100, calls)):  # warm up (connections, plans, scripts)
        fn()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def run(bench: Bench) -> list[Figure]:
    db = bench.create_database("bench_identity")
    migrate.upgrade(db)
    home = Path(tempfile.mkdtemp(prefix="tradestore-bench-redis-"))
    server = EmbeddedRedis(home)
    server.start()
    cache = Cache.from_url(server.url)
    figures: list[Figure] = []
    try:
        with psycopg.connect(
            db, autocommit=True, options=f"-c search_path={SEARCH_PATH.replace(' ', '')}"
        ) as conn:
            alice = users.create_user(conn, "alice", "alice@example.com", "bench-password")
            users.create_user(conn, "bob", "bob@example.com", "bench-password")
            conn.execute(SETUP)
            account = conn.execute(
                "SELECT id FROM account.accounts WHERE user_id = %s", (alice.id,)
            ).fetchone()[0]
            for i in range(200):
                for acct in (account, account + 1):
                    conn.execute(
                        "SELECT submit_order(%s, 1, 'BUY', 'LIMIT', 0.1, %s)", (acct, 50 + i)
                    )
            # Limits high enough not to refuse the benchmark's own repeated logins.
            auth = AuthService(cache, AuthConfig(login_per_username=Limit(10**6, 60)))
            _, issued = auth.login(conn, "alice", "bench-password")
            token = issued.access_token

            cached = _median_us(lambda: auth.authenticate(conn, token))

            def from_db() -> None:
                cache.redis.delete(keys.session_key(issued.session_id))
                auth.authenticate(conn, token)

            uncached = _median_us(from_db)
            figures.append(
                Figure("authenticate_cached", cached, "us", "authenticate from PostgreSQL",
                       uncached, higher_is_better=False, notes={"calls": CALLS})
            )  # fmt: skip

            market.ticker(cache, conn, SYM)
            hit = _median_us(lambda: keys.get_ticker(cache, SYM) or market.ticker(cache, conn, SYM))
            listing = market.listing_id(conn, SYM)

            def ticker_query() -> None:
                conn.execute(
                    "SELECT * FROM market.tickers WHERE exchange_instrument_id = %s "
                    'ORDER BY "time" DESC LIMIT 1',
                    (listing,),
                ).fetchone()

            miss = _median_us(lambda: (market.listing_id(conn, SYM), ticker_query()))
            figures.append(
                Figure("ticker_cached", hit, "us", "ticker read-through miss (PostgreSQL)", miss,
                       higher_is_better=False, notes={"ticker_rows": 3001})
            )  # fmt: skip

            limiter = RateLimiter(cache, Limit(10**9, 60))
            decision = _median_us(lambda: limiter.hit_ip("10.0.0.1"))
            ping = _median_us(cache.redis.ping)
            figures.append(
                Figure("rate_limit_hit", decision, "us", "redis PING", ping, higher_is_better=False)
            )

            def own_orders() -> None:
                with as_user(conn, alice.id) as c:
                    c.execute("SELECT count(*) FROM trade.orders").fetchone()

            def plain() -> None:
                with conn.transaction():
                    conn.execute(
                        "SELECT count(*) FROM trade.orders WHERE account_id = %s", (account,)
                    ).fetchone()

            rls = _median_us(own_orders, 1000)
            base = _median_us(plain, 1000)
            figures.append(
                Figure("rls_own_orders", rls, "us", "same read without RLS", base,
                       higher_is_better=False, notes={"orders": 400, "own": 200})
            )  # fmt: skip

            login = _median_us(lambda: auth.login(conn, "alice", "bench-password"), LOGINS)
            stored = conn.execute(
                "SELECT password_hash FROM account.users WHERE id = %s", (alice.id,)
            ).fetchone()[0]
            verify = _median_us(lambda: passwords.verify_password(stored, "bench-password"), LOGINS)
            figures.append(
                Figure("login", login / 1000, "ms", "argon2id verify alone", verify / 1000,
                       higher_is_better=False, notes={"logins": LOGINS, "argon2": "m=64MiB,t=3,p=4"})
            )  # fmt: skip
    finally:
        cache.redis.close()
        server.stop()
        bench.drop_database(db)
    return figures
