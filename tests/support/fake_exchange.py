"""A loopback fake of the Binance spot REST API: the subset CCXT's `binance` class calls for
markets, time, orders (create / query / cancel / open), myTrades and the account balance.

Real CCXT code talks to it over HTTP on 127.0.0.1 once its `urls['api']` point here
(`tradestore.trading.exchange.connector.point_at`). Requests are signed as Binance signs
them (HMAC-SHA256 of the query and body, key in X-MBX-APIKEY) and checked, so a wrong key
is an authentication error as on the real exchange. Nothing matches orders by itself: a
test fills an order with `fill()`. Faults are scripted per endpoint: `fail_next()` answers
the next matching request with a given status and body (a 429, a rejection), `drop_next()`
closes the connection without an answer. `requests` records every request (method, path,
params) for assertions; `trade_feed` can rewrite the myTrades answer (duplicates, reordering).

Public market data for the collector: `klines` (per symbol, 1m bars as Binance sends them),
`agg_trades` (aggTrades), `depth` and `ticker_24hr`, filled with `add_bar`, `add_print`,
`set_book`, `set_ticker`; `kline_feed` rewrites a klines answer (duplicate bars).

Websockets (`serve_ws()`, then `fake.ws`, a `FakeStreams`): the subset of Binance's stream
protocol ccxt.pro's `binance` class speaks, on a second loopback port (aiohttp). Market
streams at `/ws/<n>` (`SUBSCRIBE` / `UNSUBSCRIBE` of `<symbol>@kline_<tf>`, `@aggTrade`,
`@trade`, `@depth@100ms`, `@ticker`, answered `{"result": null, "id": ...}`) and the spot
user data stream of the WebSocket API at `/ws-api/v3` (`userDataStream.subscribe.signature`,
its HMAC checked; events wrapped in `{"subscriptionId", "event"}`). Tests push messages
(`push_kline`, `push_print`, `push_depth`, `push_ticker`, `push_execution`), wait for
subscriptions (`wait_subscribed`), drop every connection (`drop`) and refuse new ones
(`refuse`: the handshake answers 503), so reconnects run through CCXT's own client.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from tests.support.loopback_http import serve_json

API_KEY = "fake-binance-key-0123456789"
API_SECRET = "fake-binance-secret-abcdefghij"


@dataclass
class FakeOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None
    time_ms: int
    executed: Decimal = Decimal(0)
    quote: Decimal = Decimal(0)
    status: str = "NEW"

    def as_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": str(self.price or 0),
            "origQty": str(self.quantity),
            "executedQty": str(self.executed),
            "cummulativeQuoteQty": str(self.quote),
            "status": self.status,
            "timeInForce": "GTC" if self.type == "LIMIT" else "IOC",
            "type": self.type,
            "side": self.side,
            "stopPrice": "0",
            "icebergQty": "0",
            "time": self.time_ms,
            "updateTime": self.time_ms,
            "isWorking": True,
            "workingTime": self.time_ms,
            "origQuoteOrderQty": "0",
            "selfTradePreventionMode": "NONE",
        }


@dataclass
class Scripted:
    method: str
    path: str
    status: int
    body: Any  # None: drop the connection


@dataclass
class FakeBinance:
    """State of the fake exchange; `serve()` starts it on a loopback port."""

    symbols: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "BTCUSDT": {"base": "BTC", "quote": "USDT", "tick": "0.01", "step": "0.0001"},
            "ETHUSDT": {"base": "ETH", "quote": "USDT", "tick": "0.01", "step": "0.0001"},
        }
    )
    balances: dict[str, Decimal] = field(default_factory=dict)
    orders: list[FakeOrder] = field(default_factory=list)
    trades: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    scripted: list[Scripted] = field(default_factory=list)
    trade_feed: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
    klines: dict[str, list[list[Any]]] = field(default_factory=dict)
    agg_trades: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    books: dict[str, dict[str, Any]] = field(default_factory=dict)
    tickers: dict[str, dict[str, Any]] = field(default_factory=dict)
    kline_feed: Callable[[list[list[Any]]], list[list[Any]]] | None = None
    api_key: str = API_KEY
    api_secret: str = API_SECRET
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1001))
    _trade_ids: itertools.count = field(default_factory=lambda: itertools.count(5001))
    # Exchange time: the wall clock when the fake started, then one second per event, so
    # trades come after the orders the books recorded and never tie.
    _clock: itertools.count = field(
        default_factory=lambda: itertools.count(int(time.time() * 1000), 1000)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    ws: FakeStreams | None = None

    # ------------------------------------------------------------------ test controls
    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def now_ms(self) -> int:
        return next(self._clock)

    def fail_next(self, method: str, path: str, status: int, body: Any) -> None:
        self.scripted.append(Scripted(method, path, status, body))

    def drop_next(self, method: str, path: str) -> None:
        self.scripted.append(Scripted(method, path, 0, None))

    def calls(self, method: str, path: str) -> list[dict[str, str]]:
        return [p for m, pa, p in self.requests if m == method and pa == path]

    def order_by_client_id(self, client_order_id: str) -> FakeOrder:
        return next(o for o in self.orders if o.client_order_id == client_order_id)

    def fill(
        self,
        client_order_id: str,
        qty: str,
        price: str,
        commission: str = "0",
        commission_asset: str | None = None,
    ) -> dict[str, Any]:
        """The exchange matches part of an order: a trade, the order's state, balances."""
        with self.lock:
            order = self.order_by_client_id(client_order_id)
            q, p = Decimal(qty), Decimal(price)
            assert order.executed + q <= order.quantity, "fake overfill"
            order.executed += q
            order.quote += q * p
            order.status = "FILLED" if order.executed == order.quantity else "PARTIALLY_FILLED"
            spec = self.symbols[order.symbol]
            asset = commission_asset or spec["quote"]
            sign = 1 if order.side == "BUY" else -1
            self._move(spec["base"], sign * q)
            self._move(spec["quote"], -sign * q * p)
            self._move(asset, -Decimal(commission))
            trade = {
                "symbol": order.symbol,
                "id": next(self._trade_ids),
                "orderId": order.order_id,
                "orderListId": -1,
                "price": price,
                "qty": qty,
                "quoteQty": str(q * p),
                "commission": commission,
                "commissionAsset": asset,
                "time": self.now_ms(),
                "isBuyer": order.side == "BUY",
                "isMaker": False,
                "isBestMatch": True,
            }
            self.trades.append(trade)
            return trade

    # ------------------------------------------------------------------ market data
    def add_bar(
        self, symbol: str, open_ms: int, o: str, h: str, low: str, c: str, v: str, count: int = 1
    ) -> None:
        """A 1m bar as Binance's klines list it (times in ms, values as strings)."""
        with self.lock:
            bars = self.klines.setdefault(symbol, [])
            bars[:] = [b for b in bars if b[0] != open_ms]
            quote = str(Decimal(v) * Decimal(c))
            bars.append([open_ms, o, h, low, c, v, open_ms + 59_999, quote, count, "0", "0", "0"])
            bars.sort(key=lambda b: b[0])

    def add_print(
        self, symbol: str, time_ms: int, price: str, qty: str, buyer_maker: bool = False
    ) -> int:
        """A public trade (aggTrades); returns its id."""
        with self.lock:
            prints = self.agg_trades.setdefault(symbol, [])
            trade_id = next(self._trade_ids)
            prints.append(
                {
                    "a": trade_id,
                    "p": price,
                    "q": qty,
                    "f": trade_id,
                    "l": trade_id,
                    "T": time_ms,
                    "m": buyer_maker,
                    "M": True,
                }
            )
            prints.sort(key=lambda t: (t["T"], t["a"]))
            return trade_id

    def set_book(
        self, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]
    ) -> None:
        with self.lock:
            last = self.books.get(symbol, {}).get("lastUpdateId", 0)
            self.books[symbol] = {
                "lastUpdateId": last + 1,
                "bids": [list(b) for b in bids],
                "asks": [list(a) for a in asks],
            }

    def set_ticker(self, symbol: str, last: str, bid: str, ask: str, time_ms: int) -> None:
        with self.lock:
            self.tickers[symbol] = {
                "symbol": symbol,
                "priceChange": "0",
                "priceChangePercent": "0",
                "weightedAvgPrice": last,
                "prevClosePrice": last,
                "lastPrice": last,
                "lastQty": "1",
                "bidPrice": bid,
                "bidQty": "1",
                "askPrice": ask,
                "askQty": "1",
                "openPrice": last,
                "highPrice": last,
                "lowPrice": last,
                "volume": "10",
                "quoteVolume": str(Decimal(last) * 10),
                "openTime": time_ms - 86_400_000,
                "closeTime": time_ms,
                "firstId": 1,
                "lastId": 2,
                "count": 2,
            }

    def _klines(self, params: dict[str, str]) -> tuple[int, Any]:
        bars = self.klines.get(params.get("symbol", ""), [])
        start = int(params.get("startTime", 0))
        end = int(params.get("endTime", 2**62))
        found = [b for b in bars if start <= b[0] <= end][: int(params.get("limit", 500))]
        if self.kline_feed is not None:
            found = self.kline_feed(found)
        return 200, found

    def _agg_trades(self, params: dict[str, str]) -> tuple[int, Any]:
        prints = self.agg_trades.get(params.get("symbol", ""), [])
        start = int(params.get("startTime", 0))
        end = int(params.get("endTime", 2**62))
        found = [t for t in prints if start <= t["T"] <= end]
        return 200, found[: int(params.get("limit", 500))]

    def _depth(self, params: dict[str, str]) -> tuple[int, Any]:
        book = self.books.get(params.get("symbol", ""))
        if book is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        limit = int(params.get("limit", 100))
        return 200, book | {"bids": book["bids"][:limit], "asks": book["asks"][:limit]}

    def _ticker(self, params: dict[str, str]) -> tuple[int, Any]:
        ticker = self.tickers.get(params.get("symbol", ""))
        if ticker is None:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        return 200, ticker

    def _move(self, asset: str, amount: Decimal) -> None:
        self.balances[asset] = self.balances.get(asset, Decimal(0)) + amount

    # ------------------------------------------------------------------ server
    def serve(self) -> FakeBinance:
        self.server = serve_json(
            lambda method, path, query, body, headers: self.dispatch(
                method, path, query, body, headers.get("X-MBX-APIKEY")
            )
        )
        return self

    def serve_ws(self) -> FakeBinance:
        """Start the websocket endpoints (`self.ws`) on a second loopback port."""
        self.ws = FakeStreams(self).start()
        return self

    def close(self) -> None:
        if self.ws is not None:
            self.ws.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # ------------------------------------------------------------------ API
    def dispatch(
        self, method: str, path: str, query: str, body: str, key: str | None
    ) -> tuple[int, Any]:
        params = dict(parse_qsl(query)) | dict(parse_qsl(body))
        with self.lock:
            self.requests.append((method, path, params))
            for s in self.scripted:
                if s.method == method and s.path == path:
                    self.scripted.remove(s)
                    return s.status, s.body
        public = {
            ("GET", "/api/v3/exchangeInfo"): self._exchange_info,
            ("GET", "/api/v3/time"): lambda p: {"serverTime": self.now_ms()},
            ("GET", "/api/v3/ping"): lambda p: {},
            # Margin pairs (CCXT marks spot markets margin-tradable from them): none here.
            ("GET", "/sapi/v1/margin/allPairs"): lambda p: [],
            ("GET", "/sapi/v1/margin/isolated/allPairs"): lambda p: [],
        }
        market_data = {
            ("GET", "/api/v3/klines"): self._klines,
            ("GET", "/api/v3/aggTrades"): self._agg_trades,
            ("GET", "/api/v3/depth"): self._depth,
            ("GET", "/api/v3/ticker/24hr"): self._ticker,
        }
        if (method, path) in market_data:
            with self.lock:
                status, answer = market_data[(method, path)](params)
            return status, answer
        private = {
            ("POST", "/api/v3/order"): self._create,
            ("GET", "/api/v3/order"): self._query,
            ("DELETE", "/api/v3/order"): self._cancel,
            ("GET", "/api/v3/openOrders"): self._open_orders,
            ("GET", "/api/v3/myTrades"): self._my_trades,
            ("GET", "/api/v3/account"): self._account,
            # Currency metadata (networks, withdrawal fees): none here.
            ("GET", "/sapi/v1/capital/config/getall"): lambda p: (200, []),
        }
        if (method, path) in public:
            return 200, public[(method, path)](params)
        if (method, path) not in private:
            return 404, {"code": -1, "msg": f"fake has no {method} {path}"}
        if key != self.api_key:
            return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        if not self._signed(query, body):
            return 400, {"code": -1022, "msg": "Signature for this request is not valid."}
        with self.lock:
            return private[(method, path)](params)

    def _signed(self, query: str, body: str) -> bool:
        signed = query + body
        if "signature=" not in signed:
            return False
        payload, _, signature = signed.rpartition("&signature=")
        if not payload:
            payload, signature = "", signed.removeprefix("signature=")
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

    def _exchange_info(self, params: dict[str, str]) -> dict[str, Any]:
        symbols = []
        for name, s in self.symbols.items():
            symbols.append(
                {
                    "symbol": name,
                    "status": "TRADING",
                    "baseAsset": s["base"],
                    "baseAssetPrecision": 8,
                    "quoteAsset": s["quote"],
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "MARKET"],
                    "icebergAllowed": False,
                    "ocoAllowed": False,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": s["tick"],
                            "maxPrice": "1000000.00",
                            "tickSize": s["tick"],
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": s["step"],
                            "maxQty": "9000.00000000",
                            "stepSize": s["step"],
                        },
                        {"filterType": "NOTIONAL", "minNotional": "5.00000000"},
                    ],
                    "permissions": ["SPOT"],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "NONE",
                    "allowedSelfTradePreventionModes": ["NONE"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": [],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _find(self, params: dict[str, str]) -> FakeOrder | None:
        for o in self.orders:
            if o.symbol != params.get("symbol"):
                continue
            if "orderId" in params and str(o.order_id) == params["orderId"]:
                return o
            if "origClientOrderId" in params and o.client_order_id == params["origClientOrderId"]:
                return o
        return None

    def _create(self, params: dict[str, str]) -> tuple[int, Any]:
        cid = params.get("newClientOrderId") or f"fake-{len(self.orders)}"
        if any(
            o.client_order_id == cid and o.status in ("NEW", "PARTIALLY_FILLED")
            for o in self.orders
        ):
            return 400, {"code": -2010, "msg": "Duplicate order sent."}
        symbol = params["symbol"]
        if symbol not in self.symbols:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        qty = Decimal(params["quantity"])
        price = Decimal(params["price"]) if params.get("price") else None
        if price is not None and qty * price < 5:
            return 400, {"code": -1013, "msg": "Filter failure: NOTIONAL"}
        if params["side"] == "BUY" and price is not None:
            quote = self.symbols[symbol]["quote"]
            if self.balances.get(quote, Decimal(0)) < qty * price:
                return 400, {
                    "code": -2010,
                    "msg": "Account has insufficient balance for requested action.",
                }
        order = FakeOrder(
            next(self._ids), cid, symbol, params["side"], params["type"], qty, price, self.now_ms()
        )
        self.orders.append(order)
        return 200, order.as_json() | {"transactTime": order.time_ms, "fills": []}

    def _query(self, params: dict[str, str]) -> tuple[int, Any]:
        order = self._find(params)
        if order is None:
            return 400, {"code": -2013, "msg": "Order does not exist."}
        return 200, order.as_json()

    def _cancel(self, params: dict[str, str]) -> tuple[int, Any]:
        order = self._find(params)
        if order is None or order.status not in ("NEW", "PARTIALLY_FILLED"):
            return 400, {"code": -2011, "msg": "Unknown order sent."}
        order.status = "CANCELED"
        return 200, order.as_json() | {"origClientOrderId": order.client_order_id}

    def _open_orders(self, params: dict[str, str]) -> tuple[int, Any]:
        return 200, [
            o.as_json()
            for o in self.orders
            if o.status in ("NEW", "PARTIALLY_FILLED") and params.get("symbol") in (None, o.symbol)
        ]

    def _my_trades(self, params: dict[str, str]) -> tuple[int, Any]:
        start = int(params.get("startTime", 0))
        found = [
            t for t in self.trades if t["symbol"] == params.get("symbol") and t["time"] >= start
        ]
        found = found[: int(params.get("limit", 500))]
        if self.trade_feed is not None:
            found = self.trade_feed(found)
        return 200, found

    def _account(self, params: dict[str, str]) -> tuple[int, Any]:
        return 200, {
            "makerCommission": 10,
            "takerCommission": 10,
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "updateTime": self.now_ms(),
            "accountType": "SPOT",
            "balances": [
                {"asset": a, "free": str(v), "locked": "0.00000000"}
                for a, v in sorted(self.balances.items())
            ],
            "permissions": ["SPOT"],
        }


# ---------------------------------------------------------------------- websockets
def _nothing() -> None:
    pass


@dataclass
class _Conn:
    socket: web.WebSocketResponse
    path: str
    streams: set[str] = field(default_factory=set)
    user: bool = False


class FakeStreams:
    """Binance's market streams and spot user data stream over loopback websockets."""

    def __init__(self, fake: FakeBinance) -> None:
        self.fake = fake
        self.conns: list[_Conn] = []
        self.refusing = False
        self.connects = 0  # handshakes accepted
        self.received: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeStreams:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws/{stream}", self._market)
        app.router.add_get("/ws-api/v3", self._api)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        self.drop()
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    # ------------------------------------------------------------------ test controls
    def refuse(self, on: bool = True) -> None:
        """While on, a new connection's handshake is answered 503 (the exchange is away)."""
        self.refusing = on

    def drop(self) -> None:
        """Close every open connection (as a network failure would)."""

        async def close_all() -> None:
            for conn in list(self.conns):
                await conn.socket.close(code=1006)

        self._run(close_all())

    def subscribed(self, stream: str) -> bool:
        return any(stream in c.streams and not c.socket.closed for c in self.conns)

    def user_connected(self) -> bool:
        return any(c.user and not c.socket.closed for c in self.conns)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        with self.changed:
            if not self.changed.wait_for(condition, timeout):
                raise AssertionError("fake websocket: condition not met in time")

    def wait_subscribed(self, stream: str, timeout: float = 10.0) -> None:
        self.wait_for(lambda: self.subscribed(stream), timeout)

    def push(self, stream: str, payload: dict[str, Any]) -> int:
        """Send a raw stream event to every connection subscribed to `stream`; returns how
        many got it."""
        text = json.dumps(payload)

        async def send() -> int:
            sent = 0
            for conn in list(self.conns):
                if stream in conn.streams and not conn.socket.closed:
                    await conn.socket.send_str(text)
                    sent += 1
            return sent

        return int(self._run(send()))

    def push_kline(self, symbol: str, open_ms: int, closed: bool = True) -> int:
        """The bar of the klines list opening at open_ms (add_bar first), as a kline event."""
        bar = next(b for b in self.fake.klines[symbol] if b[0] == open_ms)
        return self.push(
            f"{symbol.lower()}@kline_1m",
            {
                "e": "kline",
                "E": bar[6] + 1,
                "s": symbol,
                "k": {
                    "t": bar[0], "T": bar[6], "s": symbol, "i": "1m", "f": 1, "L": 1,
                    "o": bar[1], "h": bar[2], "l": bar[3], "c": bar[4], "v": bar[5],
                    "n": bar[8], "x": closed, "q": bar[7], "V": "0", "Q": "0", "B": "0",
                },
            },
        )  # fmt: skip

    def push_print(self, symbol: str, trade_id: int) -> int:
        """A print added with add_print, as an aggTrade event."""
        t = next(p for p in self.fake.agg_trades[symbol] if p["a"] == trade_id)
        return self.push(
            f"{symbol.lower()}@aggTrade", {"e": "aggTrade", "E": t["T"], "s": symbol} | t
        )

    def push_depth(
        self, symbol: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]], time_ms: int
    ) -> int:
        """A depth update (levels to set; quantity 0 removes one), also applied to the REST
        book so a snapshot and the diffs agree (update ids follow Binance's U/u rule)."""
        with self.fake.lock:
            book = self.fake.books[symbol]
            update = book["lastUpdateId"] + 1
            for side, levels in (("bids", bids), ("asks", asks)):
                merged = {p: q for p, q in book[side]}
                for p, q in levels:
                    merged[p] = q
                kept = [[p, q] for p, q in merged.items() if Decimal(q) != 0]
                kept.sort(key=lambda lv: Decimal(lv[0]), reverse=side == "bids")
                book[side] = kept
            book["lastUpdateId"] = update
        return self.push(
            f"{symbol.lower()}@depth@100ms",
            {"e": "depthUpdate", "E": time_ms, "s": symbol, "U": update, "u": update,
             "b": [list(b) for b in bids], "a": [list(a) for a in asks]},
        )  # fmt: skip

    def push_ticker(self, symbol: str) -> int:
        """The ticker set with set_ticker, as a 24hrTicker event."""
        t = self.fake.tickers[symbol]
        return self.push(
            f"{symbol.lower()}@ticker",
            {"e": "24hrTicker", "E": t["closeTime"], "s": symbol, "p": t["priceChange"],
             "P": t["priceChangePercent"], "w": t["weightedAvgPrice"], "x": t["prevClosePrice"],
             "c": t["lastPrice"], "Q": t["lastQty"], "b": t["bidPrice"], "B": t["bidQty"],
             "a": t["askPrice"], "A": t["askQty"], "o": t["openPrice"], "h": t["highPrice"],
             "l": t["lowPrice"], "v": t["volume"], "q": t["quoteVolume"], "O": t["openTime"],
             "C": t["closeTime"], "F": t["firstId"], "L": t["lastId"], "n": t["count"]},
        )  # fmt: skip

    def execution_report(self, trade: dict[str, Any]) -> dict[str, Any]:
        """The executionReport event of a trade made by `fake.fill`."""
        order = next(o for o in self.fake.orders if o.order_id == trade["orderId"])
        return {
            "e": "executionReport", "E": trade["time"], "s": trade["symbol"],
            "c": order.client_order_id, "S": order.side, "o": order.type,
            "f": "GTC" if order.type == "LIMIT" else "IOC", "q": str(order.quantity),
            "p": str(order.price or 0), "P": "0", "F": "0", "g": -1, "C": "", "x": "TRADE",
            "X": order.status, "r": "NONE", "i": order.order_id, "l": trade["qty"],
            "z": str(order.executed), "L": trade["price"], "n": trade["commission"],
            "N": trade["commissionAsset"], "T": trade["time"], "t": trade["id"], "I": 1,
            "w": False, "m": trade["isMaker"], "M": True, "O": order.time_ms,
            "Z": str(order.quote), "Y": trade["quoteQty"], "Q": "0",
        }  # fmt: skip

    def push_execution(self, trade: dict[str, Any]) -> int:
        """A trade of `fake.fill` on the user data stream (send it twice for a duplicate)."""
        text = json.dumps({"subscriptionId": 0, "event": self.execution_report(trade)})

        async def send() -> int:
            sent = 0
            for conn in list(self.conns):
                if conn.user and not conn.socket.closed:
                    await conn.socket.send_str(text)
                    sent += 1
            return sent

        return int(self._run(send()))

    # ------------------------------------------------------------------ server side
    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    async def _accept(self, request: web.Request) -> _Conn | web.Response:
        if self.refusing:
            return web.Response(status=503, text="fake: refusing websocket connections")
        # A short close handshake: a dropped client does not hold the fake up.
        socket = web.WebSocketResponse(timeout=0.5)
        await socket.prepare(request)
        conn = _Conn(socket, request.path)
        self.conns.append(conn)
        self.connects += 1
        return conn

    async def _serve(
        self,
        conn: _Conn,
        handle: Callable[[_Conn, dict[str, Any]], tuple[dict[str, Any], Callable[[], None]]],
    ) -> None:
        self._notify()
        try:
            async for msg in conn.socket:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                self.received.append(data)
                reply, then = handle(conn, data)
                await conn.socket.send_str(json.dumps(reply))
                # The subscription counts once its answer is out: what a test pushes
                # after waiting for it comes after the answer, as on the exchange.
                then()
                self._notify()
        finally:
            self.conns.remove(conn)
            self._notify()

    async def _market(self, request: web.Request) -> web.StreamResponse:
        conn = await self._accept(request)
        if isinstance(conn, web.Response):
            return conn

        def handle(conn: _Conn, data: dict[str, Any]) -> tuple[dict[str, Any], Callable[[], None]]:
            streams = list(data.get("params", []))
            if data.get("method") == "SUBSCRIBE":
                then: Callable[[], None] = lambda: conn.streams.update(streams)  # noqa: E731
            elif data.get("method") == "UNSUBSCRIBE":
                then = lambda: conn.streams.difference_update(streams)  # noqa: E731
            else:
                return {
                    "error": {"code": 2, "msg": "Invalid request"},
                    "id": data.get("id"),
                }, _nothing
            return {"result": None, "id": data.get("id")}, then

        await self._serve(conn, handle)
        return conn.socket

    async def _api(self, request: web.Request) -> web.StreamResponse:
        conn = await self._accept(request)
        if isinstance(conn, web.Response):
            return conn

        def handle(conn: _Conn, data: dict[str, Any]) -> tuple[dict[str, Any], Callable[[], None]]:
            reply = answer(conn, data)
            ok = reply.get("status") == 200
            return reply, (lambda: setattr(conn, "user", True)) if ok else _nothing

        def answer(conn: _Conn, data: dict[str, Any]) -> dict[str, Any]:
            rid = data.get("id")
            if data.get("method") != "userDataStream.subscribe.signature":
                return {"id": rid, "status": 400, "error": {"code": -1, "msg": "fake: no method"}}
            params = dict(data.get("params") or {})
            signature = str(params.pop("signature", ""))
            payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
            expected = hmac.new(
                self.fake.api_secret.encode(), payload.encode(), hashlib.sha256
            ).hexdigest()
            if params.get("apiKey") != self.fake.api_key:
                return {"id": rid, "status": 401,
                        "error": {"code": -2015, "msg": "Invalid API-key, IP, or permissions."}}  # fmt: skip
            if not hmac.compare_digest(expected, signature):
                return {"id": rid, "status": 400,
                        "error": {"code": -1022, "msg": "Signature for this request is not valid."}}  # fmt: skip
            return {"id": rid, "status": 200, "result": {"subscriptionId": 0}}

        await self._serve(conn, handle)
        return conn.socket
