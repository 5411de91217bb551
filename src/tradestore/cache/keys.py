"""Every Redis key design of seeds 002 and 003, with its TTL: key builders, the typed
values they hold, and read/write helpers.

    key                                   type    TTL    seed  PostgreSQL source
    session:{session_id}                  JSON    24h    002   account.user_sessions
    user:{user_id}:active_sessions        SET     24h*   003   account.user_sessions
    rate_limit:{ip}                       int     1min   002   (counter only)
    market:{symbol}:latest                JSON    5s     002   market.candles
    ticker:{symbol}                       JSON    1s     003   market.tickers
    orderbook:{symbol}                    JSON    1s     003   market.order_books
    candle:{symbol}:{timeframe}:{ts}      JSON    1h     003   market.candles_all
    user:{user_id}:preferences            JSON    1h     002   account.user_profiles
    strategy:{strategy_id}:status         JSON    1h*    003   analytics.strategies
    strategy:{strategy_id}:signals        LIST    24h*   003   analytics.strategy_executions
    order:{order_id}:status               JSON    1h*    003   trade.orders
    user:{user_id}:active_orders          SET     1h*    003   trade.orders
    notifications:{user_id}               LIST    7d*    003   system.alerts
    telegram_queue                        LIST    none   003   system.notification_outbox

(* the seed gives no TTL; these keys mirror PostgreSQL rows, so they get one to bound
how long a value can be stale when a write-through was missed.)

{symbol} is `<exchange code>:<exchange symbol>` (`binance:BTCUSDT`): the seeds each knew
one exchange, tradestore knows several, and BTCUSDT on two exchanges is two prices.
{ts} is the bar's open time in epoch seconds.

Sets and lists that mirror a set of rows hold a sentinel member (`_`) so that "built and
empty" differs from "missing"; adding to one that is missing does nothing (a partial set
would look complete), and the next read rebuilds it from PostgreSQL.

Every helper goes through `Cache.run`/`Cache.write`: with Redis down, reads return None
and writes are skipped (their keys are invalidated once Redis is back).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, ConfigDict, ValidationError

from tradestore.cache.client import Cache
from tradestore.db.errors import ValidationError as InputError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# --------------------------------------------------------------------------- TTLs (s)
SESSION_TTL = 24 * 3600
ACTIVE_SESSIONS_TTL = 24 * 3600
RATE_LIMIT_WINDOW = 60
MARKET_LATEST_TTL = 5
TICKER_TTL = 1
ORDERBOOK_TTL = 1
CANDLE_TTL = 3600
PREFERENCES_TTL = 3600
STRATEGY_STATUS_TTL = 3600
STRATEGY_SIGNALS_TTL = 24 * 3600
SIGNALS_KEPT = 100
ORDER_STATUS_TTL = 3600
ACTIVE_ORDERS_TTL = 3600
# The valuation moves with prices: held no longer than the market keys it is valued from.
PORTFOLIO_TTL = 5
NOTIFICATIONS_TTL = 7 * 24 * 3600
NOTIFICATIONS_KEPT = 100

SENTINEL = "_"
TELEGRAM_QUEUE = "telegram_queue"

# Keys that mirror PostgreSQL state, dropped when an embedded server starts from an old
# data file (the queues are not in this list).
MIRROR_PATTERNS = (
    "session:*",
    "user:*",
    "rate_limit:*",
    "market:*",
    "ticker:*",
    "orderbook:*",
    "candle:*",
    "strategy:*",
    "order:*",
    "notifications:*",
)

_SEGMENT = re.compile(r"^[A-Za-z0-9._/\-]{1,80}$")
_IP = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")


# --------------------------------------------------------------------------- key builders
def _segment(field: str, value: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.match(value):
        raise InputError(field, "must be 1 to 80 letters, digits or . _ / -", value)
    return value


def _id(field: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(field, "must be a positive integer", value)
    return value


def market_symbol(exchange: str, symbol: str) -> str:
    """The {symbol} of market keys: `<exchange code>:<exchange symbol>`."""
    return f"{_segment('exchange', exchange.lower())}:{_segment('symbol', symbol)}"


def parse_market_symbol(value: str) -> tuple[str, str]:
    """(exchange code, exchange symbol) of a market symbol `binance:BTCUSDT`."""
    exchange, sep, symbol = value.partition(":") if isinstance(value, str) else ("", "", "")
    if not sep:
        raise InputError("symbol", "must be <exchange>:<symbol>, e.g. binance:BTCUSDT", value)
    return _segment("exchange", exchange.lower()), _segment("symbol", symbol)


def _market_symbol(value: str) -> str:
    return ":".join(parse_market_symbol(value))


def session_key(session_id: int) -> str:
    return f"session:{_id('session_id', session_id)}"


def active_sessions_key(user_id: int) -> str:
    return f"user:{_id('user_id', user_id)}:active_sessions"


def rate_limit_key(ip: str) -> str:
    if not isinstance(ip, str) or not _IP.match(ip):
        raise InputError("ip", "must be an IPv4 or IPv6 address", ip)
    return f"rate_limit:{ip}"


RATE_LIMIT_USER_PREFIX = "rate_limit:user:"


def rate_limit_user_key(user_id: int) -> str:
    """Per-user counterpart of rate_limit:{ip} (tradestore addition)."""
    return f"{RATE_LIMIT_USER_PREFIX}{_id('user_id', user_id)}"


def rate_limit_scope_key(scope: str, subject: str) -> str:
    """A named limit on anything else, e.g. login attempts per username."""
    digest = subject if _SEGMENT.match(subject) else _digest(subject)
    return f"rate_limit:{_segment('scope', scope)}:{digest}"


def market_latest_key(symbol: str) -> str:
    return f"market:{_market_symbol(symbol)}:latest"


def ticker_key(symbol: str) -> str:
    return f"ticker:{_market_symbol(symbol)}"


def orderbook_key(symbol: str) -> str:
    return f"orderbook:{_market_symbol(symbol)}"


def candle_key(symbol: str, timeframe: str, ts: dt.datetime) -> str:
    if ts.tzinfo is None:
        raise InputError("ts", "must be timezone-aware (UTC)", ts)
    return (
        f"candle:{_market_symbol(symbol)}:{_segment('timeframe', timeframe)}:{int(ts.timestamp())}"
    )


def preferences_key(user_id: int) -> str:
    return f"user:{_id('user_id', user_id)}:preferences"


def strategy_status_key(strategy_id: int) -> str:
    return f"strategy:{_id('strategy_id', strategy_id)}:status"


def strategy_signals_key(strategy_id: int) -> str:
    return f"strategy:{_id('strategy_id', strategy_id)}:signals"


def order_status_key(order_id: int) -> str:
    return f"order:{_id('order_id', order_id)}:status"


def active_orders_key(user_id: int) -> str:
    return f"user:{_id('user_id', user_id)}:active_orders"


# portfolio_key's form, which the request prelude (cache.aio) fills from a session entry.
PORTFOLIO_KEY_TEMPLATE = "user:{user_id}:portfolio:{role}"


def portfolio_key(user_id: int, role: str) -> str:
    """The user's portfolio valuation (GET /api/v1/portfolio's body) as seen with `role`
    (tradestore addition; row-level security decides what a role sees)."""
    return PORTFOLIO_KEY_TEMPLATE.format(
        user_id=_id("user_id", user_id), role=_segment("role", role)
    )


def portfolio_keys(user_id: int) -> list[str]:
    """portfolio_key of every role: what a change to the user's accounts makes stale."""
    from tradestore.identity.rls import Role  # identity imports this module

    return [portfolio_key(user_id, r.value) for r in Role]


def notifications_key(user_id: int) -> str:
    return f"notifications:{_id('user_id', user_id)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


# --------------------------------------------------------------------------- values
class CacheValue(BaseModel):
    """A JSON value in Redis. Decimals travel as strings (exact), times as ISO 8601."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class SessionEntry(CacheValue):
    session_id: int
    user_id: int
    username: str
    role: str
    # SHA-256 of the access token (hex): a cached session still needs the token.
    token_hash: str
    expires_at: dt.datetime
    created_at: dt.datetime


class MarketLatest(CacheValue):
    """Seed 002 market:{symbol}:latest: the latest bar."""

    symbol: str
    timeframe: str
    timestamp: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class Ticker(CacheValue):
    symbol: str
    timestamp: dt.datetime
    opening_price: Decimal
    closing_price: Decimal
    high_price: Decimal
    low_price: Decimal
    volume: Decimal
    value: Decimal
    change_24h: Decimal
    change_rate_24h: Decimal
    bid_price: Decimal | None = None
    ask_price: Decimal | None = None


class OrderBook(CacheValue):
    symbol: str
    timestamp: dt.datetime
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    bid_volume: Decimal | None = None
    ask_volume: Decimal | None = None
    spread: Decimal | None = None
    mid_price: Decimal | None = None


class Candle(CacheValue):
    symbol: str
    timeframe: str
    timestamp: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


class StrategyStatus(CacheValue):
    strategy_id: int
    user_id: int
    name: str
    is_active: bool
    is_backtesting: bool
    total_trades: int
    total_pnl: Decimal
    win_rate: Decimal
    last_executed: dt.datetime | None
    updated_at: dt.datetime


class Signal(CacheValue):
    id: int
    strategy_id: int
    execution_type: str
    success: bool
    data: dict[str, Any] | None
    created_at: dt.datetime


class OrderStatusEntry(CacheValue):
    order_id: int
    account_id: int
    user_id: int
    symbol: str
    side: str
    status: str
    quantity: Decimal
    filled_quantity: Decimal
    remaining_quantity: Decimal
    average_fill_price: Decimal | None
    updated_at: dt.datetime

    @property
    def is_active(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


class Notification(CacheValue):
    id: int
    user_id: int | None
    alert_type: str | None
    severity: str | None
    module: str | None
    message: str
    created_at: dt.datetime


# --------------------------------------------------------------------------- primitives
# Add to / trim a mirrored set or list only while it exists (see module docstring).
_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call(ARGV[1], KEYS[1], ARGV[2])
if ARGV[4] ~= '' then redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[4]) - 1) end
if ARGV[3] ~= '' then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3])) end
return 1
"""


def _get_json(cache: Cache, key: str, model: type[M]) -> M | None:
    raw = cache.run(lambda r: r.get(key), None, f"GET {key}")
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        # Written by an older version or by hand: a miss, and gone.
        log.warning("dropping unreadable cache value at %s", key)
        cache.invalidate(key)
        return None


def _set_json(cache: Cache, key: str, value: BaseModel, ttl: int) -> bool:
    data = value.model_dump_json()
    return cache.write(lambda r: r.set(key, data, ex=max(1, ttl)), [key], f"SET {key}")


def _if_exists(
    cache: Cache, key: str, command: str, member: str, ttl: int | None, keep: int | None
) -> bool:
    script = cache.script(_IF_EXISTS)
    args = [command, member, "" if ttl is None else str(ttl), "" if keep is None else str(keep)]
    done = cache.run(lambda r: script(keys=[key], args=args, client=r), None, f"{command} {key}")
    if done is None:  # not applied: the mirror may now be stale
        cache.invalidate(key)
        return False
    return bool(done)


def _replace_set(cache: Cache, key: str, members: Iterable[str], ttl: int) -> bool:
    values = [SENTINEL, *members]

    def op(r: redis.Redis) -> None:
        pipe = r.pipeline(transaction=True)
        pipe.delete(key)
        pipe.sadd(key, *values)
        pipe.expire(key, ttl)
        pipe.execute()

    return cache.write(op, [key], f"rebuild {key}")


def _read_set(cache: Cache, key: str) -> set[str] | None:
    members = cache.run(lambda r: r.smembers(key), None, f"SMEMBERS {key}")
    if not members:  # missing (an existing mirror always holds the sentinel)
        return None
    return {m for m in members if m != SENTINEL}


def _replace_list(cache: Cache, key: str, items: Iterable[str], ttl: int | None) -> bool:
    values = [*items, SENTINEL]

    def op(r: redis.Redis) -> None:
        pipe = r.pipeline(transaction=True)
        pipe.delete(key)
        pipe.rpush(key, *values)
        if ttl is not None:
            pipe.expire(key, ttl)
        pipe.execute()

    return cache.write(op, [key], f"rebuild {key}")


def _read_list(cache: Cache, key: str, model: type[M], limit: int) -> list[M] | None:
    raw = cache.run(lambda r: r.lrange(key, 0, limit), None, f"LRANGE {key}")
    if not raw:
        return None
    items = []
    for item in raw:
        if item == SENTINEL:
            continue
        try:
            items.append(model.model_validate_json(item))
        except ValidationError:
            cache.invalidate(key)
            return None
    return items[:limit]


# --------------------------------------------------------------------------- sessions
def set_session(cache: Cache, entry: SessionEntry) -> bool:
    """session:{id}, kept until the session expires, at most 24h."""
    remaining = int((entry.expires_at - dt.datetime.now(dt.UTC)).total_seconds())
    if remaining <= 0:
        cache.invalidate(session_key(entry.session_id))
        return False
    return _set_json(cache, session_key(entry.session_id), entry, min(SESSION_TTL, remaining))


def get_session(cache: Cache, session_id: int) -> SessionEntry | None:
    return _get_json(cache, session_key(session_id), SessionEntry)


def drop_session(cache: Cache, session_id: int, user_id: int) -> None:
    cache.invalidate(session_key(session_id))
    _if_exists(cache, active_sessions_key(user_id), "SREM", str(session_id), None, None)


def add_active_session(cache: Cache, user_id: int, session_id: int) -> bool:
    return _if_exists(
        cache, active_sessions_key(user_id), "SADD", str(session_id), ACTIVE_SESSIONS_TTL, None
    )


def set_active_sessions(cache: Cache, user_id: int, session_ids: Iterable[int]) -> bool:
    return _replace_set(
        cache, active_sessions_key(user_id), (str(s) for s in session_ids), ACTIVE_SESSIONS_TTL
    )


def get_active_sessions(cache: Cache, user_id: int) -> set[int] | None:
    members = _read_set(cache, active_sessions_key(user_id))
    return None if members is None else {int(m) for m in members}


# --------------------------------------------------------------------------- market data
def set_market_latest(cache: Cache, value: MarketLatest) -> bool:
    return _set_json(cache, market_latest_key(value.symbol), value, MARKET_LATEST_TTL)


def get_market_latest(cache: Cache, symbol: str) -> MarketLatest | None:
    return _get_json(cache, market_latest_key(symbol), MarketLatest)


def set_ticker(cache: Cache, value: Ticker) -> bool:
    return _set_json(cache, ticker_key(value.symbol), value, TICKER_TTL)


def get_ticker(cache: Cache, symbol: str) -> Ticker | None:
    return _get_json(cache, ticker_key(symbol), Ticker)


def set_orderbook(cache: Cache, value: OrderBook) -> bool:
    return _set_json(cache, orderbook_key(value.symbol), value, ORDERBOOK_TTL)


def get_orderbook(cache: Cache, symbol: str) -> OrderBook | None:
    return _get_json(cache, orderbook_key(symbol), OrderBook)


def set_candle(cache: Cache, value: Candle) -> bool:
    key = candle_key(value.symbol, value.timeframe, value.timestamp)
    return _set_json(cache, key, value, CANDLE_TTL)


def get_candle(cache: Cache, symbol: str, timeframe: str, ts: dt.datetime) -> Candle | None:
    return _get_json(cache, candle_key(symbol, timeframe, ts), Candle)


# --------------------------------------------------------------------------- preferences
def set_preferences(cache: Cache, user_id: int, preferences: dict[str, Any]) -> bool:
    key = preferences_key(user_id)
    data = json.dumps(preferences, default=str, sort_keys=True)
    return cache.write(lambda r: r.set(key, data, ex=PREFERENCES_TTL), [key], f"SET {key}")


def get_preferences(cache: Cache, user_id: int) -> dict[str, Any] | None:
    key = preferences_key(user_id)
    raw = cache.run(lambda r: r.get(key), None, f"GET {key}")
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        cache.invalidate(key)
        return None
    return value if isinstance(value, dict) else None


def drop_preferences(cache: Cache, user_id: int) -> None:
    cache.invalidate(preferences_key(user_id))


# --------------------------------------------------------------------------- strategies
def set_strategy_status(cache: Cache, value: StrategyStatus) -> bool:
    return _set_json(cache, strategy_status_key(value.strategy_id), value, STRATEGY_STATUS_TTL)


def get_strategy_status(cache: Cache, strategy_id: int) -> StrategyStatus | None:
    return _get_json(cache, strategy_status_key(strategy_id), StrategyStatus)


def push_signal(cache: Cache, signal: Signal) -> bool:
    """Newest first, the last 100 kept (only while the list is built)."""
    return _if_exists(
        cache,
        strategy_signals_key(signal.strategy_id),
        "LPUSH",
        signal.model_dump_json(),
        STRATEGY_SIGNALS_TTL,
        SIGNALS_KEPT,
    )


def set_signals(cache: Cache, strategy_id: int, signals: Iterable[Signal]) -> bool:
    """Replace the list with `signals`, newest first."""
    items = [s.model_dump_json() for s in signals][:SIGNALS_KEPT]
    return _replace_list(cache, strategy_signals_key(strategy_id), items, STRATEGY_SIGNALS_TTL)


def get_signals(cache: Cache, strategy_id: int, limit: int = SIGNALS_KEPT) -> list[Signal] | None:
    return _read_list(cache, strategy_signals_key(strategy_id), Signal, min(limit, SIGNALS_KEPT))


# --------------------------------------------------------------------------- orders
def set_order_status(cache: Cache, value: OrderStatusEntry) -> bool:
    return _set_json(cache, order_status_key(value.order_id), value, ORDER_STATUS_TTL)


def get_order_status(cache: Cache, order_id: int) -> OrderStatusEntry | None:
    return _get_json(cache, order_status_key(order_id), OrderStatusEntry)


def mark_order_active(cache: Cache, user_id: int, order_id: int, active: bool) -> bool:
    return _if_exists(
        cache,
        active_orders_key(user_id),
        "SADD" if active else "SREM",
        str(order_id),
        ACTIVE_ORDERS_TTL,
        None,
    )


def set_active_orders(cache: Cache, user_id: int, order_ids: Iterable[int]) -> bool:
    return _replace_set(
        cache, active_orders_key(user_id), (str(o) for o in order_ids), ACTIVE_ORDERS_TTL
    )


def get_active_orders(cache: Cache, user_id: int) -> set[int] | None:
    members = _read_set(cache, active_orders_key(user_id))
    return None if members is None else {int(m) for m in members}


# --------------------------------------------------------------------------- notifications
def push_notification(cache: Cache, user_id: int, value: Notification) -> bool:
    """Newest first, the last 100 kept (only while the list is built)."""
    return _if_exists(
        cache,
        notifications_key(user_id),
        "LPUSH",
        value.model_dump_json(),
        NOTIFICATIONS_TTL,
        NOTIFICATIONS_KEPT,
    )


def set_notifications(cache: Cache, user_id: int, values: Iterable[Notification]) -> bool:
    items = [v.model_dump_json() for v in values][:NOTIFICATIONS_KEPT]
    return _replace_list(cache, notifications_key(user_id), items, NOTIFICATIONS_TTL)


def get_notifications(
    cache: Cache, user_id: int, limit: int = NOTIFICATIONS_KEPT
) -> list[Notification] | None:
    return _read_list(
        cache, notifications_key(user_id), Notification, min(limit, NOTIFICATIONS_KEPT)
    )


def push_telegram(cache: Cache, outbox_id: int) -> bool:
    """Queue an outbox row id for the Telegram worker (LPUSH; the worker pops the right)."""
    return cache.run(
        lambda r: r.lpush(TELEGRAM_QUEUE, str(_id("outbox_id", outbox_id))) > 0,
        False,
        "LPUSH telegram_queue",
    )


def pop_telegram(cache: Cache) -> int | None:
    """The oldest queued outbox id, or None (empty, or Redis down)."""
    while True:
        raw = cache.run(lambda r: r.rpop(TELEGRAM_QUEUE), None, "RPOP telegram_queue")
        if raw is None:
            return None
        if raw != SENTINEL:
            return int(raw)


def set_telegram_queue(cache: Cache, outbox_ids: Iterable[int]) -> bool:
    """Replace the queue with `outbox_ids`, oldest first (popped first)."""
    ids = [str(i) for i in outbox_ids]

    def op(r: redis.Redis) -> None:
        pipe = r.pipeline(transaction=True)
        pipe.delete(TELEGRAM_QUEUE)
        if ids:
            pipe.lpush(TELEGRAM_QUEUE, *ids)
        pipe.execute()

    return cache.write(op, [TELEGRAM_QUEUE], "rebuild telegram_queue")


def telegram_queue_length(cache: Cache) -> int | None:
    return cache.run(lambda r: int(r.llen(TELEGRAM_QUEUE)), None, "LLEN telegram_queue")
