"""Reconciliation against an exchange snapshot in the shapes CCXT returns:

    {"balance": <fetch_balance()>, "open_orders": <fetch_open_orders()>,
     "trades": <fetch_my_trades()>, "timestamp": <ms, optional>}

`reconcile` reports every difference from the books. With apply=True it brings the books
in line in one transaction, only by appending: missing fills go in through apply_fill (to
the account's own order when the exchange order id is one, else to a new EXTERNAL order),
and the balance differences left after that become ADJUSTMENT ledger rows. Existing
orders, executions and ledger rows are never edited. The report's balance figures are
computed by recording the missing fills in a transaction that is then rolled back, so
they use exactly the rules a real apply uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import psycopg

from tradestore.db.errors import NotFound, TradestoreError, ValidationError
from tradestore.db.query import dicts, scalar, translated
from tradestore.trading._input import to_decimal
from tradestore.trading.fills import fee_of, loads, parse_time


@dataclass(frozen=True)
class SnapshotTrade:
    trade_id: str
    order_id: str | None
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal | None  # None: the exchange reported none
    fee_currency: str | None
    extra_fees: list[tuple[Decimal, str | None]]
    executed_at: dt.datetime | None


@dataclass(frozen=True)
class SnapshotOrder:
    order_id: str | None
    client_order_id: str | None
    symbol: str
    side: str
    remaining: Decimal | None


@dataclass(frozen=True)
class Snapshot:
    balances: dict[str, Decimal]
    open_orders: list[SnapshotOrder]
    trades: list[SnapshotTrade]
    taken_at: dt.datetime | None = None


@dataclass(frozen=True)
class Difference:
    """One difference: kind, what it is about (trade id, order, currency), our value, the
    exchange's, and what apply does about it (None: report only)."""

    kind: str
    key: str
    ours: str | None
    theirs: str | None
    detail: str
    action: str | None = None


@dataclass
class ReconciliationReport:
    account_id: int
    applied: bool
    differences: list[Difference] = field(default_factory=list)
    recorded_executions: list[int] = field(default_factory=list)
    adjustments: list[int] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.differences


def _dec(field_name: str, value: Any) -> Decimal:
    result = to_decimal(field_name, value)
    if result is None:
        raise ValidationError(field_name, "is required", None)
    return result


def parse_snapshot(data: Mapping[str, Any]) -> Snapshot:
    """Read a snapshot dict (numbers as Decimal, ints or strings; see `load_snapshot`)."""
    if not isinstance(data, Mapping):
        raise ValidationError("snapshot", "must be a JSON object", type(data).__name__)
    balance = _first(data, "balance", "fetch_balance", "balances") or {}
    totals: dict[str, Decimal] = {}
    if isinstance(balance.get("total"), Mapping):
        raw_totals = balance["total"]
    else:  # {"BTC": {"free", "used", "total"}, ...}
        raw_totals = {
            k: v.get("total")
            for k, v in balance.items()
            if isinstance(v, Mapping) and k not in ("info", "free", "used", "total")
        }
    for currency, total in raw_totals.items():
        if total is not None:
            totals[str(currency).upper()] = _dec(f"balance.total.{currency}", total)

    orders = []
    for o in _first(data, "open_orders", "fetch_open_orders", "orders") or []:
        orders.append(
            SnapshotOrder(
                order_id=_str(o.get("id")),
                client_order_id=_str(o.get("clientOrderId")),
                symbol=str(o.get("symbol")),
                side=str(o.get("side", "")).upper(),
                remaining=to_decimal("open_orders.remaining", o.get("remaining")),
            )
        )

    trades = []
    for t in _first(data, "trades", "my_trades", "fetch_my_trades") or []:
        if t.get("id") is None:
            raise ValidationError("trades.id", "every trade needs the exchange's trade id", t)
        fee, fee_currency, extra = fee_of(t)
        trades.append(
            SnapshotTrade(
                trade_id=str(t["id"]),
                order_id=_str(t.get("order")),
                symbol=str(t.get("symbol")),
                side=str(t.get("side", "")).upper(),
                quantity=_dec("trades.amount", t.get("amount")),
                price=_dec("trades.price", t.get("price")),
                fee=fee,
                fee_currency=fee_currency,
                extra_fees=extra,
                executed_at=parse_time(t.get("datetime") or t.get("timestamp"), "trades.timestamp"),
            )
        )
    trades.sort(key=lambda t: (t.executed_at or dt.datetime.min.replace(tzinfo=dt.UTC), t.trade_id))
    taken = data.get("timestamp") or data.get("datetime")
    return Snapshot(totals, orders, trades, parse_time(taken, "timestamp") if taken else None)


def load_snapshot(path: str | Path) -> Snapshot:
    """Read a snapshot JSON file, keeping every number exact."""
    return parse_snapshot(loads(Path(path).read_text(encoding="utf-8")))


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    return None


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _listings(conn: psycopg.Connection[Any], account_id: int) -> tuple[int, dict[str, int]]:
    """The account's exchange and its listings by CCXT symbol and by exchange symbol."""
    exchange_id = scalar(
        conn, "SELECT exchange_id FROM account.accounts WHERE id = %s", (account_id,)
    )
    if exchange_id is None:
        if scalar(conn, "SELECT count(*) FROM account.accounts WHERE id = %s", (account_id,)) == 0:
            raise NotFound("account", account_id)
        raise ValidationError(
            "account_id", "the account has no exchange to reconcile with", account_id
        )
    found = dicts(
        conn,
        "SELECT ei.id, i.symbol, ei.exchange_symbol FROM market.exchange_instruments ei "
        "JOIN market.instruments i ON i.id = ei.instrument_id WHERE ei.exchange_id = %s",
        (exchange_id,),
    )
    by_symbol: dict[str, int] = {}
    for r in found:
        by_symbol.setdefault(r["exchange_symbol"], r["id"])
        by_symbol[r["symbol"]] = r["id"]
    return int(exchange_id), by_symbol


def _book_totals(conn: psycopg.Connection[Any], account_id: int) -> dict[str, Decimal]:
    return {
        r["currency"]: r["total"]
        for r in dicts(
            conn,
            "SELECT currency, total FROM account.asset_balances WHERE account_id = %s",
            (account_id,),
        )
    }


def _balance_differences(
    ours: dict[str, Decimal], theirs: dict[str, Decimal], tolerance: Decimal
) -> list[tuple[str, Decimal, Decimal]]:
    diffs = []
    for currency in sorted(set(ours) | set(theirs)):
        mine, exchange = ours.get(currency, Decimal(0)), theirs.get(currency, Decimal(0))
        if abs(exchange - mine) > tolerance:
            diffs.append((currency, mine, exchange))
    return diffs


def reconcile(
    conn: psycopg.Connection[Any],
    account_id: int,
    snapshot: Snapshot,
    *,
    apply: bool = False,
    tolerance: Decimal = Decimal(0),
) -> ReconciliationReport:
    """Compare the books of account_id with the snapshot; with apply, fix them (see module)."""
    report = ReconciliationReport(account_id=account_id, applied=apply)
    exchange_id, listings = _listings(conn, account_id)

    known = {
        r["exchange_trade_id"]: r
        for r in dicts(
            conn,
            "SELECT exchange_trade_id, quantity, price, side FROM trade.executions "
            "WHERE exchange_id = %s AND exchange_trade_id = ANY(%s)",
            (exchange_id, [t.trade_id for t in snapshot.trades]),
        )
    }
    missing: list[SnapshotTrade] = []
    for t in snapshot.trades:
        mine = known.get(t.trade_id)
        if mine is None:
            if t.symbol not in listings:
                report.differences.append(
                    Difference(
                        "UNKNOWN_SYMBOL",
                        t.trade_id,
                        None,
                        t.symbol,
                        f"trade {t.trade_id} is in {t.symbol}, which is not listed for this exchange",
                    )
                )
            else:
                missing.append(t)
        elif (mine["quantity"], mine["price"], mine["side"]) != (t.quantity, t.price, t.side):
            report.differences.append(
                Difference(
                    "FILL_MISMATCH",
                    t.trade_id,
                    f"{mine['side']} {mine['quantity']} @ {mine['price']}",
                    f"{t.side} {t.quantity} @ {t.price}",
                    "recorded fill differs from the exchange's",
                )
            )

    _compare_open_orders(conn, account_id, snapshot, report)

    before = _book_totals(conn, account_id)
    recorded: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    adjustments: dict[str, int] = {}
    with translated(), conn.transaction():
        for t in missing:
            try:
                with conn.transaction():
                    exec_id = _record(conn, account_id, listings[t.symbol], t)
            except TradestoreError as exc:
                refused[t.trade_id] = str(exc)
                continue
            recorded[t.trade_id] = dicts(
                conn,
                "SELECT e.id, e.order_id, o.source FROM trade.executions e "
                "JOIN trade.orders o ON o.id = e.order_id WHERE e.id = %s",
                (exec_id,),
            )[0]
        after = _book_totals(conn, account_id)
        remaining = _balance_differences(after, snapshot.balances, tolerance)
        if apply:
            for currency, mine, exchange in remaining:
                adjustments[currency] = cast(
                    int,
                    scalar(
                        conn,
                        "SELECT public.post_ledger_entry(%s, 'ADJUSTMENT', %s, %s, %s, coalesce(%s, now()))",
                        (
                            account_id,
                            currency,
                            exchange - mine,
                            f"reconciliation: exchange reports {exchange}, books had {mine}",
                            snapshot.taken_at,
                        ),
                    ),
                )
        else:
            raise psycopg.Rollback()

    verb = "recorded" if apply else "would record"
    for t in missing:
        theirs = f"{t.side} {t.quantity} {t.symbol} @ {t.price}"
        if t.trade_id in refused:
            report.differences.append(
                Difference(
                    "MISSING_FILL",
                    t.trade_id,
                    None,
                    theirs,
                    "fill is on the exchange but not in the books",
                    f"refused: {refused[t.trade_id]}",
                )
            )
            continue
        r = recorded[t.trade_id]
        target = (
            "a new EXTERNAL order" if r["source"] == "EXTERNAL" else f"its order {r['order_id']}"
        )
        report.differences.append(
            Difference(
                "MISSING_FILL",
                t.trade_id,
                None,
                theirs,
                "fill is on the exchange but not in the books",
                f"{verb} as execution {r['id']} of {target}"
                if apply
                else f"{verb} it for {target}",
            )
        )
        if apply:
            report.recorded_executions.append(r["id"])

    left = {c: (m, e) for c, m, e in remaining}
    for currency, mine, exchange in _balance_differences(before, snapshot.balances, tolerance):
        if currency in left:
            continue
        report.differences.append(
            Difference(
                "BALANCE_MISMATCH",
                currency,
                str(mine),
                str(exchange),
                "explained by the missing fills",
                f"settled by the fills ({verb})",
            )
        )
    for currency, (mine, exchange) in left.items():
        was = before.get(currency, Decimal(0))
        delta = _plain(exchange - mine)
        action = (
            f"ADJUSTMENT {delta} (ledger row {adjustments[currency]})"
            if apply
            else f"ADJUSTMENT {delta}"
        )
        report.differences.append(
            Difference(
                "BALANCE_MISMATCH",
                currency,
                str(was),
                str(exchange),
                f"books {mine} after the missing fills, exchange {exchange}",
                action,
            )
        )
        if apply:
            report.adjustments.append(adjustments[currency])
    return report


def _record(
    conn: psycopg.Connection[Any], account_id: int, listing_id: int, t: SnapshotTrade
) -> int:
    exec_id = cast(
        int,
        scalar(
            conn,
            "SELECT trade.record_external_fill(%s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()), %s)",
            (
                account_id,
                listing_id,
                t.side,
                t.trade_id,
                t.quantity,
                t.price,
                t.fee,
                t.fee_currency,
                t.executed_at,
                t.order_id,
            ),
        ),
    )
    for fee, currency in t.extra_fees:
        if fee != 0 and currency:
            scalar(
                conn,
                "SELECT public.post_ledger_entry(%s, 'FEE', %s, %s, %s, coalesce(%s, now()), NULL, NULL, %s)",
                (account_id, currency, -fee, f"fee of {t.trade_id}", t.executed_at, exec_id),
            )
    return exec_id


def _compare_open_orders(
    conn: psycopg.Connection[Any], account_id: int, snapshot: Snapshot, report: ReconciliationReport
) -> None:
    ours = dicts(
        conn,
        "SELECT o.id, o.exchange_order_id, o.client_order_id, o.remaining_quantity, o.side, "
        "ei.exchange_symbol AS symbol FROM trade.orders o "
        "JOIN market.exchange_instruments ei ON ei.id = o.exchange_instrument_id "
        "WHERE o.account_id = %s AND o.status IN ('NEW', 'PARTIALLY_FILLED') ORDER BY o.id",
        (account_id,),
    )
    by_exchange_id = {o["exchange_order_id"]: o for o in ours if o["exchange_order_id"]}
    by_client_id = {o["client_order_id"]: o for o in ours if o["client_order_id"]}
    matched: set[int] = set()
    for x in snapshot.open_orders:
        mine = by_exchange_id.get(x.order_id) or by_client_id.get(x.client_order_id)
        key = x.order_id or x.client_order_id or "?"
        if mine is None:
            report.differences.append(
                Difference(
                    "UNKNOWN_OPEN_ORDER",
                    key,
                    None,
                    f"{x.side} {x.remaining} {x.symbol} open",
                    "open on the exchange but not in the books (placed by hand?)",
                )
            )
            continue
        matched.add(mine["id"])
        if x.remaining is not None and x.remaining != mine["remaining_quantity"]:
            report.differences.append(
                Difference(
                    "OPEN_ORDER_MISMATCH",
                    key,
                    str(mine["remaining_quantity"]),
                    str(x.remaining),
                    f"remaining quantity of order {mine['id']} differs",
                )
            )
    for o in ours:
        if o["id"] not in matched:
            report.differences.append(
                Difference(
                    "NOT_OPEN_ON_EXCHANGE",
                    str(o["id"]),
                    f"{o['side']} {o['remaining_quantity']} {o['symbol']} open",
                    None,
                    "active in the books but not open on the exchange (filled or canceled there?)",
                )
            )
