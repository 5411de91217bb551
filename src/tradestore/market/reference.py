"""Reference data: exchanges, instruments (the global source of truth, seed 004's stocks
included), listings with their trading rules, and the import of CCXT market dicts.

CCXT describes a market's precision in one of three modes (`exchange.precisionMode`):

- TICK_SIZE (4): precision.price / precision.amount are the increments (0.01, 0.00001).
- DECIMAL_PLACES (2): they are counts of decimals (2 -> 0.01; -1 -> 10).
- SIGNIFICANT_DIGITS (3): they are counts of significant digits, so the price increment
  grows with the price (5 digits: 0.0001 below 10, 0.001 from 10, ...). tradestore keeps
  that as `price_bands`, one band per power of ten. A quantity step has no band form, so
  an amount precision in significant digits needs `amount_precision_mode` (CCXT's own
  exchanges in that mode, such as Bitfinex, give amounts in decimal places).

limits.amount -> min_qty / max_qty, limits.price -> min_price / max_price, limits.cost ->
min_notional / max_notional, contractSize -> contract_size. Rule changes keep their
history with effective times (market.set_trading_rules), so an order is always judged by
the rules in force when it was placed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import psycopg
from psycopg.types.json import Jsonb

from tradestore.db.errors import NotFound, ValidationError
from tradestore.db.query import dicts, scalar, translated

DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4
PRECISION_MODES = {
    "decimal_places": DECIMAL_PLACES,
    "significant_digits": SIGNIFICANT_DIGITS,
    "tick_size": TICK_SIZE,
}

# Powers of ten covered by significant-digit price bands: 1e-12 up to 1e12.
_BAND_EXPONENTS = range(-12, 13)

_ASSET_CLASS_OF_TYPE = {
    "spot": "CRYPTO",
    "margin": "CRYPTO",
    "swap": "PERPETUAL",
    "future": "FUTURE",
}


@dataclass(frozen=True)
class Listing:
    id: int
    exchange_id: int
    exchange_code: str
    instrument_id: int
    symbol: str
    exchange_symbol: str
    asset_class: str
    base_currency: str | None
    quote_currency: str | None
    status: str
    trading_rules: dict[str, Any]


@dataclass
class MarketImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _decimal(field_name: str, value: Any) -> Decimal | None:
    """Exact decimal of a CCXT number. A float from an in-process CCXT object is read by
    its shortest repr (1e-05 -> 0.00001), which is the decimal CCXT meant."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValidationError(field_name, "must be a number", value)
    try:
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(field_name, "must be a number", value) from None


def _plain(value: Decimal) -> str:
    """A decimal as plain text without exponent or trailing zeros (1E-8 -> 0.00000001)."""
    text = format(value.normalize(), "f")
    return text


def _step(field_name: str, value: Any, mode: int) -> Decimal | None:
    number = _decimal(field_name, value)
    if number is None:
        return None
    if mode == TICK_SIZE:
        if number <= 0 or not number.is_finite():
            raise ValidationError(field_name, "a tick size must be > 0", value)
        return number
    if mode == DECIMAL_PLACES:
        if number != number.to_integral_value():
            raise ValidationError(field_name, "decimal places must be a whole number", value)
        return Decimal(1).scaleb(-int(number))
    raise ValidationError(field_name, f"unknown precision mode {mode}", value)


def significant_digit_bands(digits: int) -> tuple[Decimal, list[dict[str, str]]]:
    """Price bands for `digits` significant digits: from 10^k the tick is 10^(k-digits+1).
    Returns the tick below the lowest band and the bands."""
    if digits < 1:
        raise ValidationError("precision.price", "significant digits must be >= 1", digits)
    bands = [
        {
            "min_price": _plain(Decimal(1).scaleb(k)),
            "tick_size": _plain(Decimal(1).scaleb(k - digits + 1)),
        }
        for k in _BAND_EXPONENTS
    ]
    return Decimal(1).scaleb(_BAND_EXPONENTS[0] - digits + 1), bands


def rules_from_ccxt_market(
    market: Mapping[str, Any],
    precision_mode: int = TICK_SIZE,
    *,
    amount_precision_mode: int | None = None,
) -> dict[str, Any]:
    """tradestore trading_rules from one CCXT market dict (see the module docstring)."""
    if precision_mode not in (DECIMAL_PLACES, SIGNIFICANT_DIGITS, TICK_SIZE):
        raise ValidationError(
            "precisionMode",
            "must be DECIMAL_PLACES (2), SIGNIFICANT_DIGITS (3) or TICK_SIZE (4)",
            precision_mode,
        )
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    rules: dict[str, Any] = {}

    price_precision = precision.get("price")
    if price_precision is not None:
        if precision_mode == SIGNIFICANT_DIGITS:
            digits = _decimal("precision.price", price_precision)
            assert digits is not None
            if digits != digits.to_integral_value():
                raise ValidationError(
                    "precision.price", "significant digits must be a whole number", price_precision
                )
            tick, bands = significant_digit_bands(int(digits))
            rules["tick_size"] = _plain(tick)
            rules["price_bands"] = bands
        else:
            tick = _step("precision.price", price_precision, precision_mode)
            rules["tick_size"] = _plain(cast(Decimal, tick))

    amount_precision = precision.get("amount")
    if amount_precision is not None:
        mode = amount_precision_mode or precision_mode
        if mode == SIGNIFICANT_DIGITS:
            raise ValidationError(
                "precision.amount",
                "significant-digit amount precision has no step size; pass amount_precision_mode",
                amount_precision,
            )
        rules["step_size"] = _plain(
            cast(Decimal, _step("precision.amount", amount_precision, mode))
        )

    for rule, (group, bound) in {
        "min_qty": ("amount", "min"),
        "max_qty": ("amount", "max"),
        "min_price": ("price", "min"),
        "max_price": ("price", "max"),
        "min_notional": ("cost", "min"),
        "max_notional": ("cost", "max"),
    }.items():
        value = _decimal(f"limits.{group}.{bound}", (limits.get(group) or {}).get(bound))
        if value is not None:
            if value < 0 or not value.is_finite():
                raise ValidationError(
                    f"limits.{group}.{bound}", "must be a finite number >= 0", value
                )
            # CCXT writes 0 for "no maximum" on some exchanges.
            if bound == "max" and value == 0:
                continue
            rules[rule] = _plain(value)

    if market.get("contract"):
        size = _decimal("contractSize", market.get("contractSize"))
        if size is not None:
            rules["contract_size"] = _plain(size)
    return rules


# ------------------------------------------------------------------ exchanges, instruments
def upsert_exchange(
    conn: psycopg.Connection[Any],
    code: str,
    name: str | None = None,
    *,
    kind: str = "CRYPTO",
    country: str | None = None,
    timezone: str = "UTC",
) -> int:
    """Create the exchange (or update its name and kind); returns its id."""
    return cast(
        int,
        scalar(
            conn,
            """INSERT INTO market.exchanges (code, name, kind, country, timezone)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
               country = coalesce(EXCLUDED.country, market.exchanges.country)
           RETURNING id""",
            (code.lower(), name or code, kind, country, timezone),
        ),
    )


def upsert_instrument(
    conn: psycopg.Connection[Any],
    symbol: str,
    name: str | None = None,
    *,
    asset_class: str = "CRYPTO",
    base_currency: str | None = None,
    quote_currency: str | None = None,
    market_type: str | None = None,
    sector: str | None = None,
    industry: str | None = None,
    market_cap: int | Decimal | None = None,
    listing_date: dt.date | None = None,
) -> int:
    """Create or update an instrument by its global symbol (a ticker for equities)."""
    return cast(
        int,
        scalar(
            conn,
            """INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency,
                                           market_type, sector, industry, market_cap, listing_date)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (symbol) DO UPDATE SET
               name = EXCLUDED.name, asset_class = EXCLUDED.asset_class,
               base_currency = coalesce(EXCLUDED.base_currency, market.instruments.base_currency),
               quote_currency = coalesce(EXCLUDED.quote_currency, market.instruments.quote_currency),
               market_type = coalesce(EXCLUDED.market_type, market.instruments.market_type),
               sector = coalesce(EXCLUDED.sector, market.instruments.sector),
               industry = coalesce(EXCLUDED.industry, market.instruments.industry),
               market_cap = coalesce(EXCLUDED.market_cap, market.instruments.market_cap),
               listing_date = coalesce(EXCLUDED.listing_date, market.instruments.listing_date)
           RETURNING id""",
            (
                symbol,
                name or symbol,
                asset_class,
                _ccy(base_currency),
                _ccy(quote_currency),
                market_type,
                sector,
                industry,
                market_cap,
                listing_date,
            ),
        ),
    )


def _ccy(value: str | None) -> str | None:
    return value.upper() if value else None


def upsert_listing(
    conn: psycopg.Connection[Any],
    exchange_id: int,
    instrument_id: int,
    exchange_symbol: str,
    trading_rules: Mapping[str, Any] | None = None,
    *,
    status: str = "TRADING",
    effective_from: dt.datetime | None = None,
    source: str = "manual",
) -> tuple[int, str]:
    """Create a listing, or update its status and rules (a rule change starts a new
    version from effective_from, default now). Returns (id, 'created'|'updated'|'unchanged')."""
    rules = dict(trading_rules or {})
    with translated():
        row = conn.execute(
            "SELECT id, status, trading_rules FROM market.exchange_instruments "
            "WHERE exchange_id = %s AND exchange_symbol = %s",
            (exchange_id, exchange_symbol),
        ).fetchone()
        if row is None:
            listing_id = conn.execute(
                """INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol,
                                                            trading_rules, status)
                   VALUES (%s, %s, %s, %s, %s) RETURNING id""",
                (exchange_id, instrument_id, exchange_symbol, Jsonb(rules), status),
            ).fetchone()[0]  # type: ignore[index]
            return int(listing_id), "created"
        listing_id, old_status, old_rules = row
        changed = False
        if old_status != status:
            conn.execute(
                "UPDATE market.exchange_instruments SET status = %s WHERE id = %s",
                (status, listing_id),
            )
            changed = True
        if _canonical(old_rules) != _canonical(rules):
            set_trading_rules(conn, listing_id, rules, effective_from=effective_from, source=source)
            changed = True
        return int(listing_id), "updated" if changed else "unchanged"


def _canonical(rules: Mapping[str, Any]) -> dict[str, Any]:
    """Rules compared by value: "0.010" and 0.01 are the same tick."""
    out: dict[str, Any] = {}
    for key, value in rules.items():
        if isinstance(value, list):
            out[key] = [_canonical(v) for v in value]
        elif value is None:
            out[key] = None
        else:
            out[key] = Decimal(str(value)).normalize()
    return out


def set_trading_rules(
    conn: psycopg.Connection[Any],
    listing_id: int,
    rules: Mapping[str, Any],
    *,
    effective_from: dt.datetime | None = None,
    source: str = "manual",
) -> int:
    """Record new rules for a listing from effective_from on (default now); returns the
    rule version id. Orders placed before keep being judged by the rules of their time."""
    return cast(
        int,
        scalar(
            conn,
            "SELECT market.set_trading_rules(%s, %s, %s, %s)",
            (listing_id, Jsonb(dict(rules)), effective_from, source),
        ),
    )


def trading_rules_at(
    conn: psycopg.Connection[Any], listing_id: int, at: dt.datetime | None = None
) -> dict[str, Any]:
    rules = scalar(
        conn, "SELECT market.trading_rules_at(%s, coalesce(%s, now()))", (listing_id, at)
    )
    if rules is None:
        raise NotFound("listing", listing_id)
    return cast(dict[str, Any], rules)


_LISTING_QUERY = """
SELECT ei.id, ei.exchange_id, x.code AS exchange_code, ei.instrument_id, i.symbol, ei.exchange_symbol,
       i.asset_class, i.base_currency, i.quote_currency, ei.status, ei.trading_rules
  FROM market.exchange_instruments ei
  JOIN market.exchanges x ON x.id = ei.exchange_id
  JOIN market.instruments i ON i.id = ei.instrument_id
"""


def list_listings(conn: psycopg.Connection[Any], exchange_code: str | None = None) -> list[Listing]:
    found = dicts(
        conn,
        _LISTING_QUERY
        + " WHERE %(x)s::text IS NULL OR x.code = lower(%(x)s) ORDER BY x.code, i.symbol",
        {"x": exchange_code},
    )
    return [Listing(**r) for r in found]


def find_listing(conn: psycopg.Connection[Any], exchange_code: str, symbol: str) -> Listing:
    """A listing by exchange code and symbol (market.resolve_listing: the global symbol
    or the exchange's own, with or without '/', any case, an EXCHANGE: prefix allowed)."""
    listing_id = scalar(
        conn, "SELECT market.resolve_listing(%s, %s)", (exchange_code.lower(), symbol)
    )
    found = (
        []
        if listing_id is None
        else dicts(conn, _LISTING_QUERY + " WHERE ei.id = %(id)s", {"id": listing_id})
    )
    if not found:
        raise NotFound("listing", f"{exchange_code}:{symbol}")
    return Listing(**found[0])


# ------------------------------------------------------------------ CCXT import
def _markets(markets: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(markets, Mapping):
        values = list(markets.values())
        return [m for m in values if isinstance(m, Mapping)]
    return list(markets)


def import_ccxt_markets(
    conn: psycopg.Connection[Any],
    exchange_code: str,
    markets: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    precision_mode: int = TICK_SIZE,
    amount_precision_mode: int | None = None,
    exchange_name: str | None = None,
    effective_from: dt.datetime | None = None,
) -> MarketImportReport:
    """Import CCXT markets (`exchange.load_markets()`, or its JSON) into exchanges,
    instruments and listings, in one transaction. Spot and margin markets become CRYPTO
    instruments, swaps PERPETUAL, futures FUTURE; options and inverse contracts are skipped
    (listed in the report with the reason). Changed rules start a new rule version."""
    report = MarketImportReport()
    with translated(), conn.transaction():
        exchange_id = upsert_exchange(conn, exchange_code, exchange_name)
        for market in _markets(markets):
            symbol = str(market.get("symbol") or market.get("id"))
            kind = market.get("type") or ("spot" if market.get("spot", True) else None)
            asset_class = _ASSET_CLASS_OF_TYPE.get(str(kind))
            if asset_class is None:
                report.skipped.append((symbol, f"market type {kind!r} is not supported"))
                continue
            if market.get("inverse"):
                report.skipped.append(
                    (symbol, "inverse contracts (PnL in the base currency) are not supported")
                )
                continue
            if len(symbol) > 40 or len(str(market.get("id", symbol))) > 40:
                report.skipped.append((symbol, "symbol longer than 40 characters"))
                continue
            rules = rules_from_ccxt_market(
                market, precision_mode, amount_precision_mode=amount_precision_mode
            )
            settle = market.get("settle") if asset_class in ("PERPETUAL", "FUTURE") else None
            instrument_id = upsert_instrument(
                conn,
                symbol,
                symbol,
                asset_class=asset_class,
                base_currency=market.get("base"),
                quote_currency=settle or market.get("quote"),
            )
            status = "HALTED" if market.get("active") is False else "TRADING"
            _, outcome = upsert_listing(
                conn,
                exchange_id,
                instrument_id,
                str(market.get("id") or symbol),
                rules,
                status=status,
                effective_from=effective_from,
                source="ccxt",
            )
            getattr(report, outcome).append(symbol)
    return report
