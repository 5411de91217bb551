"""A loopback fake of the Upbit REST API (KRW spot): the subset CCXT's `upbit` class calls
for markets, orders (create by identifier, query by uuid or identifier, cancel, open) and
balances.

Requests are authenticated as Upbit does: a JWT (HS256 with the secret key) in the
Authorization header naming the access key, with the SHA-512 hash of the query; a wrong
key or a bad signature is answered as Upbit answers it. Upbit has no "my trades" endpoint:
an order's fills are listed inside the order (`GET /v1/order` answers with `trades`), and
fees only as the order's `paid_fee`. A test fills an order with `fill()` and closes one on
the exchange's side with `close()`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from tests.support.loopback_http import serve_json

ACCESS_KEY = "fake-upbit-access-key-0123456789"
SECRET_KEY = "fake-upbit-secret-key-abcdefghij"
KST = timedelta(hours=9)


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class UpbitOrder:
    uuid: str
    identifier: str
    market: str
    side: str  # bid | ask
    ord_type: str  # limit | price | market
    price: Decimal | None
    volume: Decimal | None
    created_at: str
    state: str = "wait"  # wait | done | cancel
    trades: list[dict[str, str]] = field(default_factory=list)
    paid_fee: Decimal = Decimal(0)

    @property
    def executed(self) -> Decimal:
        return sum((Decimal(t["volume"]) for t in self.trades), Decimal(0))

    def as_json(self, with_trades: bool) -> dict[str, Any]:
        remaining = (self.volume or Decimal(0)) - self.executed
        body: dict[str, Any] = {
            "uuid": self.uuid,
            "identifier": self.identifier,
            "side": self.side,
            "ord_type": self.ord_type,
            "price": None if self.price is None else str(self.price),
            "state": self.state,
            "market": self.market,
            "created_at": self.created_at,
            "volume": None if self.volume is None else str(self.volume),
            "remaining_volume": str(remaining),
            "reserved_fee": "0",
            "remaining_fee": "0",
            "paid_fee": str(self.paid_fee),
            "locked": "0",
            "executed_volume": str(self.executed),
            "trades_count": len(self.trades),
        }
        if with_trades:
            body["trades"] = list(self.trades)
        return body


@dataclass
class FakeUpbit:
    """State of the fake exchange; `serve()` starts it on a loopback port."""

    markets: tuple[str, ...] = ("KRW-BTC", "KRW-ETH")
    balances: dict[str, Decimal] = field(default_factory=dict)
    orders: list[UpbitOrder] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    # Exchange time: the wall clock when the fake started, then one second per event.
    _clock: itertools.count = field(
        default_factory=lambda: itertools.count(int(datetime.now(UTC).timestamp()), 1)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ test controls
    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _now(self) -> str:
        """Upbit's timestamps: ISO 8601 in Korean time with its offset."""
        at = datetime.fromtimestamp(next(self._clock), UTC) + KST
        return at.strftime("%Y-%m-%dT%H:%M:%S+09:00")

    def order_by_identifier(self, identifier: str) -> UpbitOrder:
        return next(o for o in self.orders if o.identifier == identifier)

    def fill(self, identifier: str, volume: str, price: str, fee: str = "0") -> str:
        """A fill of the order: a trade inside it, its fee added to the order's paid_fee.
        Returns the trade's uuid."""
        with self.lock:
            order = self.order_by_identifier(identifier)
            qty, px = Decimal(volume), Decimal(price)
            trade_id = str(uuid.uuid4())
            order.trades.append(
                {
                    "market": order.market,
                    "uuid": trade_id,
                    "price": str(px),
                    "volume": str(qty),
                    "funds": str(qty * px),
                    "trend": "up",
                    "created_at": self._now(),
                    "side": order.side,
                }
            )
            order.paid_fee += Decimal(fee)
            if order.volume is not None and order.executed >= order.volume:
                order.state = "done"
            base, quote = order.market.split("-")[1], order.market.split("-")[0]
            sign = 1 if order.side == "bid" else -1
            self.balances[base] = self.balances.get(base, Decimal(0)) + sign * qty
            self.balances[quote] = (
                self.balances.get(quote, Decimal(0)) - sign * qty * px - Decimal(fee)
            )
            return trade_id

    def close(self, identifier: str) -> None:
        """The exchange cancels the order on its own (what a self-trade prevention rule,
        a delisting or an operator does)."""
        with self.lock:
            self.order_by_identifier(identifier).state = "cancel"

    def calls(self, method: str, path: str) -> list[dict[str, str]]:
        return [p for m, pa, p in self.requests if m == method and pa == path]

    # ------------------------------------------------------------------ server
    def serve(self) -> FakeUpbit:
        self.server = serve_json(
            lambda method, path, query, body, headers: self.dispatch(
                method, path, query, body, headers.get("Authorization")
            )
        )
        return self

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # ------------------------------------------------------------------ API
    def dispatch(
        self, method: str, path: str, query: str, body: str, authorization: str | None
    ) -> tuple[int, Any]:
        params: dict[str, str] = dict(parse_qsl(query))
        signed_query = unquote(query)
        if body:
            fields = json.loads(body)
            params |= {k: str(v) for k, v in fields.items()}
            signed_query = "&".join(f"{k}={v}" for k, v in fields.items())
        with self.lock:
            self.requests.append((method, path, params))
        if (method, path) == ("GET", "/v1/market/all"):
            return 200, [{"market": m, "korean_name": m, "english_name": m} for m in self.markets]
        private = {
            ("POST", "/v1/orders"): self._create,
            ("GET", "/v1/order"): self._query,
            ("DELETE", "/v1/order"): self._cancel,
            ("GET", "/v1/orders/open"): self._open,
            ("GET", "/v1/accounts"): self._accounts,
        }
        if (method, path) not in private:
            return 404, {"error": {"name": "not_found", "message": f"no {method} {path}"}}
        problem = self._authenticate(authorization, signed_query)
        if problem:
            return 401, {"error": {"name": problem, "message": problem}}
        with self.lock:
            return private[(method, path)](params)

    def _authenticate(self, authorization: str | None, signed_query: str) -> str | None:
        """None when the JWT is signed with our secret, names our access key and hashes
        the query it came with; otherwise Upbit's error name."""
        if not authorization or not authorization.startswith("Bearer "):
            return "jwt_verification"
        try:
            header, payload, signature = authorization.removeprefix("Bearer ").split(".")
            claims = json.loads(_b64decode(payload))
        except ValueError:
            return "jwt_verification"
        expected = hmac.new(
            self.secret_key.encode(), f"{header}.{payload}".encode(), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, _b64decode(signature)):
            return "jwt_verification"
        if claims.get("access_key") != self.access_key:
            return "invalid_access_key"
        if signed_query:
            digest = hashlib.sha512(signed_query.encode()).hexdigest()
            if claims.get("query_hash") != digest:
                return "invalid_query_payload"
        return None

    def _find(self, params: dict[str, str]) -> UpbitOrder | None:
        for order in self.orders:
            if params.get("uuid") == order.uuid or params.get("identifier") == order.identifier:
                return order
        return None

    def _create(self, params: dict[str, str]) -> tuple[int, Any]:
        if params.get("market") not in self.markets:
            return 400, {"error": {"name": "market_does_not_exist", "message": "no market"}}
        identifier = params.get("identifier") or str(uuid.uuid4())
        if any(o.identifier == identifier for o in self.orders):
            return 400, {"error": {"name": "identifier_already_used", "message": identifier}}
        order = UpbitOrder(
            uuid=str(uuid.uuid4()),
            identifier=identifier,
            market=params["market"],
            side=params["side"],
            ord_type=params["ord_type"],
            price=Decimal(params["price"]) if params.get("price") else None,
            volume=Decimal(params["volume"]) if params.get("volume") else None,
            created_at=self._now(),
        )
        self.orders.append(order)
        return 201, order.as_json(with_trades=False)

    def _query(self, params: dict[str, str]) -> tuple[int, Any]:
        order = self._find(params)
        if order is None:
            return 404, {"error": {"name": "order_not_found", "message": "주문을 찾지 못했습니다."}}
        return 200, order.as_json(with_trades=True)

    def _cancel(self, params: dict[str, str]) -> tuple[int, Any]:
        order = self._find(params)
        if order is None or order.state != "wait":
            return 404, {"error": {"name": "order_not_found", "message": "주문을 찾지 못했습니다."}}
        order.state = "cancel"
        return 200, order.as_json(with_trades=False)

    def _open(self, params: dict[str, str]) -> tuple[int, Any]:
        market = params.get("market")
        return 200, [
            o.as_json(with_trades=False)
            for o in self.orders
            if o.state == "wait" and (market is None or o.market == market)
        ]

    def _accounts(self, params: dict[str, str]) -> tuple[int, Any]:
        return 200, [
            {
                "currency": currency,
                "balance": str(amount),
                "locked": "0",
                "avg_buy_price": "0",
                "avg_buy_price_modified": False,
                "unit_currency": "KRW",
            }
            for currency, amount in sorted(self.balances.items())
        ]
