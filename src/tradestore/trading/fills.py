"""Fills: apply one (the whole pipeline in one SQL call) or import an exchange's fill feed
from JSON lines. A repeated fill is recognized by (exchange, trade id) and changes nothing,
so a feed can be replayed safely."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

import psycopg

from tradestore.db.errors import TradestoreError, ValidationError
from tradestore.db.query import dicts, scalar, translated
from tradestore.trading._input import Number, to_decimal, utc
from tradestore.trading.models import Execution, FillResult, from_row


def apply_fill(
    conn: psycopg.Connection[Any],
    order_id: int,
    exchange_trade_id: str,
    quantity: Number,
    price: Number,
    fee: Number | None = 0,
    fee_currency: str | None = None,
    executed_at: dt.datetime | None = None,
) -> FillResult:
    """Record a fill of order_id and carry it through order, position and ledger in one
    transaction. Overfills are refused; a fill after a cancel is recorded and alerted.
    `fee=None` means the exchange reported no fee: the settlement module's fee schedule
    prices it when enabled (else it is 0)."""
    with translated():
        row = conn.execute(
            "SELECT execution_id, created FROM trade.apply_fill_result(%s, %s, %s, %s, %s, %s, %s)",
            (
                order_id,
                exchange_trade_id,
                to_decimal("quantity", quantity),
                to_decimal("price", price),
                to_decimal("fee", fee),
                fee_currency,
                utc(executed_at, "executed_at"),
            ),
        ).fetchone()
    assert row is not None
    return FillResult(execution_id=row[0], created=bool(row[1]))


def list_executions(
    conn: psycopg.Connection[Any],
    account_id: int | None = None,
    *,
    order_id: int | None = None,
    limit: int = 100,
    before: tuple[dt.datetime, int] | None = None,
) -> list[Execution]:
    """Fills, newest first; symbol is "<exchange code>:<exchange symbol>". `before`
    (executed_at, id) continues a keyset page after its last fill."""
    at, row_id = before if before is not None else (None, None)
    found = dicts(
        conn,
        """SELECT e.id, e.order_id, e.account_id, e.exchange_instrument_id,
                  x.code || ':' || ei.exchange_symbol AS symbol, e.exchange_trade_id, e.side,
                  e.quantity, e.price, e.fee, e.fee_currency, e.net_amount, e.is_late,
                  e.executed_at
             FROM trade.executions e
             JOIN market.exchange_instruments ei ON ei.id = e.exchange_instrument_id
             JOIN market.exchanges x ON x.id = ei.exchange_id
            WHERE (%(account)s::bigint IS NULL OR e.account_id = %(account)s)
              AND (%(order)s::bigint IS NULL OR e.order_id = %(order)s)
              AND (%(at)s::timestamptz IS NULL OR (e.executed_at, e.id) < (%(at)s, %(id)s))
            ORDER BY e.executed_at DESC, e.id DESC LIMIT %(limit)s""",
        {"account": account_id, "order": order_id, "limit": limit, "at": at, "id": row_id},
    )
    return [cast(Execution, from_row(Execution, r)) for r in found]


@dataclass(frozen=True)
class FillLine:
    """One fill of a feed. The order is named by tradestore's id (order_id) or by the
    exchange's order id / client order id of an order of the importing account."""

    exchange_trade_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal | None = None  # None: not reported (priced from the fee schedule, if any)
    fee_currency: str | None = None
    executed_at: dt.datetime | None = None
    order_id: int | None = None
    exchange_order_id: str | None = None
    client_order_id: str | None = None


def _first(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    return None


def parse_time(value: Any, field_name: str = "executed_at") -> dt.datetime | None:
    """ISO-8601 text (Z allowed) or epoch milliseconds (CCXT's `timestamp`), as UTC."""
    if value is None:
        return None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(0, dt.UTC) + dt.timedelta(milliseconds=int(value))
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(field_name, "must be an ISO-8601 time", value) from None
        if parsed.tzinfo is None:
            raise ValidationError(field_name, "must carry a time zone (e.g. Z)", value)
        return parsed
    raise ValidationError(field_name, "must be an ISO-8601 time or epoch milliseconds", value)


def fee_of(
    data: dict[str, Any],
) -> tuple[Decimal | None, str | None, list[tuple[Decimal, str | None]]]:
    """The fee of a fill: `fee` as a number (with `fee_currency`) or CCXT's
    {"cost", "currency"} (or `fees`, a list of them). Returns the first fee and the rest;
    the first fee is None when the fill reports none."""
    raw = data.get("fees") if data.get("fees") else data.get("fee")
    items = raw if isinstance(raw, list) else [raw]
    fees: list[tuple[Decimal, str | None]] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, dict):
            if item.get("cost") is None:
                continue
            fees.append((cast(Decimal, to_decimal("fee", item["cost"])), item.get("currency")))
        else:
            fees.append((cast(Decimal, to_decimal("fee", item)), data.get("fee_currency")))
    if not fees:
        return None, data.get("fee_currency"), []
    return fees[0][0], fees[0][1], fees[1:]


def parse_fill(data: dict[str, Any]) -> FillLine:
    """A FillLine from one JSON object: tradestore's field names or CCXT's trade shape
    (id, order, clientOrderId, amount, price, fee, timestamp/datetime)."""
    if not isinstance(data, dict):
        raise ValidationError("fill", "must be a JSON object", data)
    trade_id = _first(data, "exchange_trade_id", "trade_id", "id")
    quantity = _first(data, "quantity", "amount")
    price = _first(data, "price")
    for name, value in (("exchange_trade_id", trade_id), ("quantity", quantity), ("price", price)):
        if value is None:
            raise ValidationError(name, "is required", None)
    fee, fee_currency, extra = fee_of(data)
    if extra:
        raise ValidationError(
            "fees", "a fill feed line may carry one fee currency", data.get("fees")
        )
    order_id = data.get("order_id")
    return FillLine(
        exchange_trade_id=str(trade_id),
        quantity=cast(Decimal, _json_decimal("quantity", quantity)),
        price=cast(Decimal, _json_decimal("price", price)),
        fee=fee,
        fee_currency=fee_currency,
        executed_at=parse_time(_first(data, "executed_at", "datetime", "timestamp")),
        order_id=int(order_id) if order_id is not None else None,
        exchange_order_id=_str_or_none(_first(data, "exchange_order_id", "order")),
        client_order_id=_str_or_none(_first(data, "client_order_id", "clientOrderId")),
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _json_decimal(field_name: str, value: Any) -> Decimal | None:
    # JSON read with parse_float=Decimal gives Decimal; ints and strings convert exactly.
    return to_decimal(field_name, value)


def loads(line: str) -> Any:
    """JSON with every number kept exact (floats become Decimal, not binary floats)."""
    return json.loads(line, parse_float=Decimal)


@dataclass
class ImportReport:
    applied: int = 0
    duplicates: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return self.applied + self.duplicates + len(self.errors)


def resolve_order_id(conn: psycopg.Connection[Any], account_id: int | None, fill: FillLine) -> int:
    if fill.order_id is not None:
        return fill.order_id
    if fill.exchange_order_id is None and fill.client_order_id is None:
        raise ValidationError(
            "order_id", "a fill must name its order (order_id, order or clientOrderId)", None
        )
    if account_id is None:
        raise ValidationError(
            "account_id",
            "is required to find an order by exchange order id",
            fill.exchange_order_id or fill.client_order_id,
        )
    found = scalar(
        conn,
        """SELECT o.id FROM trade.orders o
            WHERE o.account_id = %s
              AND (o.exchange_order_id = %s OR o.client_order_id = %s)
            ORDER BY (o.exchange_order_id = %s) DESC, o.id DESC LIMIT 1""",
        (account_id, fill.exchange_order_id, fill.client_order_id, fill.exchange_order_id),
    )
    if found is None:
        raise ValidationError(
            "order",
            "must name an order of the account (exchange or client order id)",
            fill.exchange_order_id or fill.client_order_id,
        )
    return cast(int, found)


def import_fills(
    conn: psycopg.Connection[Any],
    lines: Iterable[str],
    *,
    account_id: int | None = None,
    on_line: Callable[[int], None] | None = None,
) -> ImportReport:
    """Apply every fill of a JSON-lines feed, each in its own transaction. A bad line is
    reported (line number, field, rule, value) and the others still go in; replaying the
    feed counts the fills already recorded as duplicates."""
    report = ImportReport()
    for number, line in enumerate(lines, start=1):
        if on_line is not None:
            on_line(number)
        if not line.strip():
            continue
        try:
            fill = parse_fill(loads(line))
            order_id = resolve_order_id(conn, account_id, fill)
            with conn.transaction():
                result = apply_fill(
                    conn,
                    order_id,
                    fill.exchange_trade_id,
                    fill.quantity,
                    fill.price,
                    fill.fee,
                    fill.fee_currency,
                    fill.executed_at,
                )
        except json.JSONDecodeError as exc:
            report.errors.append((number, f"line: must be JSON ({exc.msg})"))
            continue
        except TradestoreError as exc:
            report.errors.append((number, str(exc)))
            continue
        if result.created:
            report.applied += 1
        else:
            report.duplicates += 1
    return report
