"""Every seed 002/003 key design: its name, its type and its TTL, and the read/write
helpers' rules (mirrored sets and lists, bounded lists, unreadable values)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tradestore.cache import keys
from tradestore.cache.client import Cache
from tradestore.db.errors import ValidationError

NOW = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
SYM = "binance:BTCUSDT"


def test_key_names_follow_the_seeds() -> None:
    assert keys.session_key(5) == "session:5"
    assert keys.active_sessions_key(3) == "user:3:active_sessions"
    assert keys.rate_limit_key("10.0.0.1") == "rate_limit:10.0.0.1"
    assert keys.rate_limit_key("::1") == "rate_limit:::1"
    assert keys.rate_limit_user_key(3) == "rate_limit:user:3"
    assert keys.market_latest_key(SYM) == "market:binance:BTCUSDT:latest"
    assert keys.ticker_key(SYM) == "ticker:binance:BTCUSDT"
    assert keys.orderbook_key(SYM) == "orderbook:binance:BTCUSDT"
    assert keys.candle_key(SYM, "1h", NOW) == f"candle:binance:BTCUSDT:1h:{int(NOW.timestamp())}"
    assert keys.preferences_key(3) == "user:3:preferences"
    assert keys.strategy_status_key(9) == "strategy:9:status"
    assert keys.strategy_signals_key(9) == "strategy:9:signals"
    assert keys.order_status_key(11) == "order:11:status"
    assert keys.active_orders_key(3) == "user:3:active_orders"
    assert keys.notifications_key(3) == "notifications:3"
    assert keys.TELEGRAM_QUEUE == "telegram_queue"
    assert keys.market_symbol("Binance", "BTCUSDT") == SYM


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: keys.session_key(0), "session_id"),
        (lambda: keys.order_status_key(-1), "order_id"),
        (lambda: keys.rate_limit_key("10.0.0.1; FLUSHALL"), "ip"),
        (lambda: keys.ticker_key("BTCUSDT"), "symbol"),
        (lambda: keys.ticker_key("binance:BTC USDT"), "symbol"),
        (lambda: keys.ticker_key("bin*nce:BTCUSDT"), "exchange"),
        (lambda: keys.candle_key(SYM, "1h", NOW.replace(tzinfo=None)), "ts"),
    ],
)
def test_bad_key_parts_are_refused_by_name(build: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        build()  # type: ignore[operator]
    assert err.value.field == field


def _ttl(redis_cache: Cache, key: str) -> int:
    return int(redis_cache.redis.ttl(key))


def test_values_round_trip_with_their_ttls(redis_cache: Cache) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=30)
    session = keys.SessionEntry(
        session_id=1, user_id=2, username="alice", role="trader", token_hash="ab" * 32,
        expires_at=later, created_at=NOW,
    )  # fmt: skip
    assert keys.set_session(redis_cache, session)
    assert keys.get_session(redis_cache, 1) == session
    assert 24 * 3600 - 5 <= _ttl(redis_cache, "session:1") <= 24 * 3600  # capped at 24h

    bar = dict(open=Decimal("1.10"), high=Decimal("2.5"), low=Decimal("1"), close=Decimal("2.000"))
    latest = keys.MarketLatest(symbol=SYM, timeframe="1m", timestamp=NOW, volume=Decimal(3), **bar)
    keys.set_market_latest(redis_cache, latest)
    assert keys.get_market_latest(redis_cache, SYM) == latest
    assert keys.get_market_latest(redis_cache, SYM).close == Decimal("2.000")  # exact, scale kept
    assert 0 < _ttl(redis_cache, "market:binance:BTCUSDT:latest") <= 5

    ticker = keys.Ticker(
        symbol=SYM, timestamp=NOW, opening_price=1, closing_price=2, high_price=2, low_price=1,
        volume=5, value=10, change_24h=1, change_rate_24h=Decimal("0.5"),
    )  # fmt: skip
    keys.set_ticker(redis_cache, ticker)
    assert keys.get_ticker(redis_cache, SYM) == ticker
    assert _ttl(redis_cache, "ticker:binance:BTCUSDT") == 1

    book = keys.OrderBook(symbol=SYM, timestamp=NOW, bids=[(1, 2)], asks=[(Decimal("1.5"), 1)])
    keys.set_orderbook(redis_cache, book)
    assert keys.get_orderbook(redis_cache, SYM).asks == [(Decimal("1.5"), Decimal(1))]
    assert _ttl(redis_cache, "orderbook:binance:BTCUSDT") == 1

    candle = keys.Candle(symbol=SYM, timeframe="1h", timestamp=NOW, volume=1, **bar)
    keys.set_candle(redis_cache, candle)
    assert keys.get_candle(redis_cache, SYM, "1h", NOW) == candle
    assert 3590 <= _ttl(redis_cache, keys.candle_key(SYM, "1h", NOW)) <= 3600

    keys.set_preferences(redis_cache, 3, {"theme": "dark", "layout": ["chart", "orders"]})
    assert keys.get_preferences(redis_cache, 3) == {"theme": "dark", "layout": ["chart", "orders"]}
    assert 3590 <= _ttl(redis_cache, "user:3:preferences") <= 3600

    status = keys.StrategyStatus(
        strategy_id=9, user_id=3, name="sma", is_active=True, is_backtesting=False,
        total_trades=4, total_pnl=Decimal("12.5"), win_rate=Decimal("0.75"),
        last_executed=None, updated_at=NOW,
    )  # fmt: skip
    keys.set_strategy_status(redis_cache, status)
    assert keys.get_strategy_status(redis_cache, 9) == status
    assert 0 < _ttl(redis_cache, "strategy:9:status") <= 3600

    order = keys.OrderStatusEntry(
        order_id=11, account_id=1, user_id=3, symbol=SYM, side="BUY", status="NEW",
        quantity=1, filled_quantity=0, remaining_quantity=1, average_fill_price=None,
        updated_at=NOW,
    )  # fmt: skip
    keys.set_order_status(redis_cache, order)
    assert keys.get_order_status(redis_cache, 11) == order and order.is_active
    assert 0 < _ttl(redis_cache, "order:11:status") <= 3600


def test_a_session_that_has_expired_is_not_cached(redis_cache: Cache) -> None:
    gone = keys.SessionEntry(
        session_id=4, user_id=2, username="a", role="trader", token_hash="00",
        expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1), created_at=NOW,
    )  # fmt: skip
    assert keys.set_session(redis_cache, gone) is False
    assert keys.get_session(redis_cache, 4) is None


def test_mirrored_sets_are_only_extended_once_built(redis_cache: Cache) -> None:
    # A missing set is "not built": adding would make a partial set look complete.
    assert keys.mark_order_active(redis_cache, 3, 11, True) is False
    assert keys.get_active_orders(redis_cache, 3) is None
    assert keys.set_active_orders(redis_cache, 3, [])  # built, and empty
    assert keys.get_active_orders(redis_cache, 3) == set()
    assert keys.mark_order_active(redis_cache, 3, 11, True)
    assert keys.mark_order_active(redis_cache, 3, 12, True)
    assert keys.mark_order_active(redis_cache, 3, 11, False)
    assert keys.get_active_orders(redis_cache, 3) == {12}
    assert 0 < _ttl(redis_cache, "user:3:active_orders") <= 3600
    assert keys.add_active_session(redis_cache, 3, 1) is False
    keys.set_active_sessions(redis_cache, 3, [1, 2])
    keys.drop_session(redis_cache, 2, 3)
    assert keys.get_active_sessions(redis_cache, 3) == {1}


def test_signal_and_notification_lists_keep_the_newest_hundred(redis_cache: Cache) -> None:
    def signal(i: int) -> keys.Signal:
        return keys.Signal(
            id=i, strategy_id=9, execution_type="signal", success=True, data={"i": i},
            created_at=NOW + dt.timedelta(seconds=i),
        )  # fmt: skip

    assert keys.push_signal(redis_cache, signal(0)) is False  # not built yet
    keys.set_signals(redis_cache, 9, [])
    for i in range(1, 106):
        keys.push_signal(redis_cache, signal(i))
    kept = keys.get_signals(redis_cache, 9)
    assert [s.id for s in kept] == list(range(105, 5, -1))
    assert redis_cache.redis.llen("strategy:9:signals") == 100
    assert [s.id for s in keys.get_signals(redis_cache, 9, limit=3)] == [105, 104, 103]

    note = keys.Notification(
        id=1, user_id=3, alert_type="INFO", severity="LOW", module="t", message="hi", created_at=NOW
    )
    keys.set_notifications(redis_cache, 3, [])
    for i in range(120):
        keys.push_notification(redis_cache, 3, note.model_copy(update={"id": i}))
    assert [n.id for n in keys.get_notifications(redis_cache, 3, 2)] == [119, 118]
    assert redis_cache.redis.llen("notifications:3") == 100


def test_telegram_queue_pops_oldest_first(redis_cache: Cache) -> None:
    assert keys.pop_telegram(redis_cache) is None
    keys.set_telegram_queue(redis_cache, [5, 6])
    keys.push_telegram(redis_cache, 7)
    assert keys.telegram_queue_length(redis_cache) == 3
    assert [keys.pop_telegram(redis_cache) for _ in range(4)] == [5, 6, 7, None]


def test_an_unreadable_value_is_a_miss_and_is_dropped(redis_cache: Cache) -> None:
    redis_cache.redis.set("order:11:status", '{"not": "an order"}')
    assert keys.get_order_status(redis_cache, 11) is None
    assert redis_cache.redis.exists("order:11:status") == 0
