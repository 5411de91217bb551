"""Find a listing (exchange + symbol) for market-data commands, creating the exchange,
the instrument and the listing when asked and missing.

Finding is one SQL function, market.resolve_listing(exchange, symbol), which the REST
API, the CLI and the TradingView webhook share: `BTC/USDT`, `BTCUSDT`, `btcusdt`,
`BINANCE:BTCUSDT` and the exchange's own id all name the same listing.

Deliberately small: the full reference-data API (trading rules, CCXT import) lives in
tradestore.market.reference; ingest only needs a listing id to hang bars on.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tradestore.db.errors import NotFound, ValidationError

__all__ = [
    "KINDS",
    "ListingResolution",
    "close_matches",
    "ensure_listing",
    "find_listing_id",
    "listing_label",
    "resolve_listing",
]

_SPLIT = re.compile(r"^([A-Za-z0-9.]+)[/\-_:]([A-Za-z0-9.]+)$")
_PREFIX = re.compile(r"^([A-Za-z0-9_]+):(.+)$")

# --kind (or --calendar) -> (exchange kind, instrument asset class). The exchange's kind
# picks a backtest's calendar: EQUITY 252 sessions a year, FX 260 days, CRYPTO 365.
KINDS: dict[str, tuple[str, str]] = {
    "crypto": ("CRYPTO", "CRYPTO"),
    "equity": ("EQUITY", "EQUITY"),
    "etf": ("EQUITY", "ETF"),
    "index": ("EQUITY", "INDEX"),
    "fx": ("FX", "FX"),
    "future": ("FUTURES", "FUTURE"),
    "perpetual": ("CRYPTO", "PERPETUAL"),
}
# An existing exchange's kind -> the asset class of instruments created on it.
_ASSET_CLASS_OF_EXCHANGE = {
    "CRYPTO": "CRYPTO",
    "EQUITY": "EQUITY",
    "FUTURES": "FUTURE",
    "FX": "FX",
    "OTHER": "OTHER",
}


@dataclass
class ListingResolution:
    """A listing id and what was created to get it (empty when it existed)."""

    id: int
    created: list[str] = field(default_factory=list)


def _exchange_code(exchange: str) -> str:
    code = (exchange or "").strip().lower()
    if not re.fullmatch(r"[a-z0-9_]+", code):
        raise ValidationError(
            "exchange", "must be letters, digits or _ (an exchange code)", exchange
        )
    return code


def find_listing_id(conn: psycopg.Connection[Any], exchange: str | None, symbol: str) -> int | None:
    """The listing `symbol` names on `exchange` (market.resolve_listing: the exchange's
    symbol or the global one, with or without '/', any case, EXCHANGE: prefix allowed;
    `exchange` may be None when the symbol carries the prefix)."""
    code = None if exchange is None else _exchange_code(exchange)
    row = conn.execute("SELECT market.resolve_listing(%s, %s)", (code, symbol)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def close_matches(
    conn: psycopg.Connection[Any], exchange: str | None, symbol: str, n: int = 5
) -> list[str]:
    """Listings (exchange:SYMBOL) whose names look like `exchange`:`symbol`, best first."""
    rows = conn.execute(
        """SELECT x.code, ei.exchange_symbol, i.symbol FROM market.exchange_instruments ei
             JOIN market.exchanges x ON x.id = ei.exchange_id
             JOIN market.instruments i ON i.id = ei.instrument_id"""
    ).fetchall()
    prefix = _PREFIX.match(symbol.strip())
    if prefix and "/" not in prefix.group(1):
        exchange, symbol = exchange or prefix.group(1), prefix.group(2)
    key = symbol.replace("/", "").upper()
    code = (exchange or "").strip().lower()
    labels: dict[str, str] = {}
    for x, own, global_symbol in rows:
        label = f"{x}:{own}"
        for name in (own, global_symbol):
            labels.setdefault(f"{x}:{name.replace('/', '').upper()}", label)
    wanted = f"{code}:{key}"
    found = difflib.get_close_matches(wanted, list(labels), n=n * 2, cutoff=0.6)
    return list(dict.fromkeys(labels[f] for f in found))[:n]


def _not_found(conn: psycopg.Connection[Any], code: str, symbol: str) -> ValidationError:
    known = conn.execute("SELECT 1 FROM market.exchanges WHERE code = %s", (code,)).fetchone()
    matches = close_matches(conn, code, symbol)
    hint = f"; close matches: {', '.join(matches)}" if matches else ""
    if known is None:
        codes = [
            r[0] for r in conn.execute("SELECT code FROM market.exchanges ORDER BY code").fetchall()
        ]
        near = difflib.get_close_matches(code, codes, n=3, cutoff=0.6)
        hint = f"; close matches: {', '.join(near)}" if near else hint
        return ValidationError(
            "exchange", f"does not exist (pass --create to create it){hint}", code
        )
    return ValidationError(
        "symbol", f"is not listed on {code} (pass --create to create it){hint}", symbol
    )


def ensure_listing(
    conn: psycopg.Connection[Any],
    exchange: str,
    symbol: str,
    *,
    create: bool = True,
    kind: str | None = None,
) -> ListingResolution:
    """The listing of `symbol` on `exchange`; when missing and `create`, made with its
    exchange and instrument, and `created` says what was made. Without `create` a
    missing exchange or listing is a ValidationError listing close matches.

    `kind` (crypto, equity, etf, index, fx, future, perpetual) sets the kind of a new
    exchange and the asset class of a new instrument; without it a new instrument takes
    the class of its existing exchange, and a new exchange is crypto. A symbol like
    BTC/USDT, BTC-USDT or BTC_USDT gives the instrument its base and quote currencies;
    the global symbol is BASE/QUOTE then."""
    if not symbol or not symbol.strip():
        raise ValidationError("symbol", "is required", symbol)
    if kind is not None and kind.lower() not in KINDS:
        raise ValidationError("kind", f"must be one of {', '.join(KINDS)}", kind)
    code = _exchange_code(exchange)
    symbol = symbol.strip()
    found = find_listing_id(conn, code, symbol)
    if found is not None:
        return ListingResolution(found)
    prefix = _PREFIX.match(symbol)
    if prefix and prefix.group(1).lower() == code:
        symbol = prefix.group(2)
    if len(symbol) > 40:
        raise ValidationError("symbol", "must be at most 40 characters", symbol)
    if not create:
        raise _not_found(conn, code, symbol)
    created: list[str] = []
    row = conn.execute("SELECT kind FROM market.exchanges WHERE code = %s", (code,)).fetchone()
    if row is None:
        exchange_kind = KINDS[(kind or "crypto").lower()][0]
        conn.execute(
            "INSERT INTO market.exchanges (code, name, kind) VALUES (%s, %s, %s)",
            (code, code, exchange_kind),
        )
        created.append(f"exchange {code} ({exchange_kind})")
    else:
        exchange_kind = row[0]
    asset_class = (
        KINDS[kind.lower()][1] if kind else _ASSET_CLASS_OF_EXCHANGE.get(exchange_kind, "OTHER")
    )
    split = _SPLIT.match(symbol)
    if split and max(len(split.group(1)), len(split.group(2))) > 20:
        split = None  # not a currency pair
    base, quote = (split.group(1).upper(), split.group(2).upper()) if split else (None, None)
    global_symbol = f"{base}/{quote}" if split else symbol
    made = conn.execute(
        """INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (symbol) DO NOTHING RETURNING asset_class""",
        (global_symbol, global_symbol, asset_class, base, quote),
    ).fetchone()
    if made is not None:
        created.append(f"instrument {global_symbol} ({asset_class})")
    conn.execute(
        """INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol)
           SELECT x.id, i.id, %s FROM market.exchanges x, market.instruments i
            WHERE x.code = %s AND i.symbol = %s
           ON CONFLICT DO NOTHING""",
        (symbol, code, global_symbol),
    )
    found = find_listing_id(conn, code, symbol)
    if found is None:  # the instrument is listed on this exchange under another symbol
        raise ValidationError(
            "symbol",
            "the instrument is already listed on this exchange under another symbol",
            symbol,
        )
    created.append(f"listing {code}:{symbol}")
    return ListingResolution(found, created)


def resolve_listing(
    conn: psycopg.Connection[Any],
    exchange: str,
    symbol: str,
    *,
    create: bool = True,
    kind: str | None = None,
) -> int:
    """ensure_listing's id (kept for callers that only need the id)."""
    return ensure_listing(conn, exchange, symbol, create=create, kind=kind).id


def listing_label(conn: psycopg.Connection[Any], listing_id: int) -> str:
    """'exchange:SYMBOL' for messages."""
    row = conn.execute(
        """SELECT x.code || ':' || ei.exchange_symbol FROM market.exchange_instruments ei
             JOIN market.exchanges x ON x.id = ei.exchange_id WHERE ei.id = %s""",
        (listing_id,),
    ).fetchone()
    if row is None:
        raise NotFound("listing", listing_id)
    return str(row[0])
