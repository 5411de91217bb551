"""The cached serving path: reads Redis can answer open no database connection, and
what they answer is still the authenticated user's own and current."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
from benchmarks.roundtrips import RoundTrips
from fastapi.testclient import TestClient

from tests.api.conftest import bearer, login
from tests.api.world import SYMBOL, World
from tradestore.cache import invalidation, keys
from tradestore.cache.client import Cache

API = "/api/v1"


def _checkouts(client: TestClient) -> int:
    """Connections the REST API took from its pool so far."""
    return int(client.app.state.sync_pool.get_stats().get("requests_num", 0))  # type: ignore[attr-defined]


def test_cached_reads_open_no_database_connection(client: TestClient, world: World) -> None:
    h = bearer(login(client, "alice"))
    portfolio = client.get(f"{API}/portfolio", headers=h)
    bar = client.get(f"{API}/market/latest?symbol={SYMBOL}", headers=h)
    assert portfolio.status_code == bar.status_code == 200
    assert bar.json()["cached"] is False
    before = _checkouts(client)
    again = client.get(f"{API}/portfolio", headers=h)
    cached_bar = client.get(f"{API}/market/latest?symbol={SYMBOL}", headers=h)
    assert _checkouts(client) == before
    assert again.json() == portfolio.json()
    assert cached_bar.json()["cached"] is True
    assert cached_bar.json()["close"] == bar.json()["close"]
    # another spelling of the listing is resolved in PostgreSQL (and answers the same)
    other = client.get(f"{API}/market/latest?symbol=binance:BTC/USDT", headers=h)
    assert other.json()["symbol"] == cached_bar.json()["symbol"]
    assert _checkouts(client) == before + 1


def test_a_cached_portfolio_is_only_its_owners(
    client: TestClient, world: World, redis_cache: Cache
) -> None:
    alice, bob = bearer(login(client, "alice")), bearer(login(client, "bob"))
    for _ in range(2):  # the second round is served from Redis
        mine = client.get(f"{API}/portfolio", headers=alice).json()["accounts"]
        theirs = client.get(f"{API}/portfolio", headers=bob).json()["accounts"]
        assert [a["account_id"] for a in mine] == [world.alice.account_id]
        assert [a["account_id"] for a in theirs] == [world.bob.account_id]
    assert redis_cache.redis.exists(keys.portfolio_key(world.alice.user_id, "trader"))


def test_a_forged_token_naming_a_session_neither_passes_nor_spends_its_owners_limit(
    client: TestClient, world: World, redis_cache: Cache
) -> None:
    tokens = login(client, "alice")
    assert client.get(f"{API}/portfolio", headers=bearer(tokens)).status_code == 200
    counter = keys.rate_limit_user_key(world.alice.user_id)
    spent = int(redis_cache.redis.get(counter))
    forged = {"Authorization": f"Bearer {tokens['session_id']}." + "A" * 43}
    assert client.get(f"{API}/portfolio", headers=forged).status_code == 401
    assert int(redis_cache.redis.get(counter)) == spent
    # the real token goes on (PostgreSQL vouches for it again) and is counted
    assert client.get(f"{API}/portfolio", headers=bearer(tokens)).status_code == 200
    assert int(redis_cache.redis.get(counter)) == spent + 1


def test_orders_and_ledger_entries_drop_the_cached_portfolio(
    client: TestClient, world: World, redis_cache: Cache, conn: psycopg.Connection[Any]
) -> None:
    h = bearer(login(client, "alice"))
    key = keys.portfolio_key(world.alice.user_id, "trader")

    def cash() -> Decimal:
        [account] = client.get(f"{API}/portfolio", headers=h).json()["accounts"]
        return Decimal(account["cash_balance"])

    before = cash()
    assert redis_cache.redis.exists(key)
    order = {
        "account_id": world.alice.account_id,
        "symbol": SYMBOL,
        "side": "BUY",
        "order_type": "LIMIT",
        "quantity": "0.01",
        "price": "35000",
    }
    assert client.post(f"{API}/orders", headers=h, json=order).status_code == 201
    assert not redis_cache.redis.exists(key)  # dropped as the order's commit returned

    assert cash() == before and redis_cache.redis.exists(key)
    invalidation.attach(conn, redis_cache)  # as every tradestore process's connections are
    conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'USDT', 1000)", (world.alice.account_id,))
    assert not redis_cache.redis.exists(key)
    assert cash() == before + 1000
    # A fill's ledger rows are linked to its order: the order's change drops the key.
    assert redis_cache.redis.exists(key)
    placed = conn.execute("SELECT max(id) FROM trade.orders").fetchone()[0]
    conn.execute("SELECT apply_fill(%s, 'T-cache-1', 0.01, 35000, 0.35, 'USDT')", (placed,))
    assert not redis_cache.redis.exists(key)
    assert cash() == before + 1000 - Decimal("350.35")


def test_a_cached_portfolio_read_is_one_redis_round_trip_and_stops_at_revocation(
    client: TestClient, world: World, redis_cache: Cache, conn: psycopg.Connection[Any]
) -> None:
    tokens = login(client, "alice")
    h = bearer(tokens)
    first = client.get(f"{API}/portfolio", headers=h)
    assert first.status_code == 200
    with RoundTrips() as rt:
        again = client.get(f"{API}/portfolio", headers=h)
        # the address limit, the session, the user limit and the body: one script call
        assert rt.take() == (0, 1)
    assert again.json() == first.json()
    # Revoked in SQL: the commit drops session:{id}, so the next request asks PostgreSQL,
    # which refuses it; the cached portfolio is not answered to it.
    invalidation.attach(conn, redis_cache)
    conn.execute(
        "UPDATE account.user_sessions SET revoked_at = now(), is_active = false WHERE id = %s",
        (tokens["session_id"],),
    )
    assert redis_cache.redis.exists(keys.portfolio_key(world.alice.user_id, "trader"))
    assert client.get(f"{API}/portfolio", headers=h).status_code == 401
