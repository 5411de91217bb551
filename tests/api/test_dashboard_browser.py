"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright, against
a uvicorn server on 127.0.0.1 with the seeded world plus real ingested Binance candles
(XRP/ETH 1m from /work/shared/data, else a small synthetic series of the same shape: an
ETH-quoted pair whose prices are a few thousandths) and a real backtest over them. Every
view is visited at 1280 px and 800 px; every request stays on the server's origin, the
console stays clean, and screenshots are saved under the test's temp dir.

Needs /usr/bin/chromium (apt-get install chromium) and the playwright package (pip
install playwright; no `playwright install`: the Debian browser is used). Skipped
without them."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
from tradestore.market.ingest import ingest_candles
from tradestore.strategy.runner import BacktestRequest, run_backtest

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
        context = browser.new_context(viewport={"width": 1280, "height": 900})
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


REAL_CANDLES = Path("/work/shared/data/binance_XRP_ETH-1m.csv")
XRP_RULES = '{"tick_size": "0.00000001", "step_size": "1", "min_notional": "0.001"}'


def _synthetic_xrp_eth(path: Path) -> Path:
    """Two days of 1-minute XRP/ETH-like bars (prices around 0.0014, 8 decimals), for a
    machine without the shared real data."""
    lines = ["time,open,high,low,close,volume"]
    t0 = dt.datetime(2019, 10, 11, tzinfo=dt.UTC)
    price = 141342
    for i in range(2 * 24 * 60):
        step = ((i * 7919) % 23) - 11
        close = price + step
        high, low = max(price, close) + 5, min(price, close) - 5
        stamp = (t0 + dt.timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(
            f"{stamp},0.{price:08d},0.{high:08d},0.{low:08d},0.{close:08d},{100 + i % 50}.0"
        )
        price = close
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Market:
    xrp: int
    xrp_symbol: str
    empty_symbol: str
    run_id: int
    xrp_order_id: int


@pytest.fixture
def market(conn: psycopg.Connection[Any], world: World, tmp_path: Path) -> Market:
    """Real candles for an ETH-quoted pair, a listing without bars, alice holding unvalued
    ETH and an XRP/ETH position, and a real backtest of hers over the ingested bars."""
    source = REAL_CANDLES if REAL_CANDLES.exists() else _synthetic_xrp_eth(tmp_path / "xrp.csv")
    report = ingest_candles(conn, source, exchange="binance", symbol="XRP/ETH", timeframe="1m")
    xrp = report.listing_id
    conn.execute(
        "UPDATE market.exchange_instruments SET trading_rules = %s::jsonb WHERE id = %s",
        (XRP_RULES, xrp),
    )
    conn.execute(
        "INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency)"
        " VALUES ('DOGE/BTC', 'Dogecoin', 'CRYPTO', 'DOGE', 'BTC')"
    )
    conn.execute(
        "INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol) "
        "SELECT 1, id, 'DOGEBTC' FROM market.instruments WHERE symbol = 'DOGE/BTC'"
    )
    account = world.alice.account_id
    conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'ETH', 0.5)", (account,))
    # Her XRP was bought on the exchange and booked as reconciliation books such a trade
    # (an EXTERNAL order): an order placed here would be refused, since the risk limits need
    # a price converting ETH to her account's USDT, and this dashboard shows ETH unvalued.
    execution = conn.execute(
        "SELECT trade.record_external_fill(%s, %s, 'BUY', 'T-xrp-1', 100, 0.00141, 0, 'ETH')",
        (account, xrp),
    ).fetchone()[0]
    order = conn.execute(
        "SELECT order_id FROM trade.executions WHERE id = %s", (execution,)
    ).fetchone()[0]
    first, last = conn.execute(
        'SELECT min("time"), max("time") FROM market.candles WHERE exchange_instrument_id = %s',
        (xrp,),
    ).fetchone()
    outcome = run_backtest(
        conn,
        BacktestRequest(
            strategy="sma_crossover",
            symbols=("XRP/ETH",),
            timeframe="1m",
            start=first,
            end=last + dt.timedelta(minutes=1),
            parameters={"fast": 5, "slow": 20},
            position_size_pct=Decimal(100),
            fee_rate=Decimal("0.001"),
            user="alice",
            write_report=False,
        ),
        home=None,
    )
    label = conn.execute(
        "SELECT x.code || ':' || ei.exchange_symbol FROM market.exchange_instruments ei "
        "JOIN market.exchanges x ON x.id = ei.exchange_id WHERE ei.id = %s",
        (xrp,),
    ).fetchone()[0]
    return Market(xrp, label, "binance:DOGEBTC", outcome.run_id, order)


def _shown_number(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def _fits(page: Any) -> None:
    """No horizontal scroll: the page is as wide as the window."""
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], width


def _view(page: Any, name: str) -> Any:
    page.locator(f'#nav a[data-view="{name}"]').click()
    view = page.get_by_test_id(f"view-{name}")
    view.wait_for(state="visible")
    return view


def _login(page: Any, server: str, username: str) -> None:
    page.goto(server + "/")
    page.get_by_test_id("login-view").wait_for(state="visible")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("app-view").wait_for(state="visible")


def _clean(page: Any, server: str, expected: tuple[str, ...] = ("401",)) -> None:
    # nothing was fetched from anywhere but the server, and the page raised no error
    # (a Content-Security-Policy violation would be one)
    foreign = [u for u in page.requests_seen if not u.startswith(server)]
    assert foreign == []
    # (a refused login's 401 is logged by Chromium as a failed resource load; that is all)
    errors = [m for m in page.console_errors if not any(code in m for code in expected)]
    assert errors == []


def test_dashboard_every_view_with_real_data(
    page: Any,
    server: str,
    world: World,
    market: Market,
    conn: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    shots = Path(os.environ.get("TRADESTORE_SCREENSHOT_DIR") or tmp_path)

    def shoot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

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
    # KPIs are for admins: no tab for alice
    assert not page.locator('#nav a[data-view="kpis"]').is_visible()

    # --- overview: the portfolio as the database values it, and what it leaves out
    total = conn.execute(
        "SELECT total_value, unrealized_pnl + realized_pnl, unvalued_currencies "
        "FROM account.account_valuation(%s)",
        (world.alice.account_id,),
    ).fetchone()
    assert total[2] == ["ETH"]
    tile = page.get_by_test_id(f"account-{world.alice.account_id}")
    sync_api.expect(tile).to_be_visible()
    assert _shown_number(tile.get_by_test_id("total-value").inner_text()) == total[0].quantize(
        Decimal("0.01")
    )
    assert _shown_number(tile.get_by_test_id("total-pnl").inner_text()) == total[1].quantize(
        Decimal("0.01")
    )
    # the 0.5 ETH (less the 0.141 spent) is shown, marked as not valued, not hidden
    eth = tile.locator('.holdings li[data-currency="ETH"]')
    sync_api.expect(eth).to_have_class(re.compile("unvalued"))
    sync_api.expect(eth).to_contain_text("0.35900000")
    # so is the XRP bought with it: its position is priced in ETH
    sync_api.expect(tile.locator('.holdings li[data-currency="XRP"]')).to_have_class(
        re.compile("unvalued")
    )
    sync_api.expect(tile.get_by_test_id("unvalued")).to_contain_text("ETH")
    assert page.get_by_test_id(f"account-{world.bob.account_id}").count() == 0

    # the chart: BTC/USDT 1h with overlays, volume and alice's fill as a marker
    chart = page.get_by_test_id("chart")
    sync_api.expect(chart).to_have_attribute("data-symbol", "binance:BTCUSDT")
    sync_api.expect(chart).to_have_attribute("data-timeframe", "1h")
    assert 24 <= int(chart.get_attribute("data-bars")) <= 25
    assert "bollinger_upper" in chart.get_attribute("data-overlays")
    assert int(chart.get_attribute("data-markers")) >= 1
    assert chart.get_attribute("data-precision") == "2"  # tick 0.01
    page.get_by_test_id("tf-5m").click()
    sync_api.expect(page.get_by_test_id("chart-status")).to_contain_text("5m")
    assert 288 <= int(chart.get_attribute("data-bars")) <= 289
    sync_api.expect(page.get_by_test_id("tf-5m")).to_have_attribute("aria-pressed", "true")

    # an ETH-quoted pair: prices to its tick (8 places) in the status and the crosshair
    page.get_by_test_id("symbol").select_option(market.xrp_symbol)
    sync_api.expect(chart).to_have_attribute("data-symbol", market.xrp_symbol)
    sync_api.expect(chart).to_have_attribute("data-precision", "8")
    last_close = conn.execute(
        'SELECT close FROM market.candles WHERE exchange_instrument_id = %s ORDER BY "time" DESC '
        "LIMIT 1",
        (market.xrp,),
    ).fetchone()[0]
    sync_api.expect(page.get_by_test_id("chart-status")).to_contain_text(f"last {last_close:.8f}")
    box = chart.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.4)
    sync_api.expect(page.get_by_test_id("chart-legend")).to_have_text(
        re.compile(r"C 0\.\d{8}(\s|$)")
    )
    assert page.get_by_test_id("chart-empty").is_hidden()
    _fits(page)
    shoot("overview-1280")

    # a listing without bars says so instead of drawing an empty chart
    page.get_by_test_id("symbol").select_option(market.empty_symbol)
    sync_api.expect(page.get_by_test_id("chart-empty")).to_be_visible()
    sync_api.expect(page.get_by_test_id("chart-empty")).to_contain_text("No data for")
    page.get_by_test_id("symbol").select_option(market.xrp_symbol)
    sync_api.expect(page.get_by_test_id("chart-empty")).to_be_hidden()

    # --- positions: price and value of both, the ETH-quoted one to 8 places
    view = _view(page, "positions")
    positions = page.get_by_test_id("positions")
    sync_api.expect(positions.locator("tbody tr")).to_have_count(2)
    xrp_row = positions.locator(f'tr[data-symbol="{market.xrp_symbol}"]')
    cells = xrp_row.locator("td").all_inner_texts()
    assert cells[4] == "0.00141000"  # entry
    assert cells[5] == f"{last_close:.8f}"  # price
    assert cells[6] == f"{(100 * last_close):.8f}"  # value, in ETH
    assert "—" not in positions.locator('tr[data-symbol="binance:BTCUSDT"]').inner_text()
    _fits(page)
    shoot("positions-1280")

    # --- orders: the active ones, then the history, then filtered by symbol
    view = _view(page, "orders")
    orders = page.get_by_test_id("orders")
    sync_api.expect(
        orders.locator(f'tr[data-order-id="{world.alice.open_order_id}"]')
    ).to_be_visible()
    assert orders.locator('tr[data-status="FILLED"]').count() == 0
    page.get_by_test_id("orders-status").select_option("all")
    sync_api.expect(orders.locator('tr[data-status="FILLED"]')).to_have_count(2)
    assert orders.locator(f'tr[data-order-id="{world.bob.open_order_id}"]').count() == 0
    page.get_by_test_id("orders-symbol").fill("XRP")
    sync_api.expect(orders.locator("tbody tr")).to_have_count(1)
    sync_api.expect(orders).to_contain_text("0.00141000")
    sync_api.expect(page.get_by_test_id("fills").locator("tbody tr")).to_have_count(1)
    page.get_by_test_id("orders-symbol").fill("")
    sync_api.expect(page.get_by_test_id("fills").locator("tbody tr")).to_have_count(2)
    _fits(page)
    shoot("orders-1280")

    # --- ledger: every currency, the unvalued one flagged; the hash chain verifies
    view = _view(page, "ledger")
    balances = page.get_by_test_id("balances")
    sync_api.expect(balances.locator('tr[data-currency="ETH"]')).to_contain_text("no price in USDT")
    sync_api.expect(balances.locator('tr[data-currency="XRP"]')).to_contain_text("no price in USDT")
    sync_api.expect(balances.locator('tr[data-currency="USDT"]')).to_contain_text("base currency")
    rows = conn.execute(
        "SELECT count(*) FROM account.transactions WHERE account_id = %s",
        (world.alice.account_id,),
    ).fetchone()[0]
    sync_api.expect(page.get_by_test_id("ledger").locator("tbody tr")).to_have_count(rows)
    page.get_by_test_id("ledger-verify").click()
    result = page.get_by_test_id("ledger-verify-result")
    sync_api.expect(result).to_have_attribute("data-ok", "true")
    sync_api.expect(result).to_contain_text(f"OK: {rows} rows")
    _fits(page)
    shoot("ledger-1280")

    # --- backtests: the real run over the ingested bars, its whole equity curve
    view = _view(page, "backtests")
    run = conn.execute(
        "SELECT jsonb_array_length(equity_curve), equity_curve -> 0 ->> 't', "
        "equity_curve -> -1 ->> 't', jsonb_array_length(trade_history), start_date, end_date "
        "FROM analytics.backtest_runs WHERE id = %s",
        (market.run_id,),
    ).fetchone()
    title = page.get_by_test_id("equity-title")
    sync_api.expect(title).to_contain_text(f"Run #{market.run_id}")
    # the stored curve spans the run from its first bar to its last
    assert run[1][:10] == run[4].strftime("%Y-%m-%d")
    sync_api.expect(title).to_contain_text(f"{run[0]} points · {run[1][:10]} → {run[2][:10]}")
    sync_api.expect(page.get_by_test_id("equity-chart")).to_have_attribute(
        "data-points", str(run[0])
    )
    assert float(page.get_by_test_id("drawdown-chart").get_attribute("data-worst")) < 0
    sync_api.expect(page.get_by_test_id("run-params")).to_contain_text("fast")
    sync_api.expect(page.get_by_test_id("run-trades").locator("tbody tr")).to_have_count(
        min(run[3], 1000) or 1
    )
    sync_api.expect(page.get_by_test_id(f"backtest-{world.alice.backtest_id}")).to_be_visible()
    _fits(page)
    shoot("backtests-1280")
    # its trades on the price chart
    assert run[3] > 0
    page.get_by_test_id("run-on-chart").click()
    page.get_by_test_id("view-overview").wait_for(state="visible")
    sync_api.expect(chart).to_have_attribute("data-symbol", market.xrp_symbol)
    sync_api.expect(chart).to_have_attribute("data-timeframe", "1m")
    sync_api.expect(chart).not_to_have_attribute("data-markers", "0")

    # --- alerts: acknowledge alice's; gone from the list, acknowledged in the database
    view = _view(page, "alerts")
    alerts = page.get_by_test_id("alerts")
    sync_api.expect(alerts).to_contain_text("alice: drawdown over limit")
    # system alerts are for admins (row-level security): not on alice's page
    sync_api.expect(alerts).not_to_contain_text("database backup failed")
    page.get_by_test_id(f"ack-{world.alice.alert_id}").click()
    sync_api.expect(alerts).not_to_contain_text("alice: drawdown over limit")
    acked = conn.execute(
        "SELECT is_acknowledged, acknowledged_by FROM system.alerts WHERE alert_id = %s",
        (world.alice.alert_id,),
    ).fetchone()
    assert acked == (True, "alice")
    page.get_by_test_id("alerts-status").select_option("all")
    sync_api.expect(alerts).to_contain_text("acknowledged by alice")
    _fits(page)
    shoot("alerts-1280")

    # --- strategies: hers, with parameters and the latest signal
    view = _view(page, "strategies")
    sync_api.expect(page.get_by_test_id("strategies")).to_contain_text("alice-sma")
    sync_api.expect(page.get_by_test_id("strategy-params")).to_contain_text("slow")
    sync_api.expect(page.get_by_test_id("strategy-signals")).to_contain_text("BUY")
    _fits(page)
    shoot("strategies-1280")
    assert view.is_visible()

    # --- runners: hers (not bob's), state, last message and lag; Halt then Resume
    runner = _runner(conn, world, "alice", "RUNNING")
    bobs = _runner(conn, world, "bob", "RUNNING")
    _view(page, "runners")
    runners = page.get_by_test_id("runners")
    row = page.get_by_test_id(f"runner-{runner}")
    sync_api.expect(row).to_contain_text("alice-sma")
    sync_api.expect(row).to_contain_text("BTCUSDT")
    sync_api.expect(row).to_contain_text("RUNNING")
    sync_api.expect(row).to_contain_text("bar handled")
    sync_api.expect(row).to_contain_text("1,250 ms")
    sync_api.expect(page.get_by_test_id(f"runner-{bobs}")).to_have_count(0)
    sync_api.expect(page.get_by_test_id("trading-halt")).to_have_text("Trading is on.")
    assert page.get_by_test_id("trading-toggle").is_hidden()  # the global halt is an admin's
    page.get_by_test_id(f"runner-halt-{runner}").click()
    sync_api.expect(row).to_contain_text("HALTED (manual)")
    sync_api.expect(row).to_contain_text("halted by alice")
    assert _runner_state(conn, runner) == "HALTED"
    page.get_by_test_id(f"runner-resume-{runner}").click()
    sync_api.expect(row).to_contain_text("RUNNING")
    assert _runner_state(conn, runner) == "RUNNING"
    sync_api.expect(runners).not_to_contain_text("bob-sma")
    _fits(page)
    shoot("runners-1280")

    # --- 800 px: every view reflows without a horizontal scroll
    page.set_viewport_size({"width": 800, "height": 900})
    views = ("overview", "positions", "orders", "ledger", "backtests", "alerts", "strategies",
             "runners")  # fmt: skip
    for name in views:
        _view(page, name)
        page.wait_for_load_state("networkidle")
        _fits(page)
        shoot(f"{name}-800")
    page.set_viewport_size({"width": 1280, "height": 900})

    # log out: the session is revoked; 'Logged out.' is a note, not an error
    page.get_by_test_id("logout").click()
    page.get_by_test_id("login-view").wait_for(state="visible")
    sync_api.expect(page.get_by_test_id("login-note")).to_have_text("Logged out.")
    sync_api.expect(page.get_by_test_id("login-error")).to_have_text("")
    note_color = page.get_by_test_id("login-note").evaluate("e => getComputedStyle(e).color")
    error_color = page.get_by_test_id("login-error").evaluate("e => getComputedStyle(e).color")
    assert note_color != error_color
    revoked = conn.execute(
        "SELECT count(*) FROM account.user_sessions WHERE user_id = %s AND revoke_reason = 'logout'",
        (world.alice.user_id,),
    ).fetchone()[0]
    assert revoked == 1
    _clean(page, server)


def _runner(conn: psycopg.Connection[Any], world: World, who: str, state: str) -> int:
    trader = getattr(world, who)
    return int(
        conn.execute(
            """INSERT INTO analytics.strategy_runners (strategy_id, account_id, listing_ids,
                   timeframe, mode, state, last_message, last_bar_at, last_lag_ms)
               VALUES (%s, %s, ARRAY[%s]::bigint[], '1m', 'simulated', %s,
                       'bar handled: a long message that wraps rather than widening the table',
                       %s, 1250)
            RETURNING id""",
            (trader.strategy_id, trader.account_id, world.listing_id, state, world.last_bar),
        ).fetchone()[0]
    )


def _runner_state(conn: psycopg.Connection[Any], runner: int) -> str:
    row = conn.execute("SELECT state FROM analytics.strategy_runners WHERE id = %s", (runner,))
    return str(row.fetchone()[0])


def test_dashboard_kpis_view_for_admins(
    page: Any, server: str, world: World, conn: psycopg.Connection[Any]
) -> None:
    _login(page, server, "adam")
    sync_api.expect(page.get_by_test_id("who")).to_have_text("adam (admin)")
    # the system alert reaches admins, who may acknowledge it
    _view(page, "alerts")
    sync_api.expect(page.get_by_test_id("alerts")).to_contain_text("database backup failed")
    sync_api.expect(page.get_by_test_id(f"ack-{world.system_alert_id}")).to_be_visible()
    _view(page, "kpis")
    # the kpi module is off in the test database: the view says so instead of failing
    sync_api.expect(page.get_by_test_id("kpis-note")).not_to_have_text("")
    assert page.get_by_test_id("banner").is_hidden()
    # runners: every user's, and the global halt (after a confirmation) and resume
    runner = _runner(conn, world, "bob", "RUNNING")
    _view(page, "runners")
    sync_api.expect(page.get_by_test_id(f"runner-{runner}")).to_contain_text("bob-sma")
    toggle = page.get_by_test_id("trading-toggle")
    sync_api.expect(toggle).to_have_text("Halt all trading")
    page.once("dialog", lambda dialog: dialog.accept())
    toggle.click()
    sync_api.expect(page.get_by_test_id("trading-halt")).to_contain_text("Trading halted")
    sync_api.expect(page.get_by_test_id(f"runner-{runner}")).to_contain_text("HALTED (halt)")
    assert conn.execute("SELECT halted FROM trade.trading_halt").fetchone() == (True,)
    sync_api.expect(toggle).to_have_text("Resume trading")
    toggle.click()
    sync_api.expect(page.get_by_test_id("trading-halt")).to_have_text("Trading is on.")
    sync_api.expect(page.get_by_test_id(f"runner-{runner}")).to_contain_text("RUNNING")
    assert page.get_by_test_id("banner").is_hidden()
    # (GET /kpis/latest answers 404 before the first snapshot: Chromium logs that load)
    _clean(page, server, expected=("401", "404"))


def test_swagger_ui_works_offline(page: Any, server: str) -> None:
    """/docs loads Swagger UI from this server only, and renders the API."""
    page.goto(server + "/docs")
    sync_api.expect(page.locator(".swagger-ui .info .title")).to_contain_text("tradestore")
    sync_api.expect(page.locator(".opblock").first).to_be_visible()
    html = page.request.get(server + "/docs").text()
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/") or a.startswith("data:") for a in assets), assets
    for asset in assets:
        if asset.startswith("/"):
            assert page.request.get(server + asset).status == 200, asset
    _clean(page, server)


def _pick_outcomes(conn: psycopg.Connection[Any]) -> None:
    """Picks of two models (one on two prompt versions) with outcomes at 1, 5 and 20 days."""
    stock = conn.execute("SELECT id FROM market.instruments ORDER BY id LIMIT 1").fetchone()[0]
    returns = {  # (model, prompt version): [(return 1d, 5d, 20d, target hit at 20d)] per pick
        ("gpt-4o-mini", 1): [("1.5", "-2.25", "4.0", True), ("-0.5", "3.75", "-6.0", False)],
        ("gpt-4o-mini", 2): [("0.25", "0.5", "1.0", True)],
        ("llama-3.1-8b", 1): [("-1.0", "-3.5", "-8.125", False), ("2.0", "1.0", "9.5", True),
                              ("0.75", "0.25", "2.5", False)],
    }  # fmt: skip
    day = dt.date(2024, 3, 4)
    for (model, version), picks in returns.items():
        for n, outcome in enumerate(picks):
            pick_day = day + dt.timedelta(days=n)
            report = conn.execute(
                "INSERT INTO brain.ai_reports (stock_id, analysis_date, model_version) "
                "VALUES (%s, %s, %s) RETURNING report_id",
                (stock, pick_day, f"{model} v{version}"),
            ).fetchone()[0]
            pick = conn.execute(
                "INSERT INTO brain.daily_picks (report_id, pick_date, action, model_name, "
                "prompt_name, prompt_version) VALUES (%s, %s, 'BUY', %s, 'report.daily', %s) "
                "RETURNING pick_id",
                (report, pick_day, model, version),
            ).fetchone()[0]
            for horizon, ret in zip((1, 5, 20), outcome[:3], strict=True):
                conn.execute(
                    "INSERT INTO brain.pick_outcomes (pick_id, horizon_days, base_date, "
                    "base_close, exit_date, exit_close, return_pct, hit_target, hit_stop) "
                    "VALUES (%s, %s, %s, 100, %s, 100 + %s::numeric, %s, %s, false)",
                    (pick, horizon, pick_day, pick_day + dt.timedelta(days=horizon), ret, ret,
                     horizon == 20 and outcome[3]),
                )  # fmt: skip


def test_dashboard_research_search_and_pick_performance(
    page: Any, server: str, world: World, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    from tradestore.brain import documents
    from tradestore.brain.embed import get_embedder

    embedder = get_embedder("use-multilingual")  # the server's default model
    for name, text, owner, symbols in (
        ("shared.md", "Samsung Electronics raised its memory chip output for HBM.", None,
         ["005930"]),
        ("alice.md", "Alice's note: memory chip prices look strong, buy on dips.",
         world.alice.user_id, ["005930"]),
        ("bob.md", "Bob's note: memory chip prices will fall, sell the rally.",
         world.bob.user_id, ["005930"]),
        ("oil.md", "Oil prices slipped as refiners cut runs.", None, []),
    ):  # fmt: skip
        (tmp_path / name).write_text(text)
        documents.add_file(conn, tmp_path / name, embedder, user_id=owner, symbols=symbols,
                           source="note" if owner else "news",
                           published_at=dt.datetime(2024, 3, 1, 9, tzinfo=dt.UTC))  # fmt: skip
    _pick_outcomes(conn)

    _login(page, server, "alice")
    _view(page, "research")
    results = page.get_by_test_id("research-results")
    page.get_by_test_id("research-q").fill("memory chip prices")
    page.get_by_test_id("research-submit").click()
    sync_api.expect(page.get_by_test_id("research-status")).to_contain_text("results for")
    shown = results.locator("li.result")
    names = [Path(w.split("#")[0]).name for w in shown.locator(".where").all_inner_texts()]
    # her own and the shared documents, never bob's (row-level security)
    assert {"shared.md", "alice.md"} <= set(names) and "bob.md" not in names, names
    hit = results.locator("li.result", has_text="Alice's note")
    sync_api.expect(hit.locator(".symbols")).to_have_text("005930")
    sync_api.expect(hit.locator(".source")).to_have_text("note")
    sync_api.expect(hit.locator(".published")).to_have_text("2024-03-01 09:00:00 UTC")
    sync_api.expect(hit).to_contain_text("mine")
    assert re.fullmatch(r"score 0\.\d{4}", hit.locator(".score").inner_text())
    certainty = float(hit.locator(".certainty").inner_text().removeprefix("certainty "))
    assert 0.5 < certainty <= 1
    # as the API computes it: the page shows the same certainty for the same chunk
    doc_id = int(hit.get_attribute("data-doc-id"))
    token = page.evaluate("() => sessionStorage.getItem('ts.access')")
    api = page.request.get(
        server + "/api/v1/brain/search",
        params={"q": "memory chip prices", "limit": "20"},
        headers={"Authorization": "Bearer " + token},
    ).json()
    assert f"{next(h for h in api if h['id'] == doc_id)['certainty']:.3f}" == f"{certainty:.3f}"
    _fits(page)

    # only her own documents; then only the shared ones about a symbol
    page.get_by_test_id("research-owner").select_option("mine")
    page.get_by_test_id("research-submit").click()
    sync_api.expect(shown).to_have_count(1)
    sync_api.expect(shown).to_contain_text("Alice's note")
    page.get_by_test_id("research-owner").select_option("shared")
    page.get_by_test_id("research-symbol").fill("005930")
    page.get_by_test_id("research-submit").click()
    sync_api.expect(shown).to_have_count(1)
    sync_api.expect(shown).to_contain_text("Samsung Electronics")
    sync_api.expect(shown.locator(".certainty")).to_have_text(re.compile(r"certainty 0\.\d{3}"))
    # nothing found is said, not an empty box
    page.get_by_test_id("research-mode").select_option("text")
    page.get_by_test_id("research-q").fill("zeppelin")
    page.get_by_test_id("research-submit").click()
    sync_api.expect(page.get_by_test_id("research-status")).to_have_text(
        "No document matches “zeppelin”."
    )
    sync_api.expect(shown).to_have_count(0)

    # --- pick performance: one row per model and prompt version, as the view aggregates
    _view(page, "picks")
    table = page.get_by_test_id("pick-performance")
    perf = conn.execute(
        "SELECT model_name, prompt_version, horizon_days, picks, hit_rate, avg_return_pct "
        "FROM brain.pick_performance"
    ).fetchall()
    groups = sorted({(r[0], r[1]) for r in perf})
    sync_api.expect(table.locator("tbody tr")).to_have_count(len(groups))
    assert len(groups) == 3
    for model, version in groups:
        by = {r[2]: r for r in perf if (r[0], r[1]) == (model, version)}
        row = table.locator(f'tr[data-model="{model}"][data-prompt="report.daily v{version}"]')
        cells = row.locator("td").all_inner_texts()
        assert cells[:4] == [model, "LLM", f"report.daily v{version}", str(by[1][3])]
        assert cells[4:7] == [f"{by[d][4] * 100:.2f}%" for d in (1, 5, 20)]
        assert cells[7:10] == [f"{by[d][5]:,.2f}%" for d in (1, 5, 20)]
    llama = table.locator('tr[data-model="llama-3.1-8b"]').locator("td").all_inner_texts()
    assert llama[6] == "33.33%" and llama[9] == "1.29%"  # 1 of 3 hit at 20d; (-8.125+9.5+2.5)/3
    _fits(page)
    for name in ("research", "picks"):
        page.set_viewport_size({"width": 800, "height": 900})
        _view(page, name)
        page.wait_for_load_state("networkidle")
        _fits(page)
    _clean(page, server)
