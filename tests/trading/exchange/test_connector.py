"""Connector set-up for the named exchanges (no network: nothing is called)."""

from __future__ import annotations

import pytest

from tradestore.db.errors import ValidationError
from tradestore.trading.exchange.connector import build_exchange, point_at, profile_for, scrub

NAMED = {"binance": "spot", "binanceusdm": "swap", "bithumb": "spot", "upbit": "spot"}


@pytest.mark.parametrize("code", sorted(NAMED))
def test_named_exchanges_build_with_rate_limit_on(code: str) -> None:
    profile = profile_for(code)
    exchange = build_exchange(profile, "k" * 16, "s" * 16, sandbox=False)
    assert exchange.id == code
    assert exchange.enableRateLimit
    for method in ("createOrder", "cancelOrder", "fetchOrder", "fetchBalance"):
        assert exchange.has.get(method), (code, method)
    # Fill sync polls trades where CCXT can (Binance); Bithumb and Upbit cannot.
    assert bool(exchange.has.get("fetchMyTrades")) == code.startswith("binance")


@pytest.mark.parametrize("code", ["binance", "binanceusdm"])
def test_paper_uses_the_testnet(code: str) -> None:
    exchange = build_exchange(profile_for(code), "k" * 16, "s" * 16, sandbox=True)
    urls = [v for v in exchange.urls["api"].values() if isinstance(v, str)]
    assert urls and all("testnet" in u or "demo" in u for u in urls), urls


@pytest.mark.parametrize("code", ["bithumb", "upbit"])
def test_paper_on_an_exchange_without_testnet_is_refused(code: str) -> None:
    with pytest.raises(ValidationError) as err:
        build_exchange(profile_for(code), "k" * 16, "s" * 16, sandbox=True)
    assert err.value.field == "trading_mode"


def test_unknown_exchange_is_refused() -> None:
    with pytest.raises(ValidationError):
        profile_for("no-such-exchange")
    assert profile_for("kraken").lookup == "scan"  # any CCXT exchange, unified API only


def test_point_at_keeps_each_apis_path() -> None:
    exchange = build_exchange(profile_for("binance"), "k" * 16, "s" * 16, sandbox=False)
    point_at(exchange, "http://127.0.0.1:9/")
    assert exchange.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"
    assert exchange.urls["api"]["sapi"] == "http://127.0.0.1:9/sapi/v1"


def test_scrub_removes_signatures_and_secrets() -> None:
    text = (
        "binance GET http://x/api/v3/order?timestamp=1&signature=abcdef0123 "
        "Authorization: Bearer eyJhbGciOi.payload.sig my-secret-value-123"
    )
    out = scrub(text, "my-secret-value-123")
    assert "abcdef0123" not in out and "eyJhbGciOi" not in out
    assert "my-secret-value-123" not in out
