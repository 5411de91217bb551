"""OWASP API Security Top 10 checks that apply to tradestore's API, against the real app,
PostgreSQL and Redis:

API1 broken object-level authorization   another user's ids answer 404, via SQL and HTTP
API2 broken authentication               missing, forged, expired, revoked tokens; refresh reuse
API3 broken object property authorization  mass assignment refused; no secret in a response
API4 unrestricted resource consumption   rate limits (429 + Retry-After), page caps, body size
API8 security misconfiguration / injection  every text parameter survives hostile input
     secrets                             absent from every response and every log line
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import bearer, login, make_client
from tests.api.world import FAST, PASSWORD, SYMBOL, World
from tradestore.api.app import create_app
from tradestore.api.config import ApiSettings
from tradestore.cache import keys
from tradestore.cache.client import Cache
from tradestore.cache.invalidation import Listener
from tradestore.config import load_settings
from tradestore.identity import apikeys, rls
from tradestore.identity.auth import AuthConfig
from tradestore.identity.errors import Forbidden
from tradestore.identity.secretbox import SecretBox
from tradestore.inbound.config import load_webhook_settings

API = "/api/v1"


# ----------------------------------------------------------------------------- API1 BOLA
def _bobs_urls(world: World) -> list[tuple[str, str]]:
    bob = world.bob
    return [
        ("GET", f"/accounts/{bob.account_id}"),
        ("GET", f"/accounts/{bob.account_id}/portfolio"),
        ("GET", f"/accounts/{bob.account_id}/balances"),
        ("GET", f"/accounts/{bob.account_id}/ledger"),
        ("GET", f"/accounts/{bob.account_id}/ledger/verify"),
        ("GET", f"/positions?account_id={bob.account_id}"),
        ("GET", f"/orders/{bob.open_order_id}"),
        ("GET", f"/orders/{bob.open_order_id}/status"),
        ("POST", f"/orders/{bob.open_order_id}/cancel"),
        ("POST", f"/alerts/{bob.alert_id}/acknowledge"),
        ("GET", f"/strategies/{bob.strategy_id}"),
        ("GET", f"/backtests/{bob.backtest_id}"),
    ]


def test_another_users_ids_are_404_through_the_api(
    client: TestClient, world: World, conn: psycopg.Connection[Any]
) -> None:
    bob = bearer(login(client, "bob"))
    # bob reads his own first: his order status is now cached in Redis, shared by all
    assert (
        client.get(f"{API}/orders/{world.bob.open_order_id}/status", headers=bob).json()["cached"]
        is False
    )
    alice = bearer(login(client, "alice"))
    for method, path in _bobs_urls(world):
        response = client.request(method, API + path, headers=alice)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
        assert "bob" not in response.text
    # lists filtered by bob's ids are empty, not errors
    for path in (
        f"/orders?status=all&account_id={world.bob.account_id}",
        f"/fills?order_id={world.bob.filled_order_id}",
        f"/backtests?strategy_id={world.bob.strategy_id}",
    ):
        assert client.get(API + path, headers=alice).json()["items"] == []
    # and placing an order into bob's account writes nothing
    before = conn.execute("SELECT count(*) FROM trade.orders").fetchone()[0]
    order = {
        "account_id": world.bob.account_id,
        "symbol": SYMBOL,
        "side": "BUY",
        "order_type": "LIMIT",
        "quantity": "0.01",
        "price": "30000",
    }
    refused = client.post(f"{API}/orders", headers=alice, json=order)
    assert refused.status_code == 404
    assert conn.execute("SELECT count(*) FROM trade.orders").fetchone()[0] == before
    # bob's things are untouched
    assert (
        conn.execute(
            "SELECT status FROM trade.orders WHERE id = %s", (world.bob.open_order_id,)
        ).fetchone()[0]
        == "NEW"
    )
    assert (
        conn.execute(
            "SELECT is_acknowledged FROM system.alerts WHERE alert_id = %s", (world.bob.alert_id,)
        ).fetchone()[0]
        is False
    )


def test_another_users_rows_are_invisible_through_sql(
    conn: psycopg.Connection[Any], world: World
) -> None:
    with rls.as_user(conn, world.alice.user_id) as c:
        for table, column, bobs in (
            ("account.accounts", "id", world.bob.account_id),
            ("trade.orders", "id", world.bob.open_order_id),
            ("system.alerts", "alert_id", world.bob.alert_id),
            ("analytics.backtest_runs", "id", world.bob.backtest_id),
        ):
            found = c.execute(f"SELECT count(*) FROM {table} WHERE {column} = %s", (bobs,))
            assert found.fetchone()[0] == 0, table
        updated = c.execute(
            "UPDATE trade.orders SET notes = 'mine now' WHERE id = %s", (world.bob.open_order_id,)
        )
        assert updated.rowcount == 0


# ----------------------------------------------------------------------------- API2 auth
def test_missing_forged_expired_and_revoked_tokens_are_401(
    client: TestClient, world: World, conn: psycopg.Connection[Any], db: str, redis_cache: Cache
) -> None:
    tokens = login(client, "alice")
    good = tokens["access_token"]
    session = tokens["session_id"]
    assert (
        client.get(f"{API}/portfolio", headers={"Authorization": f"Bearer {good}"}).status_code
        == 200
    )
    forged = f"{session}." + "A" * 43
    for header in (
        None,
        "Bearer",
        "Basic YWxpY2U6czNjcmV0",
        "Bearer not-a-token",
        f"Bearer {forged}",
        f"Bearer {good}x",
        "Bearer " + "9" * 200,
    ):
        headers = {} if header is None else {"Authorization": header}
        response = client.get(f"{API}/portfolio", headers=headers)
        assert response.status_code == 401, header
        assert response.headers["www-authenticate"] == "Bearer"

    # expired in the database while still cached in Redis: act_as refuses it
    conn.execute(
        "UPDATE account.user_sessions SET created_at = now() - interval '2 days', "
        "expires_at = now() - interval '1 second' WHERE id = %s",
        (session,),
    )
    assert client.get(f"{API}/portfolio", headers=bearer(tokens)).status_code == 401

    # revoked by hand in SQL, cache untouched: refused at once by every route that opens
    # a transaction (act_as) ...
    listener = Listener(db, redis_cache)
    listener.listen()  # (drops every mirror key: it may have missed changes)
    try:
        fresh = login(client, "alice")
        for _ in range(2):  # the second is served from Redis
            assert client.get(f"{API}/portfolio", headers=bearer(fresh)).status_code == 200
        conn.execute(
            "UPDATE account.user_sessions SET revoked_at = now(), revoke_reason = 'admin' "
            "WHERE id = %s",
            (fresh["session_id"],),
        )
        assert client.get(f"{API}/accounts", headers=bearer(fresh)).status_code == 401
        # ... and by the cached reads (no transaction) once the change reaches Redis: the
        # session's key is dropped (cache.invalidation, applied here by the `up` listener)
        assert redis_cache.redis.exists(keys.session_key(fresh["session_id"]))
        assert listener.poll(timeout=1) >= 1
        assert not redis_cache.redis.exists(keys.session_key(fresh["session_id"]))
    finally:
        listener.close()
    assert client.get(f"{API}/portfolio", headers=bearer(fresh)).status_code == 401

    # a disabled user is out, whatever tokens they hold
    third = login(client, "alice")
    conn.execute("UPDATE account.users SET is_active = false WHERE id = %s", (world.alice.user_id,))
    assert client.get(f"{API}/orders", headers=bearer(third)).status_code == 401


def test_refresh_token_reuse_revokes_the_session(
    client: TestClient, world: World, conn: psycopg.Connection[Any]
) -> None:
    tokens = login(client, "alice")
    first = client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert first.status_code == 200
    reused = client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reused.status_code == 401
    # the thief and the owner both lose the session
    assert client.get(f"{API}/portfolio", headers=bearer(first.json())).status_code == 401
    reason = conn.execute(
        "SELECT revoke_reason FROM account.user_sessions WHERE id = %s", (tokens["session_id"],)
    ).fetchone()[0]
    assert reason == "refresh_reuse"
    unknown = client.post(f"{API}/auth/refresh", json={"refresh_token": "x" * 43})
    assert unknown.status_code == 401


# ----------------------------------------------------------------------------- API3 mass assignment
@pytest.mark.parametrize(
    "field,value",
    [
        ("role", "admin"),
        ("user_id", 2),
        ("status", "FILLED"),
        ("filled_quantity", "1"),
        ("balance", "1000000"),
        ("source", "EXTERNAL"),
        ("exchange_order_id", "X-1"),
        ("fee", "-100"),
    ],
)
def test_mass_assignment_is_refused(
    client: TestClient, world: World, conn: psycopg.Connection[Any], field: str, value: Any
) -> None:
    h = bearer(login(client, "alice"))
    before = conn.execute("SELECT count(*) FROM trade.orders").fetchone()[0]
    body = {
        "account_id": world.alice.account_id,
        "symbol": SYMBOL,
        "side": "BUY",
        "order_type": "LIMIT",
        "quantity": "0.01",
        "price": "30000",
        field: value,
    }
    response = client.post(f"{API}/orders", headers=h, json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["field"], error["rule"]) == (field, "is not an accepted field")
    assert conn.execute("SELECT count(*) FROM trade.orders").fetchone()[0] == before


def test_a_trader_cannot_set_their_role_or_balance(
    client: TestClient, world: World, conn: psycopg.Connection[Any]
) -> None:
    h = bearer(login(client, "alice"))
    # no route writes a role or a balance: every such attempt is 404/405, never applied
    for method, path, body in (
        ("PATCH", "/auth/me", {"role": "admin"}),
        ("PUT", "/auth/me", {"role": "admin"}),
        ("POST", f"/accounts/{world.alice.account_id}/balances", {"USDT": "1000000"}),
        ("PATCH", f"/accounts/{world.alice.account_id}", {"initial_capital": "1"}),
    ):
        response = client.request(method, API + path, headers=h, json=body)
        assert response.status_code in (404, 405), (method, path)
    # and underneath, the database refuses the same writes from the trader's role
    with pytest.raises(Forbidden), rls.as_user(conn, world.alice.user_id) as c:
        c.execute("UPDATE account.users SET role = 'admin' WHERE id = %s", (world.alice.user_id,))
    with pytest.raises(Forbidden), rls.as_user(conn, world.alice.user_id) as c:
        c.execute(
            "INSERT INTO account.transactions (account_id, transaction_type, currency, amount) "
            "VALUES (%s, 'DEPOSIT', 'USDT', 1000000)",
            (world.alice.account_id,),
        )
    assert (
        conn.execute(
            "SELECT role FROM account.users WHERE id = %s", (world.alice.user_id,)
        ).fetchone()[0]
        == "trader"
    )
    assert (
        conn.execute(
            "SELECT balance FROM account.balances WHERE account_id = %s AND currency = 'USDT'",
            (world.alice.account_id,),
        ).fetchone()[0]
        == 5999
    )


# ----------------------------------------------------------------------------- API4 consumption
def test_rate_limits_answer_429_with_retry_after(
    db: str, tmp_path: Path, redis_cache: Cache, world: World
) -> None:
    per_ip = ApiSettings(_env_file=None, API_RATE_LIMIT_PER_IP=5)  # type: ignore[call-arg]
    with make_client(db, tmp_path, redis_cache, per_ip) as client:
        statuses = [
            client.get(f"{API}/market/listings").status_code for _ in range(6)
        ]  # 401s count too: the address is limited before anything else
        assert statuses[:5] == [401] * 5 and statuses[5] == 429
        limited = client.get(f"{API}/market/listings")
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert limited.headers["x-ratelimit-remaining"] == "0"
        error = limited.json()["error"]
        assert (error["code"], error["field"]) == ("rate_limited", "client address")

    redis_cache.redis.flushall()
    per_user = ApiSettings(_env_file=None, API_RATE_LIMIT_PER_USER=3)  # type: ignore[call-arg]
    with make_client(db, tmp_path, redis_cache, per_user) as client:
        h = bearer(login(client, "alice"))
        codes = [client.get(f"{API}/portfolio", headers=h).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        last = client.get(f"{API}/portfolio", headers=h)
        assert last.json()["error"]["field"] == "user" and "retry-after" in last.headers
        # another user is not affected
        assert (
            client.get(f"{API}/portfolio", headers=bearer(login(client, "bob"))).status_code == 200
        )


def test_login_attempts_are_limited(client: TestClient, world: World) -> None:
    codes = [
        client.post(
            f"{API}/auth/login", json={"username": "alice", "password": "wrong-password"}
        ).status_code
        for _ in range(11)
    ]
    assert codes[:10] == [401] * 10 and codes[10] == 429
    # even the right password waits now
    right = client.post(f"{API}/auth/login", json={"username": "alice", "password": PASSWORD})
    assert right.status_code == 429 and int(right.headers["retry-after"]) > 0


def test_page_sizes_windows_and_bodies_are_capped(client: TestClient, world: World) -> None:
    h = bearer(login(client, "alice"))
    for path in (
        "/orders",
        "/fills",
        "/alerts",
        "/backtests",
        f"/accounts/{world.alice.account_id}/ledger",
    ):
        response = client.get(f"{API}{path}?limit=501", headers=h)
        assert response.status_code == 422, path
        assert response.json()["error"]["field"] == "limit"
        assert client.get(f"{API}{path}?limit=0", headers=h).status_code == 422
    too_many = client.get(
        f"{API}/market/candles?symbol={SYMBOL}&timeframe=1m&limit=5001", headers=h
    )
    assert too_many.status_code == 422
    wide = client.get(
        f"{API}/market/candles",
        params={"symbol": SYMBOL, "timeframe": "1m", "start": "2020-01-01T00:00:00Z",
                "end": "2024-01-01T00:00:00Z"},
        headers=h,
    )  # fmt: skip
    assert wide.status_code == 422 and wide.json()["error"]["field"] == "start"

    big = b'{"notes": "' + b"x" * 70_000 + b'"}'
    response = client.post(
        f"{API}/orders", headers={**h, "Content-Type": "application/json"}, content=big
    )
    assert response.status_code == 413 and response.json()["error"]["field"] == "body"

    def chunks() -> Any:  # no Content-Length: counted while read
        for _ in range(20):
            yield b"x" * 4096

    streamed = client.post(f"{API}/orders", headers=h, content=chunks())
    assert streamed.status_code == 413


# ----------------------------------------------------------------------------- injection
HOSTILE = [
    "' OR '1'='1",
    "'; DROP TABLE trade.orders; --",
    "1) UNION SELECT password_hash FROM account.users --",
    "../../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "\\x00\\u0000",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "binance:BTCUSDT' --",
    "%",
    "a" * 300,
]
LEAKS = ("password_hash", "$argon2", "traceback", "psycopg", "syntax error", "root:", "select ")


def _no_leak(response: Any, sent: str) -> None:
    """Not a 500, and nothing of the server's insides in the body. The caller's own input
    may come back (an error's `value`, a stored field), so it is taken out first."""
    assert response.status_code < 500, response.text
    text = json.dumps(response.json()).lower()
    for echo in (sent, sent[:100], sent[:128], sent[:200]):
        text = text.replace(json.dumps(echo).lower()[1:-1], "")
    assert not any(leak in text for leak in LEAKS), response.text


def test_hostile_text_in_every_parameter_never_500s_or_leaks(
    client: TestClient, world: World, conn: psycopg.Connection[Any]
) -> None:
    h = bearer(login(client, "alice"))
    # Hostile text that is valid as an idempotency key or client order id is accepted, and
    # each such order holds funds: fund all of them (and the final one) so every body
    # reaches the insert rather than stopping at the funds check.
    conn.execute(
        "SELECT post_ledger_entry(%s, 'DEPOSIT', 'USDT', 10000)", (world.alice.account_id,)
    )
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM trade.orders), (SELECT count(*) FROM account.users)"
    ).fetchone()
    for bad in HOSTILE:
        for path, params in (
            ("/market/candles", {"symbol": bad}),
            ("/market/candles", {"symbol": SYMBOL, "timeframe": bad}),
            ("/market/candles", {"symbol": SYMBOL, "start": bad}),
            ("/market/indicators", {"symbol": SYMBOL, "names": bad}),
            ("/market/ticker", {"symbol": bad}),
            ("/market/latest", {"symbol": bad}),
            ("/market/listings", {"q": bad}),
            ("/orders", {"status": bad}),
            ("/orders", {"cursor": bad}),
            ("/orders", {"account_id": bad}),
            ("/fills", {"cursor": bad}),
            ("/alerts", {"status": bad}),
            ("/backtests", {"status": bad}),
            (f"/accounts/{world.alice.account_id}/ledger", {"currency": bad}),
        ):
            _no_leak(client.get(API + path, params=params, headers=h), bad)
        for path in (f"/orders/{bad}", f"/backtests/{bad}", f"/accounts/{bad}/ledger"):
            _no_leak(client.get(API + path, headers=h), bad)
        _no_leak(client.post(f"{API}/auth/login", json={"username": bad, "password": bad}), bad)
        _no_leak(client.post(f"{API}/auth/refresh", json={"refresh_token": bad[:128]}), bad)
        for field in ("symbol", "idempotency_key", "client_order_id", "side", "order_type"):
            body = {
                "account_id": world.alice.account_id,
                "symbol": SYMBOL,
                "side": "BUY",
                "order_type": "LIMIT",
                "quantity": "0.01",
                "price": "30000",
                field: bad[:100],
            }
            _no_leak(client.post(f"{API}/orders", json=body, headers=h), bad)
    # the hostile text that is valid as notes is stored literally: parameters, not SQL
    note = "'); DELETE FROM trade.orders; --"
    stored = client.post(
        f"{API}/orders",
        headers=h,
        json={"account_id": world.alice.account_id, "symbol": SYMBOL, "side": "BUY",
              "order_type": "LIMIT", "quantity": "0.01", "price": "30000", "notes": note},
    )  # fmt: skip
    assert stored.status_code == 201, stored.text
    assert (
        conn.execute(
            "SELECT notes FROM trade.orders WHERE id = %s", (stored.json()["id"],)
        ).fetchone()[0]
        == note
    )
    after = conn.execute(
        "SELECT (SELECT count(*) FROM account.users), "
        "(SELECT count(*) FROM trade.orders WHERE id <= %s)",
        (counts[0],),
    ).fetchone()
    assert after == (counts[1], counts[0])  # nothing dropped or deleted


def test_static_files_do_not_traverse(client: TestClient) -> None:
    for path in (
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2f..%2fconfig.py",
        "/static/vendor/../../routes/auth.py",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "import" not in response.text
    page = client.get("/")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"


# ----------------------------------------------------------------------------- secrets
BOT_TOKEN = "123456789:AAE-telegram-bot-token-for-tests-only"
API_KEY = "exchange-api-key-0123456789abcdef"
API_SECRET = "exchange-api-secret-fedcba9876543210"


def test_secrets_never_reach_a_response_or_a_log_line(
    db: str,
    tmp_path: Path,
    redis_cache: Cache,
    world: World,
    conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    box = SecretBox("k" * 40)
    apikeys.store(conn, box, world.alice.user_id, "binance", API_KEY, API_SECRET)
    hashes = [r[0] for r in conn.execute("SELECT password_hash FROM account.users")]
    settings = load_settings(
        None,
        DATABASE_URL=db,
        TRADESTORE_HOME=tmp_path,
        DB_POOL_SIZE=2,
        TELEGRAM_BOT_TOKEN=BOT_TOKEN,
    )
    app = create_app(
        settings,
        conninfo=db,
        webhook_settings=load_webhook_settings(None),
        api_settings=ApiSettings(_env_file=None),  # type: ignore[call-arg]
        cache=redis_cache,
        auth_config=AuthConfig(hasher=FAST),
    )
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    with TestClient(app, client=("127.0.0.1", 50001)) as client:
        tokens = login(client, "alice")
        refreshed = client.post(
            f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        h = bearer(refreshed.json())
        for path in (
            "/auth/me", "/accounts", "/portfolio", "/positions", "/orders?status=all", "/fills",
            "/alerts?status=all", "/strategies", "/backtests", f"/backtests/{world.alice.backtest_id}",
            f"/accounts/{world.alice.account_id}/balances", f"/accounts/{world.alice.account_id}/ledger",
            f"/market/ticker?symbol={SYMBOL}", "/kpis/latest", "/orders/999999",
        ):  # fmt: skip
            bodies.append(client.get(API + path, headers=h).text)
        # errors that echo values: a wrong password and a malformed token must not
        bodies.append(
            client.post(
                f"{API}/auth/login", json={"username": "alice", "password": PASSWORD + "x"}
            ).text
        )
        bodies.append(
            client.post(f"{API}/auth/login", json={"username": "alice", "password": ""}).text
        )
        bodies.append(
            client.get(f"{API}/portfolio", headers={"Authorization": "Bearer " + API_SECRET}).text
        )
        bodies.append(client.get("/health").text)
        # anything that does log a secret by mistake is redacted (installed at startup)
        logging.getLogger("tradestore.test").warning(
            "leak attempt %s %s %s", BOT_TOKEN, tokens["access_token"], tokens["refresh_token"]
        )
    secrets = [
        BOT_TOKEN, API_KEY, API_SECRET, PASSWORD, *hashes,
        tokens["access_token"], tokens["refresh_token"],
        refreshed.json()["access_token"], refreshed.json()["refresh_token"],
    ]  # fmt: skip
    for body in bodies:
        for secret in secrets:
            assert secret not in body, (secret[:12], body[:200])
    lines = [r.getMessage() for r in caplog.records] + [caplog.text]
    assert any("leak attempt" in line for line in lines)
    for line in lines:
        for secret in secrets:
            assert secret not in line, (secret[:12], line[:200])


BEYOND_BIGINT = [str(2**63), str(2**64 + 5), str(-(2**63) - 1), "9" * 40]


def _refused(response: Any, field: str, rule: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"], error["rule"]) == ("validation_error", field, rule)


def test_integers_beyond_bigint_are_422_naming_the_field(client: TestClient, world: World) -> None:
    h = bearer(login(client, "alice"))
    rule = f"must be an integer from {-(2**63)} to {2**63 - 1}"
    order = {"account_id": world.alice.account_id, "symbol": SYMBOL, "side": "BUY",
             "order_type": "LIMIT", "quantity": "0.01", "price": "30000"}  # fmt: skip
    for big in BEYOND_BIGINT:
        for method, path, field in (
            ("GET", f"/orders/{big}", "order_id"),
            ("GET", f"/orders/{big}/status", "order_id"),
            ("POST", f"/orders/{big}/cancel", "order_id"),
            ("GET", f"/accounts/{big}", "account_id"),
            ("GET", f"/accounts/{big}/portfolio", "account_id"),
            ("GET", f"/accounts/{big}/balances", "account_id"),
            ("GET", f"/accounts/{big}/ledger", "account_id"),
            ("GET", f"/accounts/{big}/ledger/verify", "account_id"),
            ("GET", f"/strategies/{big}", "strategy_id"),
            ("GET", f"/backtests/{big}", "run_id"),
            ("POST", f"/alerts/{big}/acknowledge", "alert_id"),
        ):
            _refused(client.request(method, API + path, headers=h), field, rule)
        for path, param in (
            ("/orders", "account_id"),
            ("/fills", "order_id"),
            ("/positions", "account_id"),
            ("/backtests", "strategy_id"),
            ("/market/listings", "limit"),
        ):
            _refused(client.get(API + path, params={param: big}, headers=h), param, rule)
        _refused(
            client.post(f"{API}/orders", json={**order, "account_id": int(big)}, headers=h),
            "account_id",
            rule,
        )
    # The largest bigint is a well-formed id that names nothing.
    assert client.get(f"{API}/orders/{2**63 - 1}", headers=h).status_code == 404
    assert client.get(f"{API}/orders/{2**63 - 1}/status", headers=h).status_code == 404


def _raw_json(obj: dict[str, Any], fragment: str, *, quoted: bool = True) -> str:
    """`obj` as JSON with the marker RAW replaced by `fragment` as written (a JSON escape
    such as \\ud800, or a bare literal such as NaN when not `quoted`)."""
    text = json.dumps(obj)
    return text.replace("RAW", fragment) if quoted else text.replace('"RAW"', fragment)


def test_lone_surrogates_in_any_string_field_are_422_naming_the_field(
    client: TestClient, world: World, conn: psycopg.Connection[Any]
) -> None:
    h = bearer(login(client, "alice"))
    rule = "must be valid Unicode text (no lone UTF-16 surrogate)"
    json_headers = {**h, "Content-Type": "application/json"}
    order = {"account_id": world.alice.account_id, "symbol": SYMBOL, "side": "BUY",
             "order_type": "LIMIT", "quantity": "0.01", "price": "30000"}  # fmt: skip
    for lone in ("\\ud800", "\\udfff", "ok\\ud83d", "\\ude00x"):
        for path, body, field in (
            ("/auth/login", {"username": "RAW", "password": "x"}, "username"),
            ("/auth/login", {"username": "alice", "password": "RAW"}, "password"),
            ("/auth/refresh", {"refresh_token": "RAW"}, "refresh_token"),
            ("/orders", {**order, "notes": "RAW"}, "notes"),
            ("/orders", {**order, "client_order_id": "RAW"}, "client_order_id"),
            ("/orders", {**order, "symbol": "RAW"}, "symbol"),
            # a key: named as the client wrote it (a lone surrogate cannot be sent back raw)
            ("/orders", {**order, "RAW": 1}, lone),
        ):
            response = client.post(API + path, content=_raw_json(body, lone), headers=json_headers)
            if field == "password":
                assert response.json()["error"]["value"] == "********"
            _refused(response, field, rule)
    # Raw UTF-8-encoded surrogates (CESU bytes) are refused the same way.
    raw = b'{"username": "\xed\xa0\x80", "password": "x"}'
    _refused(client.post(f"{API}/auth/login", content=raw, headers=json_headers), "username", rule)
    # A surrogate pair is a character like any other: stored as it.
    before = conn.execute("SELECT count(*) FROM trade.orders").fetchone()[0]
    stored = client.post(
        f"{API}/orders",
        content=_raw_json({**order, "notes": "RAW"}, "\\ud83d\\ude00"),
        headers=json_headers,
    )
    assert stored.status_code == 201, stored.text
    assert conn.execute("SELECT count(*) FROM trade.orders").fetchone()[0] == before + 1
    assert (
        conn.execute(
            "SELECT notes FROM trade.orders WHERE id = %s", (stored.json()["id"],)
        ).fetchone()[0]
        == "\U0001f600"
    )
    # Percent-encoded surrogates in the URL decode to U+FFFD: never a 500.
    for url in ("/market/listings?q=%ED%A0%80", "/orders/%ED%A0%80", "/orders?status=%ED%B0%80"):
        assert client.get(API + url, headers=h).status_code < 500


def test_nan_and_infinity_in_a_json_body_are_422(client: TestClient, world: World) -> None:
    h = {**bearer(login(client, "alice")), "Content-Type": "application/json"}
    order = {"account_id": world.alice.account_id, "symbol": SYMBOL, "side": "BUY",
             "order_type": "LIMIT", "quantity": "RAW", "price": "30000"}  # fmt: skip
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        body = _raw_json(order, literal, quoted=False)
        _refused(client.post(f"{API}/orders", content=body, headers=h), "quantity",
                 "must be a finite number")  # fmt: skip
