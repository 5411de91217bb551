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
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self, method: str) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                status, payload = fake.dispatch(
                    method, split.path, split.query, body, self.headers.get("X-MBX-APIKEY")
                )
                if payload is None:  # scripted connection drop
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
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
