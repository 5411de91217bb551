"""Reference data and the import of CCXT market dicts (all three precision modes)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tradestore.db.errors import ValidationError
from tradestore.market import reference
from tradestore.market.reference import DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE


def market(**overrides: Any) -> dict[str, Any]:
    """A CCXT market as binance's load_markets() returns it (TICK_SIZE mode)."""
    base = {
        "id": "BTCUSDT",
        "symbol": "BTC/USDT",
        "base": "BTC",
        "quote": "USDT",
        "settle": None,
        "type": "spot",
        "spot": True,
        "swap": False,
        "future": False,
        "option": False,
        "contract": False,
        "linear": None,
        "inverse": None,
        "contractSize": None,
        "active": True,
        "precision": {"amount": 1e-05, "price": 0.01},
        "limits": {
            "amount": {"min": 1e-05, "max": 9000.0},
            "price": {"min": 0.01, "max": 1000000.0},
            "cost": {"min": 5.0, "max": 9000000.0},
            "leverage": {"min": None, "max": None},
        },
        "info": {},
    }
    base.update(overrides)
    return base


def test_tick_size_mode() -> None:
    rules = reference.rules_from_ccxt_market(market(), TICK_SIZE)
    assert rules == {
        "tick_size": "0.01",
        "step_size": "0.00001",
        "min_qty": "0.00001",
        "max_qty": "9000",
        "min_price": "0.01",
        "max_price": "1000000",
        "min_notional": "5",
        "max_notional": "9000000",
    }


def test_decimal_places_mode() -> None:
    rules = reference.rules_from_ccxt_market(
        market(precision={"amount": 8, "price": 2}, limits={"amount": {"min": 0.0001}}),
        DECIMAL_PLACES,
    )
    assert (rules["tick_size"], rules["step_size"], rules["min_qty"]) == (
        "0.01",
        "0.00000001",
        "0.0001",
    )
    # Negative decimal places: the price moves in tens.
    assert (
        reference.rules_from_ccxt_market(market(precision={"price": -1}), DECIMAL_PLACES)[
            "tick_size"
        ]
        == "10"
    )
    with pytest.raises(ValidationError) as caught:
        reference.rules_from_ccxt_market(market(precision={"price": 2.5}), DECIMAL_PLACES)
    assert caught.value.field == "precision.price"


def test_significant_digits_mode_becomes_price_bands(conn: psycopg.Connection[Any]) -> None:
    rules = reference.rules_from_ccxt_market(
        market(precision={"price": 5, "amount": 8}, limits={}),
        SIGNIFICANT_DIGITS,
        amount_precision_mode=DECIMAL_PLACES,
    )
    bands = {b["min_price"]: b["tick_size"] for b in rules["price_bands"]}
    assert bands["1"] == "0.0001" and bands["10000"] == "1" and bands["0.01"] == "0.000001"
    assert rules["step_size"] == "0.00000001"
    # The database rounds to 5 significant digits with these bands.
    for price, side, expected in (
        ("12345.67", "BUY", "12345"),
        ("1.234567", "SELL", "1.2346"),
        ("0.0123456", None, "0.012346"),
    ):
        got = conn.execute(
            "SELECT normalize_price(%s::jsonb, %s::numeric, %s)",
            (psycopg.types.json.Jsonb(rules), price, side),
        ).fetchone()[0]
        assert got == Decimal(expected)
    with pytest.raises(ValidationError) as caught:
        reference.rules_from_ccxt_market(
            market(precision={"price": 5, "amount": 8}), SIGNIFICANT_DIGITS
        )
    assert caught.value.field == "precision.amount"


def test_import_creates_updates_and_keeps_rule_history(conn: psycopg.Connection[Any]) -> None:
    swap = market(
        id="BTCUSDT_PERP",
        symbol="BTC/USDT:USDT",
        type="swap",
        spot=False,
        swap=True,
        contract=True,
        linear=True,
        inverse=False,
        settle="USDT",
        contractSize=0.001,
    )
    inverse = market(
        id="BTCUSD_PERP", symbol="BTC/USD:BTC", type="swap", contract=True, inverse=True
    )
    option = market(id="BTC-OPT", symbol="BTC/USD:BTC-240628-70000-C", type="option")
    markets = {
        m["symbol"]: m
        for m in (
            market(),
            swap,
            inverse,
            option,
            market(id="ETHUSDT", symbol="ETH/USDT", base="ETH", active=False),
        )
    }
    report = reference.import_ccxt_markets(conn, "binance", markets, precision_mode=TICK_SIZE)
    assert sorted(report.created) == ["BTC/USDT", "BTC/USDT:USDT", "ETH/USDT"]
    assert {s for s, _ in report.skipped} == {"BTC/USD:BTC", "BTC/USD:BTC-240628-70000-C"}

    perp = reference.find_listing(conn, "binance", "BTC/USDT:USDT")
    assert perp.asset_class == "PERPETUAL" and perp.trading_rules["contract_size"] == "0.001"
    assert reference.find_listing(conn, "binance", "ETHUSDT").status == "HALTED"

    again = reference.import_ccxt_markets(conn, "binance", markets, precision_mode=TICK_SIZE)
    assert not again.created and not again.updated and len(again.unchanged) == 3

    # A lot-size change from a given time on: earlier times keep the earlier rules.
    change_at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    changed = dict(markets)
    changed["BTC/USDT"] = market(precision={"amount": 0.001, "price": 0.01})
    report = reference.import_ccxt_markets(conn, "binance", changed, effective_from=change_at)
    assert report.updated == ["BTC/USDT"]
    btc = reference.find_listing(conn, "binance", "BTC/USDT")
    assert reference.trading_rules_at(conn, btc.id)["step_size"] == "0.00001"
    assert reference.trading_rules_at(conn, btc.id, change_at)["step_size"] == "0.001"


def test_rule_change_now_updates_listing_and_history(conn: psycopg.Connection[Any]) -> None:
    exchange = reference.upsert_exchange(conn, "upbit", "Upbit")
    instrument = reference.upsert_instrument(
        conn,
        "005930",
        "Samsung Electronics",
        asset_class="EQUITY",
        quote_currency="KRW",
        market_type="KOSPI",
        sector="Tech",
    )
    listing, outcome = reference.upsert_listing(
        conn, exchange, instrument, "005930", {"step_size": "1"}
    )
    assert outcome == "created"
    reference.set_trading_rules(conn, listing, {"step_size": "10"})
    assert reference.trading_rules_at(conn, listing)["step_size"] == "10"
    versions = conn.execute(
        "SELECT trading_rules ->> 'step_size', effective_to IS NULL FROM market.trading_rule_versions "
        "WHERE exchange_instrument_id = %s ORDER BY effective_from",
        (listing,),
    ).fetchall()
    assert versions == [("1", False), ("10", True)]
    # Seed 004's stocks view serves the equity.
    assert conn.execute("SELECT ticker, market_type FROM market.stocks").fetchall() == [
        ("005930", "KOSPI")
    ]
    with pytest.raises(ValidationError) as caught:
        reference.set_trading_rules(conn, listing, {"lot": "10"})
    assert caught.value.field == "trading_rules.lot"
