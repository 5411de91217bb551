"""Settlement (Plus module `settlement`, seed 001 §5.2): funding rates, mark prices and FX
snapshots from files, funding payments booked through market.settle_funding, fees from the
fee schedule. The rules are SQL functions in trading/sql/module_settlement.sql; this is the
typed layer over them, plus funding_amount, the exact mirror the backtest uses.

Files are CSV with a header line:
  funding rates  funding_time,funding_rate            (Binance/CCXT fetch_funding_rate_history)
  mark prices    time,open[,high,low,close[,volume]]   (mark-price candles; volume ignored)
  FX rates       ts,base_ccy,quote_ccy,rate            (time/base/quote accepted as names too)
Times are ISO-8601 with a zone (or epoch milliseconds); numbers are read as written.
Each file is ingested in one transaction: a bad line refuses the whole file, naming line,
field, rule and value. Rows already stored are kept (counted as duplicates); a funding rate
that differs from the stored one is refused.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

import psycopg

from tradestore.db.errors import ValidationError
from tradestore.db.query import dicts, scalar, translated

__all__ = [
    "FUNDING_SCALE",
    "IngestCount",
    "Settled",
    "funding_amount",
    "ingest_funding_rates",
    "ingest_fx_rates",
    "ingest_mark_prices",
    "schedule_fee",
    "settle_due_funding",
]

# Funding payments are booked to 8 decimals (what Binance reports), as market.funding_amount.
FUNDING_SCALE = 8


def funding_amount(
    quantity: Decimal,
    mark_price: Decimal,
    rate: Decimal,
    contract_size: Decimal = Decimal(1),
    scale: int = FUNDING_SCALE,
) -> Decimal:
    """market.funding_amount: -(quantity x mark x rate x contract size), rounded to `scale`
    decimals, halves away from zero. A long pays a positive rate; a short receives it."""
    with localcontext() as ctx:
        ctx.prec = 200
        exact = -(quantity * mark_price * rate * contract_size)
        rounded = exact.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    return rounded.normalize() if rounded else Decimal(0)


@dataclass(frozen=True)
class IngestCount:
    inserted: int
    duplicates: int


@dataclass(frozen=True)
class Settled:
    funding_rate_id: int
    exchange_instrument_id: int
    funding_time: dt.datetime
    status: str  # SETTLED | NO_MARK_PRICE
    payments: int


def _rows(path: Path, required: tuple[tuple[str, ...], ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, values in the order of `required`) per data line; each required
    column may go by any of its names."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        index = []
        for names in required:
            found = next((header.index(n) for n in names if n in header), None)
            if found is None:
                raise ValidationError(
                    "header", f"must have a column {' or '.join(names)}", ",".join(header)
                )
            index.append(found)
        for line, values in enumerate(reader, start=2):
            if not values or all(not v.strip() for v in values):
                continue
            try:
                yield line, [values[i].strip() for i in index]
            except IndexError:
                raise ValidationError(
                    f"line {line}", "has too few columns", ",".join(values)
                ) from None


def _time(text: str, line: int, field: str) -> dt.datetime:
    try:
        if text.isdigit():
            return dt.datetime.fromtimestamp(int(text) / 1000, dt.UTC)
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(
            f"line {line}: {field}", "must be an ISO-8601 time or epoch ms", text
        ) from None
    if value.tzinfo is None:
        raise ValidationError(f"line {line}: {field}", "must carry a time zone", text)
    return value.astimezone(dt.UTC)


def _number(text: str, line: int, field: str, *, positive: bool = False) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValidationError(f"line {line}: {field}", "must be a decimal number", text) from None
    if not value.is_finite() or (positive and value <= 0):
        rule = "must be a finite number > 0" if positive else "must be a finite number"
        raise ValidationError(f"line {line}: {field}", rule, text)
    return value


def _insert(
    conn: psycopg.Connection[Any], sql: str, rows: Iterable[tuple[Any, ...]]
) -> IngestCount:
    batch = list(rows)
    inserted = 0
    with translated(), conn.transaction(), conn.cursor() as cur:
        for row in batch:
            cur.execute(sql, row)
            inserted += cur.rowcount
    return IngestCount(inserted, len(batch) - inserted)


def ingest_funding_rates(conn: psycopg.Connection[Any], listing_id: int, path: Path) -> IngestCount:
    """Funding rates of a perpetual listing from a CSV file (see the module docstring)."""
    rows: list[tuple[int, dt.datetime, Decimal]] = []
    for line, (at_text, rate_text) in _rows(
        path, (("funding_time", "time", "timestamp"), ("funding_rate", "rate"))
    ):
        rows.append(
            (
                listing_id,
                _time(at_text, line, "funding_time"),
                _number(rate_text, line, "funding_rate"),
            )
        )
    stored = {
        r["funding_time"]: r["funding_rate"]
        for r in dicts(
            conn,
            "SELECT funding_time, funding_rate FROM market.funding_rates WHERE exchange_instrument_id = %s",
            (listing_id,),
        )
    }
    for _, at, rate in rows:
        if at in stored and stored[at] != rate:
            raise ValidationError(
                "funding_rate",
                f"differs from the rate stored for {at.isoformat()} ({stored[at]})",
                str(rate),
            )
    return _insert(
        conn,
        "INSERT INTO market.funding_rates (exchange_instrument_id, funding_time, funding_rate) "
        "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        rows,
    )


def ingest_mark_prices(conn: psycopg.Connection[Any], listing_id: int, path: Path) -> IngestCount:
    """Mark-price candles of a listing from a CSV file (time,open[,high,low,close])."""
    with path.open(newline="", encoding="utf-8") as fh:
        header = [h.strip().lower() for h in next(csv.reader(fh), [])]
    full = all(c in header for c in ("high", "low", "close"))
    cols: tuple[tuple[str, ...], ...] = (("time", "timestamp"), ("open", "mark_price", "price"))
    if full:
        cols += (("high",), ("low",), ("close",))
    rows = []
    for line, values in _rows(path, cols):
        at = _time(values[0], line, "time")
        prices: list[Decimal | None] = [
            _number(v, line, n, positive=True)
            for v, n in zip(values[1:], ("open", "high", "low", "close"), strict=False)
        ]
        prices += [None] * (4 - len(prices))
        rows.append((listing_id, at, *prices))
    return _insert(
        conn,
        'INSERT INTO market.mark_prices (exchange_instrument_id, "time", open, high, low, close) '
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        rows,
    )


def ingest_fx_rates(conn: psycopg.Connection[Any], path: Path) -> IngestCount:
    """FX snapshots (ts,base_ccy,quote_ccy,rate: one base_ccy costs `rate` quote_ccy)."""
    rows = []
    for line, (at, base, quote, rate) in _rows(
        path, (("ts", "time", "timestamp"), ("base_ccy", "base"), ("quote_ccy", "quote"), ("rate",))
    ):
        for field, ccy in (("base_ccy", base), ("quote_ccy", quote)):
            if not ccy or len(ccy) > 10:
                raise ValidationError(f"line {line}: {field}", "must be 1 to 10 characters", ccy)
        rows.append(
            (
                _time(at, line, "ts"),
                base.upper(),
                quote.upper(),
                _number(rate, line, "rate", positive=True),
            )
        )
    return _insert(
        conn,
        "INSERT INTO market.fx_rate_snapshots (ts, base_ccy, quote_ccy, rate) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        rows,
    )


def settle_due_funding(
    conn: psycopg.Connection[Any], until: dt.datetime | None = None, listing_id: int | None = None
) -> list[Settled]:
    """Book every uncollected funding time up to `until` (default now), oldest first."""
    with translated():
        found = conn.execute(
            "SELECT funding_rate_id, exchange_instrument_id, funding_time, status, payments "
            "FROM market.settle_due_funding(coalesce(%s, now()), %s)",
            (until, listing_id),
        ).fetchall()
    return [Settled(int(a), int(b), c, d, int(e)) for a, b, c, d, e in found]


def schedule_fee(
    conn: psycopg.Connection[Any],
    order_id: int,
    quantity: Decimal,
    price: Decimal,
    executed_at: dt.datetime,
    liquidity: str | None = None,
) -> Decimal | None:
    """The fee the schedule charges a fill the exchange reported none for (None: no
    schedule covers its time). See market.schedule_fee for the maker/taker rule."""
    with translated():
        value = scalar(
            conn,
            "SELECT market.schedule_fee(%s, %s, %s, %s, %s)",
            (order_id, quantity, price, executed_at, liquidity),
        )
    return None if value is None else Decimal(value)
