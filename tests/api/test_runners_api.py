"""REST runners: the list under row-level security, halting and resuming one runner through
the SQL functions (owner or admin), and the global trading halt (admins)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from tests.api.world import SYMBOL, Trader, World

API = "/api/v1"
Headers = Callable[[str], dict[str, str]]


def _runner(conn: psycopg.Connection[Any], world: World, trader: Trader) -> int:
    """A RUNNING runner of the trader's strategy on their account, with an open order of
    its strategy (which halting it must cancel)."""
    runner = conn.execute(
        """INSERT INTO analytics.strategy_runners
               (strategy_id, account_id, listing_ids, timeframe, mode, state, last_message,
                last_bar_at, last_lag_ms)
           VALUES (%s, %s, ARRAY[%s]::bigint[], '1m', 'simulated', 'RUNNING', 'bar handled',
                   %s, 42)
        RETURNING id""",
        (trader.strategy_id, trader.account_id, world.listing_id, world.last_bar),
    ).fetchone()[0]
    order = conn.execute(
        "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 0.01, 30000)",
        (trader.account_id, world.listing_id),
    ).fetchone()[0]
    conn.execute(
        "UPDATE trade.orders SET strategy_id = %s WHERE id = %s", (trader.strategy_id, order)
    )
    trader.extra["strategy_order"] = order
    return int(runner)


def _state(conn: psycopg.Connection[Any], runner: int) -> tuple[Any, ...]:
    return conn.execute(
        "SELECT state, halted_by FROM analytics.strategy_runners WHERE id = %s", (runner,)
    ).fetchone()


def _order_status(conn: psycopg.Connection[Any], order: int) -> str:
    return conn.execute("SELECT status FROM trade.orders WHERE id = %s", (order,)).fetchone()[0]


def test_owner_sees_their_runners_and_admins_see_all(
    client: TestClient, world: World, conn: psycopg.Connection[Any], as_user: Headers
) -> None:
    mine = _runner(conn, world, world.alice)
    theirs = _runner(conn, world, world.bob)
    listed = client.get(f"{API}/runners", headers=as_user("alice")).json()
    assert [r["id"] for r in listed] == [mine]
    row = listed[0]
    assert row["strategy"] == "alice-sma"
    assert row["account_id"] == world.alice.account_id
    assert row["symbols"] == ["BTCUSDT"]
    assert (row["timeframe"], row["mode"], row["state"], row["enabled"]) == (
        "1m", "simulated", "RUNNING", True,
    )  # fmt: skip
    assert row["last_message"] == "bar handled"
    assert row["last_lag_ms"] == "42"
    assert row["last_bar_at"] is not None
    admin = client.get(f"{API}/runners", headers=as_user("adam")).json()
    assert [r["id"] for r in admin] == [mine, theirs]
    assert client.get(f"{API}/runners", headers=as_user("rita")).json() == []


def test_another_users_runner_is_404_and_untouched(
    client: TestClient, world: World, conn: psycopg.Connection[Any], as_user: Headers
) -> None:
    runner = _runner(conn, world, world.alice)
    bob = as_user("bob")
    for path in ("", "/halt", "/resume"):
        method = client.get if path == "" else client.post
        response = method(f"{API}/runners/{runner}{path}", headers=bob)
        assert response.status_code == 404, (path, response.text)
    assert _state(conn, runner) == ("RUNNING", None)
    assert _order_status(conn, world.alice.extra["strategy_order"]) == "NEW"


def test_readonly_cannot_halt_or_resume(
    client: TestClient, world: World, conn: psycopg.Connection[Any], as_user: Headers
) -> None:
    runner = _runner(conn, world, world.alice)
    rita = as_user("rita")
    for action in ("halt", "resume"):
        response = client.post(f"{API}/runners/{runner}/{action}", headers=rita)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["field"] == "role"
    for action in ("halt", "resume"):
        response = client.post(f"{API}/trading/{action}", headers=as_user("alice"))
        assert response.status_code == 403, response.text
    assert _state(conn, runner) == ("RUNNING", None)
    assert conn.execute("SELECT halted FROM trade.trading_halt").fetchone() == (False,)


def test_owner_halts_and_resumes_through_the_sql_functions(
    client: TestClient, world: World, conn: psycopg.Connection[Any], as_user: Headers
) -> None:
    runner = _runner(conn, world, world.alice)
    alice = as_user("alice")
    halted = client.post(f"{API}/runners/{runner}/halt", headers=alice)
    assert halted.status_code == 200, halted.text
    body = halted.json()
    assert body["changed"] is True and body["canceled_orders"] == 1
    assert body["runner"]["state"] == "HALTED"
    assert body["runner"]["halted_by"] == "manual"
    assert body["runner"]["last_message"] == "halted by alice"
    assert _order_status(conn, world.alice.extra["strategy_order"]) == "CANCELED"
    # alice's other open order is not the strategy's: it stays.
    assert _order_status(conn, world.alice.open_order_id) == "NEW"
    alert = conn.execute(
        "SELECT severity, message FROM system.alerts WHERE dedupe_key = %s",
        (f"runner-halted:{runner}",),
    ).fetchone()
    assert alert[0] == "HIGH" and "halted by alice" in alert[1]
    again = client.post(f"{API}/runners/{runner}/halt", headers=alice).json()
    assert again["changed"] is False
    resumed = client.post(f"{API}/runners/{runner}/resume", headers=alice)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["changed"] is True
    assert resumed.json()["runner"]["state"] == "RUNNING"
    assert _state(conn, runner) == ("RUNNING", None)


def test_admin_global_halt_refuses_new_orders_and_resume_restores(
    client: TestClient, world: World, conn: psycopg.Connection[Any], as_user: Headers
) -> None:
    runner = _runner(conn, world, world.alice)
    admin, alice = as_user("adam"), as_user("alice")
    halted = client.post(f"{API}/trading/halt", headers=admin, json={"reason": "exchange outage"})
    assert halted.status_code == 200, halted.text
    assert halted.json()["halted"] is True
    assert halted.json()["reason"] == "exchange outage"
    assert halted.json()["canceled_orders"] >= 3  # both traders' open orders and the runner's
    assert _order_status(conn, world.bob.open_order_id) == "CANCELED"
    assert _state(conn, runner) == ("HALTED", "halt")
    assert client.get(f"{API}/trading/halt", headers=alice).json()["halted"] is True

    order = {"account_id": world.alice.account_id, "symbol": SYMBOL, "side": "BUY",
             "order_type": "LIMIT", "quantity": "0.01", "price": "35000"}  # fmt: skip
    refused = client.post(f"{API}/orders", headers=alice, json=order)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["field"] == "trading_halt"
    assert "trading is halted" in error["message"]
    # The owner cannot undo the admin's halt for their runner.
    blocked = client.post(f"{API}/runners/{runner}/resume", headers=alice)
    assert blocked.status_code == 409, blocked.text
    assert blocked.json()["error"]["field"] == "runner"
    assert _state(conn, runner) == ("HALTED", "halt")

    resumed = client.post(f"{API}/trading/resume", headers=admin)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["halted"] is False and resumed.json()["resumed_runners"] == 1
    assert _state(conn, runner) == ("RUNNING", None)
    accepted = client.post(f"{API}/orders", headers=alice, json=order)
    assert accepted.status_code == 201, accepted.text
