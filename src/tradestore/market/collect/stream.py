"""Public market data over the exchange's websocket: CCXT's `watch*` methods (ccxt.pro).

`StreamSource` watches the feeds the exchange's ccxt.pro class has a method for
(`watchOHLCV`, `watchTrades`, `watchOrderBook`, `watchTicker`, as `exchange.has` says) on
a `StreamLoop`; the collector drains its events and stores what they carry through the
same rows and sink as REST polling (`feed.ohlcv_rows`, `trade_rows`, `book_row`,
`ticker_row`). Reconnects and their backoff are the loop's; gaps are the collector's.
"""

from __future__ import annotations

from typing import Any

from tradestore.market.collect.feed import FeedSpec
from tradestore.trading.exchange.connector import point_at, point_ws_at, profile_for, stream_class
from tradestore.trading.exchange.streams import StreamEvent, StreamLoop

# The CCXT capability (exchange.has) each feed kind streams with.
WATCH = {
    "candles": "watchOHLCV",
    "trades": "watchTrades",
    "orderbook": "watchOrderBook",
    "ticker": "watchTicker",
}
# Binance's `trade` stream numbers trades differently from the aggTrades REST history the
# backfill reads; its `aggTrade` stream uses the same ids, so a print seen both ways is
# one print.
WATCH_TRADES_PARAMS: dict[str, dict[str, str]] = {
    "binance": {"name": "aggTrade"},
    "binanceusdm": {"name": "aggTrade"},
}
# Binance's full 24 h ticker (CCXT's default there is the mini ticker, without bid/ask).
WATCH_TICKER_PARAMS: dict[str, dict[str, str]] = {
    "binance": {"name": "ticker"},
    "binanceusdm": {"name": "ticker"},
}


def stream_source(
    exchange_code: str,
    *,
    rest: bool = False,
    api_url: str | None = None,
    ws_url: str | None = None,
) -> StreamSource | None:
    """The websocket source a collector uses, or None to poll everything over REST: when
    asked (`rest`), or when REST goes to another address (`api_url`: a proxy or fake)
    and no websocket address is given (the stream would bypass it)."""
    if rest or (api_url is not None and ws_url is None):
        return None
    return StreamSource(exchange_code, ws_url=ws_url, base_url=api_url)


class StreamSource:
    """Websocket market data of one exchange (no API key needed). `ws_url` sends its
    websockets elsewhere (a loopback fake in tests), `base_url` its REST calls (market
    metadata, order book snapshots)."""

    def __init__(
        self,
        exchange_code: str,
        *,
        ws_url: str | None = None,
        base_url: str | None = None,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        timeout_ms: int = 10_000,
    ) -> None:
        profile = profile_for(exchange_code)
        self.code = exchange_code.lower()
        cls = stream_class(profile)
        self.exchange: Any = None
        if cls is not None:
            self.exchange = cls({"enableRateLimit": True, "timeout": timeout_ms})
            if profile.market_types is not None:
                self.exchange.options["fetchMarkets"] = {"types": list(profile.market_types)}
            if base_url is not None:
                point_at(self.exchange, base_url)
            if ws_url is not None:
                point_ws_at(self.exchange, ws_url)
        self.trades_params = WATCH_TRADES_PARAMS.get(profile.ccxt_id, {})
        self.ticker_params = WATCH_TICKER_PARAMS.get(profile.ccxt_id, {})
        self.loop: StreamLoop | None = None
        self._backoff = (backoff_s, max_backoff_s)

    def has(self, kind: str) -> bool:
        """Whether the exchange streams this kind of feed."""
        return self.exchange is not None and bool(self.exchange.has.get(WATCH[kind]))

    def watch(self, spec: FeedSpec) -> None:
        """Start streaming a feed; its events carry CCXT's unified structures (copied on
        the loop's thread, so the caller reads them safely)."""
        if self.loop is None:
            self.loop = StreamLoop(
                self.exchange, backoff_s=self._backoff[0], max_backoff_s=self._backoff[1]
            )
        ex = self.exchange
        symbol = spec.symbol

        async def candles() -> Any:
            return [list(r) for r in await ex.watch_ohlcv(symbol, spec.timeframe or "1m")]

        async def trades() -> Any:
            params = dict(self.trades_params)
            return [dict(t) for t in await ex.watch_trades(symbol, None, None, params)]

        async def order_book() -> Any:
            book = await ex.watch_order_book(symbol)
            depth = spec.depth or 10
            return {
                "timestamp": book.get("timestamp"),
                "bids": [list(level) for level in book["bids"][:depth]],
                "asks": [list(level) for level in book["asks"][:depth]],
            }

        async def ticker() -> Any:
            return dict(await ex.watch_ticker(symbol, dict(self.ticker_params)))

        calls = {"candles": candles, "trades": trades, "orderbook": order_book, "ticker": ticker}
        self.loop.watch(spec.key, calls[spec.kind])

    def drain(self) -> list[StreamEvent]:
        return [] if self.loop is None else self.loop.drain()

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()
            self.loop = None
