"""Keys stay current through every write path (cache.invalidation): each test warms a key
through a read, writes through one path, and checks the key is no longer stale the moment
the write returns. Real PostgreSQL, real Redis."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from tests.inbound.conftest import LISTING, SECRET, alert, post
from tests.trading.desk import Desk, build_desk
from tradestore.cache import invalidation, keys, market, notifications, strategies, users
from tradestore.cache import orders as order_cache
from tradestore.cache.client import Cache
from tradestore.cache.server import EmbeddedRedis
from tradestore.cli import trading as trading_cli
from tradestore.config import get_settings
from tradestore.db.connect import connect
from tradestore.identity.users import update_profile
from tradestore.market.ingest import ingest_candles, ingest_order_books, ingest_tickers
from tradestore.trading import apply_fill, cancel_order, expire_orders, reconcile, submit_order
from tradestore.trading.reconcile import parse_snapshot

SYM = "binance:BTCUSDT"


@pytest.fixture
def desk(conn: psycopg.Connection[Any]) -> Desk:
    return build_desk(conn)


@pytest.fixture
def writer(db: str, redis_cache: Cache) -> Iterator[psycopg.Connection[Any]]:
    """A connection attached to the cache: its commits drop the keys they make stale."""
    with connect(db, autocommit=True) as c:
        invalidation.attach(c, redis_cache)
        yield c


def _order(conn: psycopg.Connection[Any], desk: Desk, **kw: Any) -> int:
    return submit_order(conn, desk.account_id, desk.btc, "BUY", "LIMIT", "1", "100", **kw)


def _status(cache: Cache, conn: psycopg.Connection[Any], order_id: int) -> str:
    entry = order_cache.order_status(cache, conn, order_id)
    assert entry is not None
    return entry.status


def test_python_api_submit_fill_cancel_expire(
    redis_cache: Cache, conn: psycopg.Connection[Any], desk: Desk, writer: psycopg.Connection[Any]
) -> None:
    user = desk.user_id
    assert order_cache.active_orders(redis_cache, conn, user) == set()  # warmed: empty
    order = _order(writer, desk)
    assert keys.get_active_orders(redis_cache, user) is None  # the stale set is gone
    assert order_cache.active_orders(redis_cache, conn, user) == {order}
    assert _status(redis_cache, conn, order) == "NEW"

    apply_fill(writer, order, "t-1", "0.4", "100")
    assert keys.get_order_status(redis_cache, order) is None
    assert _status(redis_cache, conn, order) == "PARTIALLY_FILLED"

    cancel_order(writer, order)
    assert _status(redis_cache, conn, order) == "CANCELED"
    assert order_cache.active_orders(redis_cache, conn, user) == set()

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    expiring = _order(writer, desk, expires_at=soon)
    assert _status(redis_cache, conn, expiring) == "NEW"
    assert order_cache.active_orders(redis_cache, conn, user) == {expiring}
    assert expire_orders(writer, soon + dt.timedelta(seconds=1)) == 1
    assert _status(redis_cache, conn, expiring) == "EXPIRED"
    assert order_cache.active_orders(redis_cache, conn, user) == set()


def test_a_strategy_fill_drops_the_strategy_keys(
    redis_cache: Cache, conn: psycopg.Connection[Any], desk: Desk, writer: psycopg.Connection[Any]
) -> None:
    strategy = conn.execute(
        "INSERT INTO analytics.strategies (user_id, name, strategy_type) "
        "VALUES (%s, 's', 'swing_trading') RETURNING id",
        (desk.user_id,),
    ).fetchone()[0]
    order = _order(writer, desk, strategy_id=strategy)
    assert strategies.signals(redis_cache, conn, strategy) == []
    assert redis_cache.redis.exists(keys.strategy_signals_key(strategy))
    apply_fill(writer, order, "t-1", "1", "100")
    assert not redis_cache.redis.exists(keys.strategy_signals_key(strategy))
    assert not redis_cache.redis.exists(keys.strategy_status_key(strategy))

    strategies.signals(redis_cache, conn, strategy)
    writer.execute(
        "INSERT INTO analytics.strategy_executions (strategy_id, user_id, execution_type, signal_data) "
        "VALUES (%s, %s, 'signal', '{\"action\": \"buy\"}')",
        (strategy, desk.user_id),
    )
    found = strategies.signals(redis_cache, conn, strategy)
    assert found is not None and [s.data for s in found] == [{"action": "buy"}]


def test_a_profile_update_drops_the_cached_preferences(
    redis_cache: Cache, conn: psycopg.Connection[Any], desk: Desk, writer: psycopg.Connection[Any]
) -> None:
    update_profile(writer, desk.user_id, {"preferences": {"theme": "light"}})
    assert users.preferences(redis_cache, conn, desk.user_id) == {"theme": "light"}
    assert keys.get_preferences(redis_cache, desk.user_id) == {"theme": "light"}  # warmed
    update_profile(writer, desk.user_id, {"preferences": {"theme": "dark"}})
    assert keys.get_preferences(redis_cache, desk.user_id) is None
    assert users.preferences(redis_cache, conn, desk.user_id) == {"theme": "dark"}


def test_a_rolled_back_write_leaves_the_cache_untouched(
    redis_cache: Cache, conn: psycopg.Connection[Any], desk: Desk, writer: psycopg.Connection[Any]
) -> None:
    order = _order(writer, desk)
    assert _status(redis_cache, conn, order) == "NEW"
    before = redis_cache.redis.get(keys.order_status_key(order))
    with pytest.raises(RuntimeError), writer.transaction():
        apply_fill(writer, order, "t-1", "1", "100")
        raise RuntimeError("changed our mind")
    assert redis_cache.redis.get(keys.order_status_key(order)) == before

    # Reconciliation's dry run records the fills in a transaction it rolls back.
    order_cache.active_orders(redis_cache, conn, desk.user_id)
    snapshot = parse_snapshot(
        {
            "trades": [
                {"id": "x-1", "symbol": "BTC/USDT", "side": "buy", "amount": "1", "price": "100"}
            ]
        }
    )
    report = reconcile(writer, desk.account_id, snapshot)
    assert report.differences and not report.applied
    assert redis_cache.redis.get(keys.order_status_key(order)) == before
    assert keys.get_active_orders(redis_cache, desk.user_id) == {order}


def test_reconcile_apply_drops_the_keys(
    redis_cache: Cache, conn: psycopg.Connection[Any], desk: Desk, writer: psycopg.Connection[Any]
) -> None:
    order = _order(writer, desk)
    assert order_cache.active_orders(redis_cache, conn, desk.user_id) == {order}
    snapshot = parse_snapshot(
        {
            "trades": [
                {"id": "x-1", "symbol": "BTC/USDT", "side": "buy", "amount": "1", "price": "100"}
            ]
        }
    )
    report = reconcile(writer, desk.account_id, snapshot, apply=True)
    assert report.recorded_executions
    assert keys.get_active_orders(redis_cache, desk.user_id) is None
    external = conn.execute(
        "SELECT order_id FROM trade.executions WHERE id = %s", (report.recorded_executions[0],)
    ).fetchone()[0]
    assert _status(redis_cache, conn, external) == "FILLED"


def test_cli_fills_import_and_reconcile_apply(
    redis_server: EmbeddedRedis,
    redis_cache: Cache,
    conn: psycopg.Connection[Any],
    db: str,
    desk: Desk,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    app = typer.Typer()
    app.add_typer(trading_cli.fills_app, name="fills")
    app.add_typer(trading_cli.reconcile_app, name="reconcile")
    runner = CliRunner()
    try:
        order = _order(conn, desk)
        assert _status(redis_cache, conn, order) == "NEW"
        feed = tmp_path / "fills.jsonl"
        feed.write_text(json.dumps({"order_id": order, "id": "f-1", "amount": "1", "price": "100"}))
        result = runner.invoke(app, ["fills", "import", str(feed)])
        assert result.exit_code == 0, result.output
        assert keys.get_order_status(redis_cache, order) is None
        assert _status(redis_cache, conn, order) == "FILLED"

        assert order_cache.active_orders(redis_cache, conn, desk.user_id) == set()
        snap = tmp_path / "snap.json"
        snap.write_text(
            json.dumps(
                {
                    "trades": [
                        {
                            "id": "x-9",
                            "symbol": "BTC/USDT",
                            "side": "buy",
                            "amount": "1",
                            "price": "100",
                        }
                    ]
                }
            )
        )
        args = ["reconcile", "-f", str(snap), "-a", str(desk.account_id), "--apply"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert keys.get_active_orders(redis_cache, desk.user_id) is None
    finally:
        get_settings.cache_clear()


def test_webhook_order_drops_the_keys(
    redis_cache: Cache, conn: psycopg.Connection[Any], db: str, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from tradestore.api.app import create_app
    from tradestore.config import load_settings
    from tradestore.inbound.config import load_webhook_settings

    conn.execute(LISTING)
    assert order_cache.active_orders(redis_cache, conn, 1) == set()
    settings = load_settings(None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path / "home")
    webhook = load_webhook_settings(
        None, TRADINGVIEW_WEBHOOK_SECRET=SECRET, TRADINGVIEW_WEBHOOK_USER="alice"
    )
    app = create_app(settings, conninfo=db, webhook_settings=webhook, cache=redis_cache)
    with TestClient(app) as client:
        response = post(client, alert())
        assert response.status_code in (200, 201, 202), response.text
    placed = conn.execute("SELECT id FROM trade.orders").fetchone()[0]
    assert keys.get_active_orders(redis_cache, 1) is None
    assert order_cache.active_orders(redis_cache, conn, 1) == {placed}
    # The alert the webhook raised for the signal shows in the user's list at once.
    assert [n.module for n in notifications.notifications(redis_cache, conn, 1)] == ["inbound"]


def _bar(t: dt.datetime, close: str) -> dict[str, Any]:
    return {
        "time": t.isoformat(),
        "open": "100",
        "high": "110",
        "low": "90",
        "close": close,
        "volume": "1",
    }


def test_market_ingest_candles_tickers_books(
    redis_cache: Cache, conn: psycopg.Connection[Any], db: str
) -> None:
    t0 = dt.datetime(2024, 1, 1, 10, 0, tzinfo=dt.UTC)
    minute = dt.timedelta(minutes=1)
    invalidation.install(redis_cache)  # what the CLI does: every connection attached
    try:
        ingest_candles(
            db, [_bar(t0, "101"), _bar(t0 + minute, "102")], exchange="binance", symbol="BTCUSDT"
        )
        assert market.candle(redis_cache, conn, SYM, "1m", t0).close == Decimal("101")
        assert market.candle(redis_cache, conn, SYM, "1h", t0).close == Decimal("102")
        assert market.latest(redis_cache, conn, SYM).close == Decimal("102")

        # A corrected bar and a newer one: the stale bar, its hour and the latest go.
        ingest_candles(
            db, [_bar(t0, "105"), _bar(t0 + 2 * minute, "99")], exchange="binance", symbol="BTCUSDT"
        )
        assert keys.get_candle(redis_cache, SYM, "1m", t0) is None
        assert market.candle(redis_cache, conn, SYM, "1m", t0).close == Decimal("105")
        assert market.candle(redis_cache, conn, SYM, "1h", t0).close == Decimal("99")
        assert market.latest(redis_cache, conn, SYM).close == Decimal("99")

        quote = {
            "timestamp": "2024-01-01T10:00:00Z", "opening_price": "100", "closing_price": "101",
            "high_price": "102", "low_price": "99", "volume": "5", "value": "505",
            "change_24h": "1", "change_rate_24h": "0.01",
        }  # fmt: skip
        ingest_tickers(db, [quote], exchange="binance", symbol="BTCUSDT")
        assert market.ticker(redis_cache, conn, SYM).closing_price == Decimal("101")
        ingest_tickers(db, [{**quote, "timestamp": "2024-01-01T10:00:01Z", "closing_price": "101.5"}],
                       exchange="binance", symbol="BTCUSDT")  # fmt: skip
        assert market.ticker(redis_cache, conn, SYM).closing_price == Decimal("101.5")

        book = {"time": "2024-01-01T10:00:00Z", "bids": [["100", "1"]], "asks": [["101", "1"]]}
        ingest_order_books(db, [book], exchange="binance", symbol="BTCUSDT")
        assert market.orderbook(redis_cache, conn, SYM).bids == [(Decimal("100"), Decimal("1"))]
        ingest_order_books(db, [{**book, "time": "2024-01-01T10:00:01Z", "bids": [["100.5", "2"]]}],
                           exchange="binance", symbol="BTCUSDT")  # fmt: skip
        assert market.orderbook(redis_cache, conn, SYM).bids == [(Decimal("100.5"), Decimal("2"))]
    finally:
        invalidation.uninstall()


def test_with_redis_down_writes_succeed_and_keys_rebuild(
    own_redis: EmbeddedRedis, conn: psycopg.Connection[Any], db: str, desk: Desk
) -> None:
    # A Redis that was never there (a closed port): every write path still succeeds.
    nowhere = Cache.from_url("redis://127.0.0.1:1/0", retry_after=0.0, timeout=0.2)
    with connect(db, autocommit=True) as c:
        invalidation.attach(c, nowhere)
        order = _order(c, desk)
        apply_fill(c, order, "t-0", "0.1", "100")
        cancel_order(c, order)

    # A Redis that goes away after the key was cached, and comes back with its data file.
    cache = Cache.from_url(own_redis.url, retry_after=0.0)
    with connect(db, autocommit=True) as c:
        invalidation.attach(c, cache)
        order = _order(c, desk)
        assert _status(cache, conn, order) == "NEW"
        own_redis.stop()  # SHUTDOWN SAVE: the stale NEW is in the data file
        apply_fill(c, order, "t-1", "1", "100")
        assert _status(cache, conn, order) == "FILLED"  # from PostgreSQL meanwhile
        own_redis.start()
        assert _status(cache, conn, order) == "FILLED"  # the stale key went first
        assert cache.redis.exists(keys.order_status_key(order))  # and was rebuilt


def test_listener_applies_other_sessions_writes(
    redis_cache: Cache, conn: psycopg.Connection[Any], db: str, desk: Desk
) -> None:
    """psql, a script or any session that is not attached: `up`'s listener applies it."""
    listener = invalidation.Listener(db, redis_cache)
    listener.listen()
    try:
        order = _order(conn, desk)
        assert _status(redis_cache, conn, order) == "NEW"
        conn.execute("SELECT public.cancel_order(%s)", (order,))  # as in psql
        for _ in range(50):
            if keys.get_order_status(redis_cache, order) is None:
                break
            listener.poll(timeout=0.2)
        assert _status(redis_cache, conn, order) == "CANCELED"
    finally:
        listener.close()
