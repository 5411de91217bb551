"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against
a uvicorn server on 127.0.0.1 with the seeded world. It logs in, sees the portfolio and
positions, switches the chart's timeframe, acknowledges an alert, opens a backtest's
equity curve and logs out; every request the page makes stays on the server's origin.

Needs /usr/bin/chromium (apt-get install chromium) and the playwright package (pip
install playwright; no `playwright install`: the Debian browser is used). Skipped
without them."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn

from tests.api.world import FAST, PASSWORD, World
from tradestore.api.app import create_app
from tradestore.api.config import ApiSettings
from tradestore.cache.client import Cache
from tradestore.config import load_settings
from tradestore.identity.auth import AuthConfig
from tradestore.inbound.config import load_webhook_settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000

if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
    pytest.skip(
        "Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(db: str, tmp_path: Path, redis_cache: Cache, world: World) -> Iterator[str]:
    settings = load_settings(None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path, DB_POOL_SIZE=2)
    app = create_app(
        settings,
        conninfo=db,
        webhook_settings=load_webhook_settings(None),
        api_settings=ApiSettings(_env_file=None),  # type: ignore[call-arg]
        cache=redis_cache,
        auth_config=AuthConfig(hasher=FAST),
    )
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def page(server: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            args=CHROMIUM_ARGS,
            headless=True,
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.requests_seen = []  # type: ignore[attr-defined]
        pg.console_errors = []  # type: ignore[attr-defined]
        pg.on("request", lambda r: pg.requests_seen.append(r.url))  # type: ignore[attr-defined]
        pg.on(
            "console",
            lambda m: pg.console_errors.append(m.text) if m.type == "error" else None,  # type: ignore[attr-defined]
        )
        pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))  # type: ignore[attr-defined]
        try:
            yield pg
        finally:
            context.close()
            browser.close()


def _shown_number(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def test_dashboard_login_portfolio_chart_alert_backtest_logout(
    page: Any, server: str, world: World, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    page.goto(server + "/")
    page.get_by_test_id("login-view").wait_for(state="visible")

    # a wrong password is refused on the page, with the server's generic message
    page.fill("#username", "alice")
    page.fill("#password", "not-the-password")
    page.get_by_test_id("login-submit").click()
    sync_api.expect(page.get_by_test_id("login-error")).to_contain_text(
        "invalid username or password"
    )

    page.fill("#password", PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("app-view").wait_for(state="visible")
    sync_api.expect(page.get_by_test_id("who")).to_have_text("alice (trader)")

    # the seeded portfolio: total value as the database values it, rounded to cents
    total = conn.execute(
        "SELECT total_value, unrealized_pnl + realized_pnl FROM account.account_valuation(%s)",
        (world.alice.account_id,),
    ).fetchone()
    tile = page.get_by_test_id(f"account-{world.alice.account_id}")
    sync_api.expect(tile).to_be_visible()
    shown_total = _shown_number(tile.get_by_test_id("total-value").inner_text())
    assert shown_total == total[0].quantize(Decimal("0.01"))
    assert _shown_number(tile.get_by_test_id("total-pnl").inner_text()) == total[1].quantize(
        Decimal("0.01")
    )
    # only alice's account: bob's never reaches her page
    assert page.get_by_test_id(f"account-{world.bob.account_id}").count() == 0

    positions = page.get_by_test_id("positions")
    sync_api.expect(positions.locator("tbody tr")).to_have_count(1)
    sync_api.expect(positions).to_contain_text("binance:BTCUSDT")
    sync_api.expect(positions).to_contain_text("LONG")
    orders = page.get_by_test_id("orders")
    sync_api.expect(
        orders.locator(f'tr[data-order-id="{world.alice.open_order_id}"]')
    ).to_be_visible()
    assert orders.locator(f'tr[data-order-id="{world.bob.open_order_id}"]').count() == 0
    sync_api.expect(page.get_by_test_id("fills").locator("tbody tr")).to_have_count(1)

    # the chart: 1h bars with overlays, then switched to 5m
    chart = page.get_by_test_id("chart")
    sync_api.expect(chart).to_have_attribute("data-timeframe", "1h")
    hourly = int(chart.get_attribute("data-bars"))
    assert 24 <= hourly <= 25  # a day of 1m bars, aggregated in real time
    assert "bollinger_upper" in chart.get_attribute("data-overlays")
    assert chart.locator("canvas").count() > 0
    page.get_by_test_id("tf-5m").click()
    sync_api.expect(chart).to_have_attribute("data-timeframe", "5m")
    sync_api.expect(page.get_by_test_id("chart-status")).to_contain_text("5m")
    # a day of 1-minute bars is 288 five-minute bars (289 when the day starts mid-bucket)
    assert 288 <= int(chart.get_attribute("data-bars")) <= 289
    sync_api.expect(page.get_by_test_id("tf-5m")).to_have_attribute("aria-pressed", "true")

    # acknowledge alice's alert: gone from the list, acknowledged in the database
    alerts = page.get_by_test_id("alerts")
    sync_api.expect(alerts).to_contain_text("alice: drawdown over limit")
    sync_api.expect(alerts).to_contain_text("database backup failed")  # system alert, shown
    page.get_by_test_id(f"ack-{world.alice.alert_id}").click()
    sync_api.expect(alerts).not_to_contain_text("alice: drawdown over limit")
    acked = conn.execute(
        "SELECT is_acknowledged, acknowledged_by FROM system.alerts WHERE alert_id = %s",
        (world.alice.alert_id,),
    ).fetchone()
    assert acked == (True, "alice")

    # backtest results with the equity curve of the newest run
    sync_api.expect(page.get_by_test_id(f"backtest-{world.alice.backtest_id}")).to_be_visible()
    sync_api.expect(page.get_by_test_id("equity-title")).to_contain_text(
        f"Run #{world.alice.backtest_id}"
    )
    sync_api.expect(page.get_by_test_id("equity-title")).to_contain_text("60 points")
    # TRADESTORE_SCREENSHOT_DIR=... keeps a picture of the page for a person to look at
    shots = Path(os.environ.get("TRADESTORE_SCREENSHOT_DIR") or tmp_path)
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

    page.get_by_test_id("logout").click()
    page.get_by_test_id("login-view").wait_for(state="visible")
    revoked = conn.execute(
        "SELECT count(*) FROM account.user_sessions WHERE user_id = %s AND revoke_reason = 'logout'",
        (world.alice.user_id,),
    ).fetchone()[0]
    assert revoked == 1

    # nothing was fetched from anywhere but the server, and the page raised no error
    # (a Content-Security-Policy violation would be one)
    foreign = [u for u in page.requests_seen if not u.startswith(server)]
    assert foreign == []
    # (the refused login's 401 is logged by Chromium as a failed resource load; that is all)
    errors = [m for m in page.console_errors if "401" not in m]
    assert errors == []
