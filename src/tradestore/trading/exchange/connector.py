"""Exchange connectivity through CCXT: one `Connector` per account, built from the
account's exchange, trading mode and encrypted API key.

What each exchange needs beyond CCXT's unified API is in its `Profile`: which markets
to load, and how to find an order by the client order id tradestore gave it (the router's
crash recovery). Calls that only read, and cancels, are retried with exponential backoff
on network errors (timeouts, 5xx, 429: CCXT's `NetworkError`); an order is never resent
here: the router decides that after looking it up. CCXT's own rate limiter is always on.
Error texts are scrubbed of signatures and keys before anyone logs or stores them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt

from tradestore.db.errors import ValidationError
from tradestore.identity import redact

T = TypeVar("T")

NetworkError = ccxt.NetworkError
AuthenticationError = ccxt.AuthenticationError
ExchangeError = ccxt.ExchangeError
OrderNotFound = ccxt.OrderNotFound

_SIGNED = re.compile(r"(?i)\b(signature|sign|apikey|api_key|access_key|x-mbx-apikey)=([^&\s\"']+)")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")


def scrub(text: object, *secrets: str) -> str:
    """An error text safe to log or store: query signatures, bearer tokens (JWT-signed
    exchanges) and the given and registered secrets removed."""
    out = _SIGNED.sub(lambda m: f"{m.group(1)}={redact.REDACTED}", str(text))
    out = _BEARER.sub(lambda m: f"{m.group(1)} {redact.REDACTED}", out)
    for secret in secrets:
        if secret:
            out = out.replace(secret, redact.REDACTED)
    return redact.redact(out)[:1000]


@dataclass(frozen=True)
class Profile:
    """How tradestore drives one CCXT exchange class."""

    ccxt_id: str
    # CCXT's options['fetchMarkets'] types, when the class loads more than we trade.
    market_types: tuple[str, ...] | None = None
    # How to find an order by client order id: 'binance' (origClientOrderId),
    # 'bithumb' (clientOrderId), 'upbit' (identifier) or 'scan' (open + closed orders).
    lookup: str = "scan"


PROFILES: dict[str, Profile] = {
    "binance": Profile("binance", ("spot",), "binance"),
    "binanceusdm": Profile("binanceusdm", ("linear",), "binance"),
    "bithumb": Profile("bithumb", None, "bithumb"),
    "upbit": Profile("upbit", None, "upbit"),
}


def profile_for(exchange_code: str) -> Profile:
    """The profile of an exchange code (market.exchanges.code): a named one, or any other
    exchange CCXT supports, driven through the unified API only."""
    code = exchange_code.strip().lower()
    if code in PROFILES:
        return PROFILES[code]
    if code in ccxt.exchanges:
        return Profile(code)
    raise ValidationError("exchange", "must be an exchange CCXT supports", exchange_code)


def point_at(exchange: ccxt.Exchange, base_url: str) -> None:
    """Send every REST API of the exchange to base_url, keeping each API's path (a
    loopback fake exchange in tests, or a local proxy)."""
    base = base_url.rstrip("/")
    api = exchange.urls["api"]
    if isinstance(api, str):
        exchange.urls["api"] = base + urlsplit(api).path
        return
    for key, value in list(api.items()):
        if isinstance(value, str):
            api[key] = base + urlsplit(value).path


def point_ws_at(exchange: Any, ws_base_url: str) -> None:
    """Send every websocket endpoint of a ccxt.pro exchange (urls['api']['ws'], nested
    ones included) to ws_base_url, keeping each endpoint's path."""
    base = ws_base_url.rstrip("/")

    def rewrite(urls: dict[str, Any]) -> None:
        for key, value in list(urls.items()):
            if isinstance(value, str):
                urls[key] = base + urlsplit(value).path
            elif isinstance(value, dict):
                rewrite(value)

    ws = exchange.urls.get("api", {}).get("ws")
    if isinstance(ws, str):
        exchange.urls["api"]["ws"] = base + urlsplit(ws).path
    elif isinstance(ws, dict):
        rewrite(ws)


def stream_class(profile: Profile) -> Any | None:
    """The ccxt.pro (websocket) class of an exchange, or None when CCXT has none."""
    import ccxt.pro

    return getattr(ccxt.pro, profile.ccxt_id, None)


def build_exchange(
    profile: Profile,
    api_key: str,
    api_secret: str,
    *,
    sandbox: bool,
    base_url: str | None = None,
    timeout_ms: int = 10_000,
    stream: bool = False,
    ws_url: str | None = None,
) -> Any:
    """A CCXT exchange with credentials, rate limiting on, in sandbox mode (the exchange's
    testnet) when asked; sandbox on an exchange without one is refused. With `stream`, the
    ccxt.pro (asyncio, websocket) class instead, its websockets sent to `ws_url` if given."""
    cls = stream_class(profile) if stream else getattr(ccxt, profile.ccxt_id)
    if cls is None:
        raise ValidationError("exchange", "CCXT has no websocket class for it", profile.ccxt_id)
    exchange = cls(
        {
            "apiKey": api_key,
            "secret": api_secret,
            "enableRateLimit": True,
            "timeout": timeout_ms,
        }
    )
    if profile.market_types is not None:
        exchange.options["fetchMarkets"] = {"types": list(profile.market_types)}
    if sandbox:
        if not exchange.urls.get("test"):
            raise ValidationError(
                "trading_mode",
                "paper trading needs the exchange's testnet, and this exchange has none",
                profile.ccxt_id,
            )
        exchange.set_sandbox_mode(True)
    if base_url is not None:
        point_at(exchange, base_url)
    if ws_url is not None:
        point_ws_at(exchange, ws_url)
    return exchange


def to_decimal(value: Any) -> Decimal | None:
    """CCXT's numbers as exact Decimals: floats by their shortest repr ('0.1', not
    0.1000000000000000055...), strings and ints as written."""
    if value is None:
        return None
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


@dataclass
class Connector:
    """One account's exchange, with retries and scrubbed errors."""

    exchange: ccxt.Exchange
    profile: Profile
    retries: int = 3
    backoff_s: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    retry_delays: list[float] = field(default_factory=list)
    _markets_loaded: bool = False

    @property
    def id(self) -> str:
        return self.profile.ccxt_id

    def scrub(self, error: object) -> str:
        return scrub(error, self.exchange.apiKey or "", self.exchange.secret or "")

    def _retrying(self, call: Callable[[], T]) -> T:
        """call(), again after 0.5 s, 1 s, 2 s ... on network errors (not on others)."""
        for attempt in range(self.retries + 1):
            try:
                return call()
            except ccxt.NetworkError:
                if attempt == self.retries:
                    raise
                delay = self.backoff_s * 2**attempt
                self.retry_delays.append(delay)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def load_markets(self) -> dict[str, Any]:
        markets = self._retrying(self.exchange.load_markets)
        self._markets_loaded = True
        return markets

    def _ready(self) -> None:
        if not self._markets_loaded:
            self.load_markets()

    def create_order(
        self,
        symbol: str,
        side: str,
        order_type: str,
        amount: Decimal,
        price: Decimal | None,
        client_order_id: str,
    ) -> dict[str, Any]:
        """Send an order once (never retried here: a network error may hide an order the
        exchange did take; the router looks it up by client_order_id first)."""
        self._ready()
        return self.exchange.create_order(
            symbol,
            order_type.lower(),
            side.lower(),
            _plain(amount),
            None if price is None else _plain(price),
            {"clientOrderId": client_order_id},
        )

    def find_order(self, symbol: str, client_order_id: str) -> dict[str, Any] | None:
        """The exchange's order with this client order id, or None if it has none."""
        self._ready()
        ex = self.exchange
        try:
            if self.profile.lookup == "binance":
                return self._retrying(
                    lambda: ex.fetch_order(None, symbol, {"origClientOrderId": client_order_id})
                )
            if self.profile.lookup == "bithumb":
                return self._retrying(
                    lambda: ex.fetch_order(None, symbol, {"clientOrderId": client_order_id})
                )
            if self.profile.lookup == "upbit":
                raw = self._retrying(lambda: ex.privateGetOrder({"identifier": client_order_id}))
                return ex.parse_order(raw, ex.market(symbol))
        except ccxt.OrderNotFound:
            return None
        fetches = [ex.fetch_open_orders]
        if ex.has.get("fetchClosedOrders"):
            fetches.append(ex.fetch_closed_orders)
        for fetch in fetches:
            for order in self._retrying(lambda f=fetch: f(symbol)):
                if order.get("clientOrderId") == client_order_id:
                    return order
        return None

    def cancel_order(self, exchange_order_id: str, symbol: str) -> dict[str, Any]:
        self._ready()
        return self._retrying(lambda: self.exchange.cancel_order(exchange_order_id, symbol))

    def fetch_order(self, exchange_order_id: str, symbol: str) -> dict[str, Any]:
        """The exchange's order by its id (with its trades where the exchange lists them)."""
        self._ready()
        return self._retrying(lambda: self.exchange.fetch_order(exchange_order_id, symbol))

    def fetch_my_trades(
        self, symbol: str, since_ms: int | None, limit: int = 500
    ) -> list[dict[str, Any]]:
        self._ready()
        return self._retrying(lambda: self.exchange.fetch_my_trades(symbol, since_ms, limit))

    def fetch_open_orders(self, symbol: str) -> list[dict[str, Any]]:
        self._ready()
        return self._retrying(lambda: self.exchange.fetch_open_orders(symbol))

    def fetch_balance(self) -> dict[str, Any]:
        self._ready()
        return self._retrying(self.exchange.fetch_balance)
