"""The app factory, GET /health, and serving with uvicorn on loopback."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import httpx
import psycopg
from fastapi.testclient import TestClient

from tests.notify.conftest import wait_until
from tradestore.api.app import create_app
from tradestore.api.server import serve
from tradestore.config import load_settings
from tradestore.inbound.config import load_webhook_settings


def _client(db: str, tmp_path: Path, **settings: object) -> TestClient:
    app_settings = load_settings(
        None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path, DB_POOL_SIZE=2, **settings
    )
    return TestClient(
        create_app(app_settings, conninfo=db, webhook_settings=load_webhook_settings(None))
    )


def test_routes_are_mounted(db: str, tmp_path: Path) -> None:
    with _client(db, tmp_path) as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) >= {
        "/health",
        "/webhooks/tradingview",
        "/api/v1/auth/login",
        "/api/v1/orders",
    }
    assert "post" in paths["/webhooks/tradingview"] and "get" in paths["/health"]


def test_health_reports_database_redis_and_workers(
    db: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    with _client(db, tmp_path) as client:
        response = client.get("/health", headers={"X-Request-ID": "probe-1"})
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "probe-1"
        body = response.json()
        assert body["status"] == "ok"
        assert body["database"]["status"] == "ok" and body["database"]["server_version"]
        # REDIS_URL unset: the embedded server the app started under TRADESTORE_HOME
        assert body["redis"]["status"] == "ok" and body["redis"]["embedded"] is True
        assert body["workers"]["notify"]["status"] == "idle"  # nothing due, no worker

        # messages are due and no worker is alive: degraded, and it says why
        conn.execute("SELECT enqueue_notification(1, 'WARN', 't', 'm')")
        body = client.get("/health").json()
        assert body["status"] == "degraded"
        assert body["workers"]["notify"]["status"] == "down"
        assert body["workers"]["notify"]["outbox"]["due"] == 1

        # a live heartbeat makes it ok
        conn.execute(
            "SELECT system.worker_heartbeat('w1', 'notify', 'running', '{\"heartbeat_seconds\": 15}')"
        )
        body = client.get("/health").json()
        assert body["status"] == "ok"
        [worker] = body["workers"]["workers"]
        assert (worker["worker_id"], worker["alive"]) == ("w1", True)

        conn.execute(
            "UPDATE system.worker_heartbeats SET last_seen_at = now() - interval '10 minutes'"
        )
        assert client.get("/health").json()["workers"]["notify"]["status"] == "down"


def test_health_checks_redis_when_configured(db: str, tmp_path: Path) -> None:
    # A port nothing listens on: the check runs for real and reports the failure.
    with _client(db, tmp_path, REDIS_URL="redis://127.0.0.1:9/0") as client:
        body = client.get("/health").json()
    assert body["redis"]["status"] == "down"
    assert body["status"] == "degraded" and body["problems"] == ["redis"]


def test_health_is_503_when_the_database_is_down(tmp_path: Path) -> None:
    dead = f"host={tmp_path} port=1 dbname=none connect_timeout=1"
    with _client(dead, tmp_path) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["database"]["status"] == "down"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_uvicorn_until_stopped(db: str, tmp_path: Path) -> None:
    settings = load_settings(None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path, DB_POOL_SIZE=2)
    port = _free_port()
    stop = threading.Event()
    thread = threading.Thread(
        target=serve,
        args=(settings, "127.0.0.1", port, stop),
        kwargs={
            "conninfo": db,
            "webhook_settings": load_webhook_settings(None),
            "log_level": "warning",
        },
        daemon=True,
    )
    thread.start()
    try:

        def up() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
            except httpx.TransportError:
                return None

        response = wait_until(up, what="the server")
        assert response.status_code == 200 and response.json()["database"]["status"] == "ok"
        # the webhook answers over real HTTP too (no credential in the body: 401)
        hook = httpx.post(f"http://127.0.0.1:{port}/webhooks/tradingview", content=b"{}", timeout=5)
        assert hook.status_code == 401
        # what `tradestore up` serves a person: the dashboard, its vendored chart library,
        # and the REST API (here with the embedded Redis the app started itself)
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 200 and "/static/app.js" in page.text
        lib = httpx.get(
            f"http://127.0.0.1:{port}/static/vendor/lightweight-charts.standalone.production.js",
            timeout=5,
        )
        assert lib.status_code == 200 and "Lightweight Charts" in lib.text[:300]
        refused = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/login",
            json={"username": "nobody", "password": "whatever-it-is"},
            timeout=10,
        )
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_health_lists_the_up_services_with_state_message_and_lag(
    db: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    """The heartbeats `up`'s fleet writes (Fleet.beat) reach /health: each service's state,
    last message, lag, restarts and last error; a runner's message and lag are its row's."""
    from tests.strategy.live.test_runner import _runner
    from tests.trading.desk import build_desk
    from tradestore.ops import fleet

    desk = build_desk(conn, cash=10_000)
    runner_id = _runner(conn, desk)
    conn.execute(
        "UPDATE analytics.strategy_runners SET state = 'RUNNING', last_lag_ms = 125.5, "
        "last_message = 'bar 2024-01-01 00:05 handled' WHERE id = %s",
        (runner_id,),
    )
    settings = load_settings(None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path)
    f = fleet.Fleet(lambda: db, settings, holder="test:1")
    statuses = [
        fleet.ServiceStatus(f"runner:{runner_id}", "runner", state="running"),
        fleet.ServiceStatus("collector:1", "collector", state="backoff", restarts=2,
                            last_message="feed failed", lag_ms=30000.0,
                            last_error="ConnectionError: exchange down"),
    ]  # fmt: skip
    for status in statuses:  # children as reconcile makes them, without their threads
        f.children[status.name] = fleet._Child(
            threading.Thread(target=lambda: None), threading.Event(), status
        )
    f.beat(conn)

    with _client(db, tmp_path) as client:
        workers = client.get("/health").json()["workers"]["workers"]
    services = {w["service"]: w for w in workers if w.get("service")}
    runner = services[f"runner:{runner_id}"]
    assert runner["worker_id"] == f"runner:{runner_id}@test:1"
    assert (runner["kind"], runner["state"], runner["alive"]) == ("runner", "running", True)
    assert runner["service_state"] == "running"
    assert runner["last_message"] == "bar 2024-01-01 00:05 handled"
    assert runner["lag_ms"] == 125.5
    collector = services["collector:1"]
    assert (collector["kind"], collector["state"], collector["alive"]) == (
        "collector", "stopped", False,
    )  # fmt: skip
    assert collector["service_state"] == "backoff"
    assert (collector["last_message"], collector["lag_ms"]) == ("feed failed", 30000.0)
    assert (collector["restarts"], collector["last_error"]) == (2, "ConnectionError: exchange down")
