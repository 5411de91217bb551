"""What a collector collects (`FeedSpec`) and where it reads it (`MarketSource`).

A feed is one kind of data (candles at a timeframe, trades, order book, ticker) of one
symbol on one exchange. `MarketSource` reads them through CCXT's public REST methods
(`fetch_ohlcv`, `fetch_trades`, `fetch_order_book`, `fetch_ticker`) and turns the answers
into the row shapes `tradestore.market.ingest` reads. Numbers stay exact: CCXT's floats
are taken by their shortest repr (`connector.to_decimal`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import ccxt

from tradestore.db.errors import ValidationError
from tradestore.market.timeframes import timeframe_delta
from tradestore.trading.exchange.connector import point_at, profile_for, to_decimal

KINDS = ("candles", "trades", "orderbook", "ticker")
# How often a feed without its own rhythm is expected to bring something new (seconds).
DEFAULT_TRADES_INTERVAL_S = 60.0
DEFAULT_POLL_INTERVAL_S = 1.0


@dataclass(frozen=True)
class FeedSpec:
    """One feed: `kind` of `symbol` on `exchange` (a CCXT unified symbol, BTC/USDT)."""

    exchange: str
    symbol: str
    kind: str
    timeframe: str | None = None  # candles
    depth: int | None = None  # orderbook levels
    interval_s: float | None = None  # expected interval between new data

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValidationError("kind", f"must be one of {', '.join(KINDS)}", self.kind)
        if self.kind == "candles":
            timeframe_delta(self.timeframe or "")
        if self.kind == "orderbook" and (self.depth is None or self.depth < 1):
            raise ValidationError("depth", "must be a whole number >= 1", self.depth)

    @property
    def key(self) -> str:
        """The feed's name, also its lock (one collector per feed)."""
        extra = self.timeframe or (str(self.depth) if self.depth else "")
        return f"{self.exchange.lower()}:{self.symbol}:{self.kind}" + (f":{extra}" if extra else "")

    @property
    def expected_interval_s(self) -> float:
        """How long the feed may be silent before it counts as stale (one interval: a
        closed bar per timeframe, a trade a minute by default, a book or ticker per poll)."""
        if self.interval_s is not None:
            return self.interval_s
        if self.kind == "candles":
            return timeframe_delta(self.timeframe or "").total_seconds()
        if self.kind == "trades":
            return DEFAULT_TRADES_INTERVAL_S
        return DEFAULT_POLL_INTERVAL_S


def _ms_time(ms: int | float | None) -> dt.datetime | None:
    if ms is None:
        return None
    return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC)


def _text(value: Any) -> str | None:
    d = to_decimal(value)
    return None if d is None else format(d, "f")


class MarketSource:
    """Public market data of one exchange through CCXT (no API key needed)."""

    def __init__(self, exchange_code: str, base_url: str | None = None, timeout_ms: int = 10_000):
        profile = profile_for(exchange_code)
        cls = getattr(ccxt, profile.ccxt_id)
        self.exchange: ccxt.Exchange = cls({"enableRateLimit": True, "timeout": timeout_ms})
        if profile.market_types is not None:
            self.exchange.options["fetchMarkets"] = {"types": list(profile.market_types)}
        if base_url is not None:
            point_at(self.exchange, base_url)
        self.code = exchange_code.lower()
        self._loaded = False

    def _ready(self) -> None:
        if not self._loaded:
            self.exchange.load_markets()
            self._loaded = True

    def exchange_symbol(self, symbol: str) -> str:
        """The exchange's own id of a unified symbol (BTC/USDT -> BTCUSDT)."""
        self._ready()
        return str(self.exchange.market(symbol)["id"])

    def candles(
        self, symbol: str, timeframe: str, since_ms: int, limit: int
    ) -> list[dict[str, Any]]:
        """Bars from since_ms, oldest first: time, open, high, low, close, volume."""
        self._ready()
        return ohlcv_rows(self.exchange.fetch_ohlcv(symbol, timeframe, since_ms, limit))

    def trades(self, symbol: str, since_ms: int, limit: int) -> list[dict[str, Any]]:
        """Public trades from since_ms, oldest first: time, trade_id, price, quantity, side."""
        self._ready()
        return trade_rows(self.exchange.fetch_trades(symbol, since_ms, limit))

    def order_book(self, symbol: str, depth: int, received: dt.datetime) -> dict[str, Any]:
        """The book's top `depth` levels; its time is the exchange's, or `received` when the
        exchange gives none (Binance spot)."""
        self._ready()
        return book_row(self.exchange.fetch_order_book(symbol, depth), depth, received)

    def ticker(self, symbol: str, received: dt.datetime) -> dict[str, Any]:
        self._ready()
        return ticker_row(self.exchange.fetch_ticker(symbol), received)


# CCXT's unified structures as the row shapes of tradestore.market.ingest: one
# definition for the REST answers and the websocket messages.
def ohlcv_rows(rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [
        {
            "time": _ms_time(r[0]),
            "open": _text(r[1]),
            "high": _text(r[2]),
            "low": _text(r[3]),
            "close": _text(r[4]),
            "volume": _text(r[5]),
        }
        for r in rows
    ]


def trade_rows(trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "time": _ms_time(t["timestamp"]),
            "trade_id": str(t["id"]),
            "price": _text(t["price"]),
            "quantity": _text(t["amount"]),
            "side": t.get("side") or None,
        }
        for t in trades
    ]


def book_row(book: dict[str, Any], depth: int, received: dt.datetime) -> dict[str, Any]:
    return {
        "time": _ms_time(book.get("timestamp")) or received,
        "bids": [[_text(p), _text(q)] for p, q, *_ in book["bids"][:depth]],
        "asks": [[_text(p), _text(q)] for p, q, *_ in book["asks"][:depth]],
    }


def ticker_row(t: dict[str, Any], received: dt.datetime) -> dict[str, Any]:
    return {
        "time": _ms_time(t.get("timestamp")) or received,
        "opening_price": _text(t.get("open")),
        "closing_price": _text(t.get("last") or t.get("close")),
        "high_price": _text(t.get("high")),
        "low_price": _text(t.get("low")),
        "volume": _text(t.get("baseVolume")),
        "value": _text(t.get("quoteVolume")),
        "change_24h": _text(t.get("change")),
        "change_rate_24h": _text(t.get("percentage")),
        "bid_price": _text(t.get("bid")),
        "ask_price": _text(t.get("ask")),
    }


def decimal_or_none(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
