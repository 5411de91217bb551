"""Find a listing (exchange + symbol) for market-data commands, creating the exchange,
the instrument and the listing when asked and missing.

Deliberately small: the full reference-data API (trading rules, CCXT import) lives in
tradestore.market.reference; ingest only needs a listing id to hang bars on.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from tradestore.db.errors import NotFound, ValidationError

__all__ = ["find_listing_id", "listing_label", "resolve_listing"]

_SPLIT = re.compile(r"^([A-Za-z0-9.]+)[/\-_:]([A-Za-z0-9.]+)$")


def _exchange_code(exchange: str) -> str:
    code = (exchange or "").strip().lower()
    if not re.fullmatch(r"[a-z0-9_]+", code):
        raise ValidationError(
            "exchange", "must be letters, digits or _ (an exchange code)", exchange
        )
    return code


def find_listing_id(conn: psycopg.Connection[Any], exchange: str, symbol: str) -> int | None:
    """The listing of `symbol` (the global symbol or the exchange's own) on `exchange`."""
    row = conn.execute(
        """SELECT ei.id FROM market.exchange_instruments ei
             JOIN market.exchanges x ON x.id = ei.exchange_id
             JOIN market.instruments i ON i.id = ei.instrument_id
            WHERE x.code = %s AND (ei.exchange_symbol = %s OR i.symbol = %s)
            ORDER BY (ei.exchange_symbol = %s) DESC, ei.id LIMIT 1""",
        (_exchange_code(exchange), symbol, symbol, symbol),
    ).fetchone()
    return None if row is None else int(row[0])


def resolve_listing(
    conn: psycopg.Connection[Any],
    exchange: str,
    symbol: str,
    *,
    create: bool = True,
    asset_class: str = "CRYPTO",
) -> int:
    """The listing id of `symbol` on `exchange`, created (with its exchange and instrument)
    when missing and `create`. A symbol like BTC/USDT, BTC-USDT or BTC_USDT gives the
    instrument its base and quote currencies; the global symbol is BASE/QUOTE then."""
    if not symbol or not symbol.strip():
        raise ValidationError("symbol", "is required", symbol)
    symbol = symbol.strip()
    if len(symbol) > 40:
        raise ValidationError("symbol", "must be at most 40 characters", symbol)
    found = find_listing_id(conn, exchange, symbol)
    if found is not None:
        return found
    if not create:
        raise NotFound("listing", f"{exchange}:{symbol}")
    code = _exchange_code(exchange)
    split = _SPLIT.match(symbol)
    if split and max(len(split.group(1)), len(split.group(2))) > 20:
        split = None  # not a currency pair
    base, quote = (split.group(1).upper(), split.group(2).upper()) if split else (None, None)
    global_symbol = f"{base}/{quote}" if split else symbol
    conn.execute(
        "INSERT INTO market.exchanges (code, name) VALUES (%s, %s) ON CONFLICT (code) DO NOTHING",
        (code, code),
    )
    conn.execute(
        """INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency)
           VALUES (%s, %s, %s, %s, %s) ON CONFLICT (symbol) DO NOTHING""",
        (global_symbol, global_symbol, asset_class, base, quote),
    )
    conn.execute(
        """INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol)
           SELECT x.id, i.id, %s FROM market.exchanges x, market.instruments i
            WHERE x.code = %s AND i.symbol = %s
           ON CONFLICT DO NOTHING""",
        (symbol, code, global_symbol),
    )
    found = find_listing_id(conn, exchange, symbol)
    if found is None:  # the instrument is listed on this exchange under another symbol
        raise ValidationError(
            "symbol",
            "the instrument is already listed on this exchange under another symbol",
            symbol,
        )
    return found


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
