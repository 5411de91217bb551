"""The REST API end to end over the seeded world: auth flow, portfolio and ledger, orders
with write-through caching and keyset paging, fills, candles and indicators for any
timeframe, tickers through Redis, alerts, strategies and backtests, KPIs, and Redis
being down."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import bearer, login, make_client
from tests.api.world import SYMBOL, World
from tradestore.cache import keys
from tradestore.cache.client import Cache
from tradestore.cache.server import EmbeddedRedis
from tradestore.db import migrate

API = "/api/v1"


def _order(world: World, **overrides: Any) -> dict[str, Any]:
    body = {
        "account_id": world.alice.account_id,
        "symbol": SYMBOL,
        "side": "BUY",
        "order_type": "LIMIT",
        "quantity": "0.01",
        "price": "35000",
    }
    body.update(overrides)
    return body


# ----------------------------------------------------------------------------- auth
def test_login_me_refresh_logout(client: TestClient, world: World) -> None:
    tokens = login(client, "alice")
    assert tokens["token_type"] == "bearer" and tokens["user"]["role"] == "trader"
    me = client.get(f"{API}/auth/me", headers=bearer(tokens))
    assert me.status_code == 200 and me.json()["username"] == "alice"
    assert "password_hash" not in me.text

    rotated = client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    fresh = rotated.json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    # the rotated-away access token is dead, the new one works
    assert client.get(f"{API}/auth/me", headers=bearer(tokens)).status_code == 401
    assert client.get(f"{API}/auth/me", headers=bearer(fresh)).status_code == 200

    assert client.post(f"{API}/auth/logout", headers=bearer(fresh)).status_code == 204
    gone = client.get(f"{API}/auth/me", headers=bearer(fresh))
    assert gone.status_code == 401 and gone.headers["www-authenticate"] == "Bearer"
    assert gone.json()["error"]["code"] == "unauthorized"


def test_wrong_password_is_one_generic_401(client: TestClient, world: World) -> None:
    for username, password in (("alice", "wrong-password"), ("nobody", "whatever-it-is")):
        response = client.post(
            f"{API}/auth/login", json={"username": username, "password": password}
        )
        assert response.status_code == 401
        assert response.json()["error"]["message"] == "invalid username or password"


# ----------------------------------------------------------------------------- portfolio
def test_portfolio_positions_balances_ledger(
    client: TestClient, world: World, conn: psycopg.Connection[Any]
) -> None:
    h = bearer(login(client, "alice"))
    expected = conn.execute(
        "SELECT total_value, available_balance, invested_balance, positions_value, "
        "unrealized_pnl, realized_pnl FROM account.account_valuation(%s)",
        (world.alice.account_id,),
    ).fetchone()
    [account] = client.get(f"{API}/portfolio", headers=h).json()["accounts"]
    shown = tuple(
        Decimal(account[k])
        for k in (
            "total_value",
            "available_balance",
            "invested_balance",
            "current_value",
            "unrealized_pnl",
            "realized_pnl",
        )
    )
    assert shown == expected
    assert Decimal(account["total_pnl"]) == expected[4] + expected[5]
    one = client.get(f"{API}/accounts/{world.alice.account_id}/portfolio", headers=h).json()
    assert one == account

    [position] = client.get(f"{API}/positions", headers=h).json()
    assert (position["symbol"], position["side"], position["quantity"]) == (SYMBOL, "LONG", "0.1")

    balances = client.get(f"{API}/accounts/{world.alice.account_id}/balances", headers=h).json()
    assert balances["cash"] == {"USDT": "5999"}  # 10000 - 4000 - 1 fee

    first = client.get(f"{API}/accounts/{world.alice.account_id}/ledger?limit=2", headers=h).json()
    assert [e["chain_seq"] for e in first["items"]] == [3, 2]
    rest = client.get(
        f"{API}/accounts/{world.alice.account_id}/ledger?limit=2&cursor={first['next_cursor']}",
        headers=h,
    ).json()
    assert [e["chain_seq"] for e in rest["items"]] == [1] and rest["next_cursor"] is None

    verified = client.get(
        f"{API}/accounts/{world.alice.account_id}/ledger/verify", headers=h
    ).json()
    assert verified["ok"] is True and verified["rows_checked"] == 3 and verified["head_seq"] == 3


# ----------------------------------------------------------------------------- orders
def test_submit_is_idempotent_and_keeps_the_cache_current(
    client: TestClient, world: World, redis_cache: Cache
) -> None:
    h = bearer(login(client, "alice"))
    warmed = client.get(f"{API}/orders/{world.alice.open_order_id}/status", headers=h)
    assert warmed.status_code == 200
    assert redis_cache.redis.exists(keys.order_status_key(world.alice.open_order_id))
    created = client.post(f"{API}/orders", headers=h, json=_order(world, idempotency_key="k-1"))
    assert created.status_code == 201, created.text
    order = created.json()
    assert created.headers["location"] == f"{API}/orders/{order['id']}"
    assert (order["status"], order["source"], order["price"]) == ("NEW", "API", "35000")

    # the commit dropped what it made stale (cache.invalidation): the user's active set
    assert keys.get_active_orders(redis_cache, world.alice.user_id) is None

    again = client.post(f"{API}/orders", headers=h, json=_order(world, idempotency_key="k-1"))
    assert again.status_code == 200 and again.json()["id"] == order["id"]

    status = client.get(f"{API}/orders/{order['id']}/status", headers=h).json()
    assert status["cached"] is False and status["status"] == "NEW"  # rebuilt from PostgreSQL
    status = client.get(f"{API}/orders/{order['id']}/status", headers=h).json()
    assert status["cached"] is True and status["status"] == "NEW"

    canceled = client.post(f"{API}/orders/{order['id']}/cancel", headers=h)
    assert canceled.status_code == 200 and canceled.json()["status"] == "CANCELED"
    assert keys.get_order_status(redis_cache, order["id"]) is None  # the stale NEW is gone
    status = client.get(f"{API}/orders/{order['id']}/status", headers=h).json()
    assert (status["cached"], status["status"]) == (False, "CANCELED")
    assert client.post(f"{API}/orders/{order['id']}/cancel", headers=h).status_code == 200

    # read-through after a flush: PostgreSQL answers and the key comes back
    redis_cache.redis.flushall()
    status = client.get(f"{API}/orders/{order['id']}/status", headers=h).json()
    assert (status["cached"], status["status"]) == (False, "CANCELED")
    assert keys.get_order_status(redis_cache, order["id"]) is not None


def test_order_errors_name_field_and_rule(client: TestClient, world: World) -> None:
    h = bearer(login(client, "alice"))
    cases = [
        (_order(world, price=None), 422, "price", "is required for a LIMIT order"),
        (_order(world, quantity="-1"), 422, "quantity", None),
        (_order(world, side="HOLD"), 422, "side", None),
        (_order(world, quantity="0.00000001"), 422, "quantity", None),
        (_order(world, symbol="binance:NOPE"), 404, "symbol", None),
        (_order(world, account_id=999_999), 404, None, None),
    ]
    for body, status, field, rule in cases:
        response = client.post(f"{API}/orders", headers=h, json=body)
        assert response.status_code == status, (body, response.text)
        error = response.json()["error"]
        assert error["message"] and error["rule"]
        if field:
            assert error["field"] == field, error
        if rule:
            assert error["rule"] == rule
    filled = client.post(f"{API}/orders/{world.alice.filled_order_id}/cancel", headers=h)
    assert filled.status_code == 409
    assert filled.json()["error"]["field"] == "status"


def test_an_order_names_its_listing_in_any_spelling(client: TestClient, world: World) -> None:
    h = bearer(login(client, "alice"))
    for spelling in ("BINANCE:btc/usdt", "binance:BTC/USDT"):
        response = client.post(f"{API}/orders", headers=h, json=_order(world, symbol=spelling))
        assert response.status_code == 201, response.text
        assert response.json()["exchange_instrument_id"] == 1


def test_orders_keyset_pages_newest_first(
    client: TestClient, world: World, conn: psycopg.Connection[Any]
) -> None:
    h = bearer(login(client, "alice"))
    made = [
        client.post(f"{API}/orders", headers=h, json=_order(world, price=str(30000 + i))).json()[
            "id"
        ]
        for i in range(5)
    ]
    seen: list[int] = []
    cursor = None
    while True:
        url = f"{API}/orders?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=h).json()
        assert len(page["items"]) <= 2
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    expected = [
        r[0]
        for r in conn.execute(
            "SELECT id FROM trade.orders WHERE account_id = %s AND status IN "
            "('NEW', 'PARTIALLY_FILLED') ORDER BY created_at DESC, id DESC",
            (world.alice.account_id,),
        )
    ]
    assert seen == expected and set(made) <= set(seen) and world.alice.open_order_id in seen
    everything = client.get(f"{API}/orders?status=all", headers=h).json()["items"]
    assert world.alice.filled_order_id in [o["id"] for o in everything]
    only_filled = client.get(f"{API}/orders?status=FILLED", headers=h).json()["items"]
    assert [o["id"] for o in only_filled] == [world.alice.filled_order_id]

    fills = client.get(f"{API}/fills", headers=h).json()["items"]
    assert [(f["order_id"], f["price"]) for f in fills] == [(world.alice.filled_order_id, "40000")]


# ----------------------------------------------------------------------------- market
def test_candles_any_timeframe_match_sql(
    client: TestClient, world: World, conn: psycopg.Connection[Any]
) -> None:
    h = bearer(login(client, "alice"))
    hourly = client.get(f"{API}/market/candles?symbol={SYMBOL}&timeframe=1h", headers=h).json()
    bars = hourly["candles"]
    assert 24 <= len(bars) <= 25
    full = bars[1]  # a complete hour
    start = dt.datetime.fromisoformat(full["time"])
    expected = conn.execute(
        """SELECT sum(volume), max(high), min(low) FROM market.candles
            WHERE exchange_instrument_id = %s AND timeframe = '1m'
              AND "time" >= %s AND "time" < %s""",
        (world.listing_id, start, start + dt.timedelta(hours=1)),
    ).fetchone()
    assert (Decimal(full["volume"]), Decimal(full["high"]), Decimal(full["low"])) == expected

    odd = client.get(
        f"{API}/market/candles?symbol={SYMBOL}&timeframe=7m&limit=10", headers=h
    ).json()["candles"]
    assert len(odd) == 10
    times = [dt.datetime.fromisoformat(c["time"]) for c in odd]
    assert all(b - a == dt.timedelta(minutes=7) for a, b in itertools.pairwise(times))

    window = client.get(
        f"{API}/market/candles",
        params={
            "symbol": SYMBOL,
            "timeframe": "15m",
            "start": start.isoformat(),
            "end": (start + dt.timedelta(hours=1)).isoformat(),
        },
        headers=h,
    ).json()["candles"]
    assert len(window) == 4

    bad = client.get(f"{API}/market/candles?symbol={SYMBOL}&timeframe=1x", headers=h)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "timeframe"
    unknown = client.get(f"{API}/market/candles?symbol=binance:NOPE&timeframe=1h", headers=h)
    assert unknown.status_code == 404


def test_indicators_computed_for_any_timeframe(client: TestClient, world: World) -> None:
    h = bearer(login(client, "alice"))
    candles = client.get(
        f"{API}/market/candles?symbol={SYMBOL}&timeframe=5m&limit=40", headers=h
    ).json()["candles"]
    result = client.get(
        f"{API}/market/indicators?symbol={SYMBOL}&timeframe=5m&limit=40&names=ma_20,rsi_14",
        headers=h,
    ).json()
    assert result["source"] == "computed" and result["names"] == ["ma_20", "rsi_14"]
    last = result["rows"][-1]
    assert last["time"] == candles[-1]["time"]
    closes = [float(c["close"]) for c in candles[-20:]]
    assert last["ma_20"] == pytest.approx(sum(closes) / 20, rel=1e-9)
    assert 0 <= last["rsi_14"] <= 100
    bad = client.get(f"{API}/market/indicators?symbol={SYMBOL}&names=ma_20,evil", headers=h)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "names"


def test_ticker_reads_through_redis(client: TestClient, world: World, redis_cache: Cache) -> None:
    h = bearer(login(client, "alice"))
    first = client.get(f"{API}/market/ticker?symbol={SYMBOL}", headers=h).json()
    second = client.get(f"{API}/market/ticker?symbol={SYMBOL}", headers=h).json()
    assert (first["cached"], second["cached"]) == (False, True)
    assert {k: v for k, v in first.items() if k != "cached"} == {
        k: v for k, v in second.items() if k != "cached"
    }
    redis_cache.redis.flushall()
    third = client.get(f"{API}/market/ticker?symbol={SYMBOL}", headers=h).json()
    assert third["cached"] is False and third["closing_price"] == first["closing_price"]
    latest = client.get(f"{API}/market/latest?symbol={SYMBOL}", headers=h).json()
    assert latest["timeframe"] == "1m"
    assert dt.datetime.fromisoformat(latest["timestamp"]) == world.last_bar


# ----------------------------------------------------------------------------- alerts
def test_alerts_list_and_acknowledge(client: TestClient, world: World) -> None:
    alice = bearer(login(client, "alice"))
    listed = client.get(f"{API}/alerts", headers=alice).json()["items"]
    # system alerts are for admins only
    assert {a["alert_id"] for a in listed} == {world.alice.alert_id}
    ack = client.post(f"{API}/alerts/{world.alice.alert_id}/acknowledge", headers=alice)
    assert ack.json() == {"alert_id": world.alice.alert_id, "acknowledged": True}
    again = client.post(f"{API}/alerts/{world.alice.alert_id}/acknowledge", headers=alice)
    assert again.json()["acknowledged"] is False
    assert client.get(f"{API}/alerts", headers=alice).json()["items"] == []
    system = client.post(f"{API}/alerts/{world.system_alert_id}/acknowledge", headers=alice)
    assert system.status_code == 404
    admin = bearer(login(client, "adam"))
    listed = client.get(f"{API}/alerts", headers=admin).json()["items"]
    assert world.system_alert_id in {a["alert_id"] for a in listed}
    done = client.post(f"{API}/alerts/{world.system_alert_id}/acknowledge", headers=admin)
    assert done.status_code == 200 and done.json()["acknowledged"] is True


# ----------------------------------------------------------------------------- strategies
def test_strategies_and_backtests(client: TestClient, world: World) -> None:
    h = bearer(login(client, "alice"))
    [strategy] = client.get(f"{API}/strategies", headers=h).json()
    assert strategy["id"] == world.alice.strategy_id
    detail = client.get(f"{API}/strategies/{world.alice.strategy_id}", headers=h).json()
    assert detail["parameters"] == {"fast": 10, "slow": 30}
    assert [s["data"] for s in detail["signals"]] == [{"side": "BUY"}]
    assert [b["id"] for b in detail["backtests"]] == [world.alice.backtest_id]

    runs = client.get(f"{API}/backtests", headers=h).json()["items"]
    assert [r["id"] for r in runs] == [world.alice.backtest_id]
    run = client.get(f"{API}/backtests/{world.alice.backtest_id}", headers=h).json()
    assert (run["sharpe_ratio"], run["total_trades"], run["trades"]) == ("1.8", 12, None)
    assert len(run["equity_curve"]) == 60 and run["equity_curve"][0]["equity"] == 10000
    with_trades = client.get(
        f"{API}/backtests/{world.alice.backtest_id}?include_trades=true", headers=h
    ).json()
    assert len(with_trades["trades"]) == 3


# ----------------------------------------------------------------------------- KPIs
def test_kpis_for_admins_with_the_module(
    client: TestClient, world: World, conn: psycopg.Connection[Any]
) -> None:
    trader = client.get(f"{API}/kpis/latest", headers=bearer(login(client, "alice")))
    assert trader.status_code == 403 and trader.json()["error"]["field"] == "role"
    admin = bearer(login(client, "adam"))
    none_yet = client.get(f"{API}/kpis/latest", headers=admin)
    assert (
        none_yet.status_code == 404 and "take_kpi_snapshot" in none_yet.json()["error"]["message"]
    )
    conn.execute("SELECT system.take_kpi_snapshot()")
    kpi = client.get(f"{API}/kpis/latest", headers=admin).json()
    assert kpi["open_positions_count"] == 2  # alice's and bob's


def test_kpi_history_with_levels_and_alarms(
    client: TestClient, world: World, conn: psycopg.Connection[Any]
) -> None:
    trader = client.get(f"{API}/kpis/history", headers=bearer(login(client, "alice")))
    assert trader.status_code == 403
    admin = bearer(login(client, "adam"))
    conn.execute("SELECT system.set_kpi_threshold('open_positions_count', 1, 0, 'HIGH')")
    conn.execute("SELECT system.take_kpi_snapshot()")
    body = client.get(f"{API}/kpis/history?hours=1", headers=admin).json()
    assert [s["open_positions_count"] for s in body["snapshots"]] == [2]
    levels = {t["kpi"]: t for t in body["thresholds"]}
    assert levels["open_positions_count"]["customized"] is True
    assert levels["outbox_backlog"] == {"kpi": "outbox_backlog", "raise_above": "100",
                                        "clear_at": "20", "severity": "HIGH", "enabled": True,
                                        "customized": False}  # fmt: skip
    assert [(a["kpi"], a["last_value"]) for a in body["alarms"]] == [("open_positions_count", "2")]
    bad = client.get(f"{API}/kpis/history?hours=0", headers=admin)
    assert bad.status_code == 422


def test_kpis_without_the_module_say_how_to_enable_it(
    db: str, tmp_path: Path, redis_cache: Cache, world: World
) -> None:
    migrate.disable_modules(db, ["kpi"])
    with make_client(db, tmp_path, redis_cache) as client:
        response = client.get(f"{API}/kpis/latest", headers=bearer(login(client, "adam")))
    assert response.status_code == 409
    error = response.json()["error"]
    assert (error["code"], error["field"], error["value"]) == ("module_disabled", "module", "kpi")
    assert "tradestore modules enable kpi" in error["message"]


# ----------------------------------------------------------------------------- Redis down
def test_redis_down_breaks_nothing(
    db: str, tmp_path: Path, own_redis: EmbeddedRedis, world: World
) -> None:
    cache = Cache.from_url(own_redis.url, retry_after=0.0)
    with make_client(db, tmp_path, cache) as client:
        h = bearer(login(client, "alice"))
        assert client.get(f"{API}/market/ticker?symbol={SYMBOL}", headers=h).status_code == 200
        own_redis.stop()
        # sessions, rate limits, tickers and order status fall back to PostgreSQL
        for path in (
            "/portfolio",
            f"/market/ticker?symbol={SYMBOL}",
            f"/orders/{world.alice.open_order_id}/status",
            "/alerts",
        ):
            response = client.get(API + path, headers=h)
            assert response.status_code == 200, (path, response.text)
        created = client.post(f"{API}/orders", headers=h, json=_order(world))
        assert created.status_code == 201
        relogin = client.post(
            f"{API}/auth/login", json={"username": "bob", "password": "s3cret-enough"}
        )
        assert relogin.status_code == 200
    cache.redis.close()


def test_unknown_route_and_method_have_the_error_shape(client: TestClient) -> None:
    missing = client.get(f"{API}/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.delete(f"{API}/portfolio")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
