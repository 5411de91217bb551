"""Read-through and write-through against a real PostgreSQL and a real Redis: keys are
filled from the database on a miss, kept current by the on_* hooks, rebuilt after a
flush, and with Redis stopped every read still answers from PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tradestore.cache import keys, market, notifications, orders, strategies, users
from tradestore.cache.client import Cache
from tradestore.cache.server import EmbeddedRedis

SYM = "binance:BTCUSDT"


@pytest.fixture
def world(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Two users with a funded account each, a listing with bars, a ticker and a book."""
    bar = conn.execute("SELECT date_trunc('minute', now()) - interval '5 minutes'").fetchone()[0]
    conn.execute(
        """
        INSERT INTO market.exchanges (code, name) VALUES ('binance', 'Binance');
        INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency)
        VALUES ('BTC/USDT', 'Bitcoin', 'CRYPTO', 'BTC', 'USDT');
        INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, trading_rules)
        VALUES (1, 1, 'BTCUSDT', '{"tick_size": "0.01", "step_size": "0.00001", "min_notional": "5"}');
        INSERT INTO account.users (username, email, password_hash)
        VALUES ('alice', 'alice@example.com', 'x'), ('bob', 'bob@example.com', 'x');
        INSERT INTO account.user_profiles (user_id, preferences) VALUES (1, '{"theme": "dark"}');
        INSERT INTO account.accounts (user_id, exchange_id, name) VALUES (1, 1, 'a'), (2, 1, 'b');
        """
    )
    conn.execute(
        """INSERT INTO market.candles (exchange_instrument_id, timeframe, "time", open, high, low, close, volume)
           VALUES (1, '1m', %(t)s, 100, 110, 90, 105.50, 3), (1, '1m', %(t)s + interval '1 minute', 105.5, 107, 104, 106.25, 2)""",
        {"t": bar},
    )
    conn.execute(
        """INSERT INTO market.tickers (exchange_instrument_id, "time", opening_price, closing_price,
               high_price, low_price, volume, value, change_24h, change_rate_24h, bid_price, ask_price)
           VALUES (1, %(t)s, 100, 106.25, 110, 90, 5, 520, 6.25, 0.0625, 106.2, 106.3)""",
        {"t": bar},
    )
    conn.execute(
        """INSERT INTO market.order_books (exchange_instrument_id, "time", bids, asks)
           VALUES (1, %(t)s, '[["106.2", "1.5"]]', '[["106.3", "0.25"]]')""",
        {"t": bar},
    )
    # Orders hold funds on submit: both accounts get enough for the test's orders.
    for account in (1, 2):
        conn.execute("SELECT post_ledger_entry(%s, 'DEPOSIT', 'USDT', 1000)", (account,))
    return {"bar": bar}


def test_market_keys_read_through_and_rebuild_after_a_flush(
    redis_cache: Cache, conn: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    latest = market.latest(redis_cache, conn, SYM)
    assert latest is not None and latest.close == Decimal("106.25")
    assert latest.timestamp == world["bar"] + dt.timedelta(minutes=1)
    assert redis_cache.redis.exists("market:binance:BTCUSDT:latest")
    assert market.latest(redis_cache, conn, SYM) == latest and redis_cache.hits == 1

    ticker = market.ticker(redis_cache, conn, SYM)
    assert ticker.closing_price == Decimal("106.25") and ticker.ask_price == Decimal("106.3")
    book = market.orderbook(redis_cache, conn, SYM)
    assert book.bids == [(Decimal("106.2"), Decimal("1.5"))]
    bar = market.candle(redis_cache, conn, SYM, "1m", world["bar"])
    assert bar.close == Decimal("105.50")
    assert redis_cache.redis.exists(keys.candle_key(SYM, "1m", world["bar"]))

    redis_cache.redis.flushall()
    assert market.ticker(redis_cache, conn, SYM) == ticker  # from PostgreSQL again
    assert redis_cache.redis.exists("ticker:binance:BTCUSDT")
    assert market.latest(redis_cache, conn, "binance:NOPE") is None
    assert market.candle(redis_cache, conn, SYM, "1m", world["bar"] - dt.timedelta(days=1)) is None


def test_a_stored_bar_becomes_latest_unless_an_older_one(
    redis_cache: Cache, conn: Any, world: Any
) -> None:
    newest = market.latest(redis_cache, conn, SYM)
    older = keys.Candle(
        symbol=SYM, timeframe="1m", timestamp=newest.timestamp - dt.timedelta(hours=1),
        open=1, high=1, low=1, close=1, volume=1,
    )  # fmt: skip
    market.on_candle(redis_cache, older)  # a backfilled bar: cached, but not the latest
    assert market.latest(redis_cache, conn, SYM) == newest
    newer = older.model_copy(update={"timestamp": newest.timestamp + dt.timedelta(minutes=1)})
    market.on_candle(redis_cache, newer)
    assert market.latest(redis_cache, conn, SYM).timestamp == newer.timestamp


def _order(conn: psycopg.Connection[Any], account: int, price: str = "100") -> int:
    return conn.execute(
        "SELECT submit_order(%s, 1, 'BUY', 'LIMIT', 0.1, %s)", (account, Decimal(price))
    ).fetchone()[0]


def test_orders_write_through_and_read_through(
    redis_cache: Cache, conn: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    first, second = _order(conn, 1), _order(conn, 1, "99")
    bobs = _order(conn, 2)
    assert orders.active_orders(redis_cache, conn, 1) == {first, second}  # built from the database
    entry = orders.on_order_changed(redis_cache, conn, first)
    assert entry.status == "NEW" and entry.user_id == 1 and entry.symbol == SYM

    conn.execute("SELECT cancel_order(%s)", (first,))
    orders.on_order_changed(redis_cache, conn, first)
    assert keys.get_order_status(redis_cache, first).status == "CANCELED"
    assert orders.active_orders(redis_cache, conn, 1) == {second}
    third = _order(conn, 1, "98")
    orders.on_order_changed(redis_cache, conn, third)
    assert keys.get_active_orders(redis_cache, 1) == {second, third}

    # Another user's order id gives nothing, from the cache or from the database.
    orders.order_status(redis_cache, conn, bobs)  # cached now
    assert orders.order_status(redis_cache, conn, bobs, user_id=1) is None
    assert orders.order_status(redis_cache, conn, bobs, user_id=2).order_id == bobs

    redis_cache.redis.flushall()
    assert orders.active_orders(redis_cache, conn, 1) == {second, third}
    assert orders.order_status(redis_cache, conn, first).status == "CANCELED"
    assert orders.order_status(redis_cache, conn, 10_000) is None


def test_strategy_status_and_the_last_hundred_signals(
    redis_cache: Cache, conn: Any, world: Any
) -> None:
    sid = conn.execute(
        "INSERT INTO analytics.strategies (user_id, name, strategy_type, is_active) "
        "VALUES (1, 'sma', 'swing_trading', true) RETURNING id"
    ).fetchone()[0]
    conn.execute(
        """INSERT INTO analytics.strategy_executions (strategy_id, user_id, execution_type, signal_data, created_at)
           SELECT %s, 1, 'signal', jsonb_build_object('n', g), now() - (110 - g) * interval '1 second'
             FROM generate_series(1, 105) g""",
        (sid,),
    )
    status = strategies.strategy_status(redis_cache, conn, sid)
    assert status.name == "sma" and status.is_active
    assert strategies.strategy_status(redis_cache, conn, sid, user_id=2) is None
    got = strategies.signals(redis_cache, conn, sid)
    assert len(got) == 100 and got[0].data == {"n": 105} and got[-1].data == {"n": 6}

    new_id = conn.execute(
        "INSERT INTO analytics.strategy_executions (strategy_id, user_id, execution_type, signal_data) "
        "VALUES (%s, 1, 'signal', '{\"n\": 106}') RETURNING id",
        (sid,),
    ).fetchone()[0]
    strategies.on_signal(redis_cache, conn, new_id)
    got = strategies.signals(redis_cache, conn, sid, limit=2)
    assert [s.data["n"] for s in got] == [106, 105]
    assert redis_cache.redis.llen(keys.strategy_signals_key(sid)) == 100

    conn.execute("UPDATE analytics.strategies SET is_active = false WHERE id = %s", (sid,))
    strategies.on_strategy_changed(redis_cache, conn, sid)
    assert keys.get_strategy_status(redis_cache, sid).is_active is False
    assert strategies.signals(redis_cache, conn, sid, user_id=2) is None


def test_preferences_and_active_sessions(redis_cache: Cache, conn: Any, world: Any) -> None:
    assert users.preferences(redis_cache, conn, 1) == {"theme": "dark"}
    assert users.preferences(redis_cache, conn, 2) == {}
    users.on_preferences_changed(redis_cache, 1, {"theme": "light"})
    assert users.preferences(redis_cache, conn, 1) == {"theme": "light"}

    conn.execute(
        """INSERT INTO account.user_sessions (user_id, session_token_hash, expires_at, revoked_at, created_at)
           VALUES (1, '\\x01', now() + interval '1 day', NULL, now()),
                  (1, '\\x02', now() + interval '1 day', now(), now()),
                  (1, '\\x03', now() - interval '1 day', NULL, now() - interval '2 days')"""
    )
    assert users.active_sessions(redis_cache, conn, 1) == {1}
    assert keys.get_active_sessions(redis_cache, 1) == {1}


def test_notifications_and_the_telegram_queue(redis_cache: Cache, conn: Any, world: Any) -> None:
    conn.execute(
        """INSERT INTO system.alerts (alert_type, severity, module, message, user_id)
           VALUES ('INFO', 'LOW', 't', 'for alice', 1), ('INFO', 'LOW', 't', 'for bob', 2),
                  ('WARNING', 'HIGH', 't', 'for everyone', NULL)"""
    )
    # Newest first; alerts of nobody show for everyone, bob's never for alice.
    assert [n.message for n in notifications.notifications(redis_cache, conn, 1)] == [
        "for everyone",
        "for alice",
    ]
    conn.execute("UPDATE system.alerts SET is_acknowledged = true WHERE message = 'for alice'")
    notifications.on_alert_changed(redis_cache, 1)
    assert [n.message for n in notifications.notifications(redis_cache, conn, 1)] == [
        "for everyone"
    ]
    new = conn.execute(
        "INSERT INTO system.alerts (alert_type, severity, message, user_id) "
        "VALUES ('INFO', 'LOW', 'again', 1) RETURNING alert_id"
    ).fetchone()[0]
    notifications.on_alert_raised(redis_cache, conn, new)
    assert notifications.notifications(redis_cache, conn, 1)[0].message == "again"

    ids = [
        conn.execute("SELECT enqueue_notification(42, 'WARN', %s, 'm')", (f"t{i}",)).fetchone()[0]
        for i in range(3)
    ]
    assert notifications.rebuild_telegram_queue(redis_cache, conn) == 3
    assert notifications.next_telegram(redis_cache, conn) == ids[0]
    notifications.on_outbox_enqueued(redis_cache, ids[0])
    redis_cache.redis.delete(keys.TELEGRAM_QUEUE)  # flushed: PostgreSQL still knows what is due
    assert notifications.next_telegram(redis_cache, conn) == ids[0]


@pytest.fixture
def fragile(own_redis: EmbeddedRedis) -> Iterator[tuple[Cache, EmbeddedRedis]]:
    cache = Cache.from_url(own_redis.url, retry_after=0.0)
    yield cache, own_redis
    cache.redis.close()


def test_with_redis_down_every_read_answers_from_postgresql(
    fragile: tuple[Cache, EmbeddedRedis], conn: psycopg.Connection[Any], world: dict[str, Any]
) -> None:
    redis_cache, server = fragile
    order = _order(conn, 1)
    before = orders.on_order_changed(redis_cache, conn, order)
    assert before.status == "NEW"

    server.stop()
    conn.execute("SELECT cancel_order(%s)", (order,))
    # The write-through cannot reach Redis; it must not fail the caller.
    assert orders.on_order_changed(redis_cache, conn, order).status == "CANCELED"
    assert orders.order_status(redis_cache, conn, order).status == "CANCELED"
    assert orders.active_orders(redis_cache, conn, 1) == set()
    assert market.ticker(redis_cache, conn, SYM).closing_price == Decimal("106.25")
    assert market.latest(redis_cache, conn, SYM) is not None
    assert users.preferences(redis_cache, conn, 1) == {"theme": "dark"}
    assert notifications.next_telegram(redis_cache, conn) is None
    assert redis_cache.errors > 0

    # Back up, with the data file from before the outage: the stale status it still holds
    # is invalidated before anything is read.
    server.start()
    assert orders.order_status(redis_cache, conn, order).status == "CANCELED"
    assert keys.get_order_status(redis_cache, order).status == "CANCELED"
