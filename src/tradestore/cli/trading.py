"""Trading commands: `orders`, `fills`, `positions`, `ledger`, `reconcile`, and the
reference data behind them, `exchanges` and `instruments` (with CCXT market import)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tradestore import trading
from tradestore.cli.common import (
    Column,
    add_row,
    console,
    database,
    explained,
    fail,
    fmt_cell,
    handles_errors,
    make_table,
    parse_decimal,
    print_table,
)
from tradestore.db.connect import connect
from tradestore.db.errors import ValidationError
from tradestore.market import reference
from tradestore.timeparse import parse_time

orders_app = typer.Typer(help="Submit, cancel, expire and list orders.", no_args_is_help=True)
fills_app = typer.Typer(
    help="Import an exchange's fill feed (JSON lines) and list fills.", no_args_is_help=True
)
positions_app = typer.Typer(
    help="Open positions and the account's valuation.", invoke_without_command=True
)
ledger_app = typer.Typer(
    help="The append-only ledger: entries, balances, deposits, verify.", no_args_is_help=True
)
reconcile_app = typer.Typer(
    help="Compare the books with an exchange snapshot (CCXT JSON); --apply fixes them.",
    invoke_without_command=True,
)
exchanges_app = typer.Typer(help="Exchanges, and the import of CCXT markets.", no_args_is_help=True)
instruments_app = typer.Typer(
    help="Instruments, listings and their trading rules.", no_args_is_help=True
)

accounts_app = typer.Typer(
    help="Trading accounts (portfolios): create one for a user at an exchange, list, update, close.",
    no_args_is_help=True,
)

# How an account's trading mode is shown: a simulated (paper) account is never mistaken for a live one.
MODE_LABELS = {
    "off": "books only",
    "sim": "PAPER (sim)",
    "paper": "PAPER (testnet)",
    "live": "LIVE",
}

ACCOUNT = typer.Option(..., "--account", "-a", help="account id")


@contextmanager
def _conn() -> Iterator[psycopg.Connection[Any]]:
    with database() as conninfo, connect(conninfo, autocommit=True) as conn, explained(conn):
        yield conn


def _dec(field: str, text: str | None) -> Decimal | None:
    return parse_decimal(field, text)


def _when(text: str | None, field: str) -> dt.datetime | None:
    return None if text is None else parse_time(text, field)


def _fmt(value: object) -> str:
    # One cell format for every CLI table: normalized decimals (--exact: in full).
    return fmt_cell(value)


def _listing_id(
    conn: psycopg.Connection[Any], account_id: int, symbol: str | None, listing: int | None
) -> int:
    if listing is not None:
        return listing
    if symbol is None:
        raise ValidationError("symbol", "give --symbol or --listing", None)
    code = conn.execute(
        "SELECT x.code FROM account.accounts a JOIN market.exchanges x ON x.id = a.exchange_id WHERE a.id = %s",
        (account_id,),
    ).fetchone()
    if code is None:
        raise ValidationError("account_id", "must name an account with an exchange", account_id)
    return reference.find_listing(conn, code[0], symbol).id


# ------------------------------------------------------------------------------ orders
@orders_app.command("submit")
@handles_errors
def orders_submit(
    account: int = ACCOUNT,
    side: str = typer.Option(..., "--side", help="BUY or SELL"),
    quantity: str = typer.Option(..., "--quantity", "-q"),
    symbol: str | None = typer.Option(
        None, "--symbol", "-s", help="BTC/USDT or the exchange's symbol"
    ),
    listing: int | None = typer.Option(None, "--listing", help="listing id instead of --symbol"),
    order_type: str = typer.Option("LIMIT", "--type", "-t", help="MARKET, LIMIT or STOP"),
    price: str | None = typer.Option(None, "--price", "-p", help="limit price"),
    stop_price: str | None = typer.Option(
        None, "--stop-price", help="trigger price of a STOP order"
    ),
    key: str | None = typer.Option(
        None, "--key", help="idempotency key (a retry returns the same order)"
    ),
    client_id: str | None = typer.Option(None, "--client-id", help="client order id"),
    expires_at: str | None = typer.Option(
        None, "--expires-at", help="ISO time, e.g. 2025-01-01T00:00:00Z"
    ),
) -> None:
    """Submit an order (normalized to the listing's rules) and print its id."""
    with _conn() as conn:
        listing_id = _listing_id(conn, account, symbol, listing)
        order_id = trading.submit_order(
            conn,
            account,
            listing_id,
            side,
            order_type,
            _dec("quantity", quantity),
            _dec("price", price),
            idempotency_key=key,
            client_order_id=client_id,
            stop_price=_dec("stop_price", stop_price),
            expires_at=_when(expires_at, "expires_at"),
            source="CLI",
        )
        order = trading.get_order(conn, order_id)
    console.print(
        f"order {order.id}: {order.side} {_fmt(order.quantity)} {order.symbol} "
        f"{order.order_type} @ {_fmt(order.price or order.stop_price)} [{order.status}]"
    )


@orders_app.command("cancel")
@handles_errors
def orders_cancel(order_id: int = typer.Argument(..., help="order id")) -> None:
    """Cancel an active order."""
    with _conn() as conn:
        trading.cancel_order(conn, order_id)
        status = trading.get_order(conn, order_id).status
    console.print(f"order {order_id}: {status}")


@orders_app.command("expire")
@handles_errors
def orders_expire() -> None:
    """Expire active orders whose expires_at has passed."""
    with _conn() as conn:
        count = trading.expire_orders(conn)
    console.print(f"expired {count} order(s)")


# Tables fit an 80-column terminal: the minor columns (essential=False) show with --wide.
_R = "right"
ORDER_COLUMNS = (
    Column("id", justify=_R), Column("account", essential=False, justify=_R), Column("symbol"),
    Column("side"), Column("type", essential=False), Column("qty", justify=_R),
    Column("price", justify=_R), Column("filled", justify=_R),
    Column("avg", essential=False, justify=_R), Column("status"),
    Column("created", essential=False),
)  # fmt: skip
FILL_COLUMNS = (
    Column("id", justify=_R), Column("order", justify=_R), Column("trade id", essential=False),
    Column("symbol"), Column("side"), Column("qty", justify=_R), Column("price", justify=_R),
    Column("fee", justify=_R), Column("late", essential=False),
    Column("executed", essential=False),
)  # fmt: skip
POSITION_COLUMNS = (
    Column("symbol"), Column("side"), Column("qty", justify=_R), Column("entry", justify=_R),
    Column("price", justify=_R), Column("market value", essential=False, justify=_R),
    Column("unrealized", justify=_R), Column("realized", essential=False, justify=_R),
    Column("fees", essential=False, justify=_R),
)  # fmt: skip
LEDGER_COLUMNS = (
    Column("seq", justify=_R), Column("id", essential=False, justify=_R), Column("type"),
    Column("currency"), Column("amount", justify=_R),
    Column("order", essential=False, justify=_R),
    Column("execution", essential=False, justify=_R), Column("time"),
    Column("description", essential=False),
)  # fmt: skip
BALANCE_COLUMNS = (
    Column("currency"), Column("ledger", justify=_R), Column("free", justify=_R),
    Column("used", justify=_R), Column("total", justify=_R),
)  # fmt: skip


@orders_app.command("list")
@handles_errors
def orders_list(
    account: int | None = typer.Option(None, "--account", "-a"),
    active: bool = typer.Option(False, "--active", help="only NEW and PARTIALLY_FILLED"),
    limit: int = typer.Option(50, "--limit"),
) -> None:
    """Orders, newest first."""
    with _conn() as conn:
        orders = trading.list_orders(conn, account, active_only=active, limit=limit)
    table = make_table(ORDER_COLUMNS)
    for o in orders:
        add_row(
            table,
            ORDER_COLUMNS,
            [
                str(o.id),
                str(o.account_id),
                o.symbol,
                o.side,
                o.order_type,
                _fmt(o.quantity),
                _fmt(o.price or o.stop_price),
                _fmt(o.filled_quantity),
                _fmt(o.average_fill_price),
                o.status,
                _fmt(o.created_at),
            ],
        )
    print_table(table)


# ------------------------------------------------------------------------------ fills
@fills_app.command("import")
@handles_errors
def fills_import(
    path: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="JSON lines, one fill per line"
    ),
    account: int | None = typer.Option(
        None, "--account", "-a", help="account whose orders the exchange order ids refer to"
    ),
) -> None:
    """Apply every fill of a feed; repeated fills are recognized and skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    with (
        _conn() as conn,
        Progress(
            TextColumn("fills"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("fills", total=len(lines))
        report = trading.import_fills(
            conn, lines, account_id=account, on_line=lambda n: progress.update(task, completed=n)
        )
    console.print(
        f"{report.applied} fill(s) applied, {report.duplicates} already recorded, "
        f"{len(report.errors)} refused"
    )
    for number, message in report.errors:
        console.print(f"  line {number}: {message}", highlight=False)
    if report.errors:
        raise typer.Exit(1)


@fills_app.command("list")
@handles_errors
def fills_list(
    account: int | None = typer.Option(None, "--account", "-a"),
    order: int | None = typer.Option(None, "--order"),
    limit: int = typer.Option(50, "--limit"),
) -> None:
    """Executions, newest first."""
    with _conn() as conn:
        executions = trading.list_executions(conn, account, order_id=order, limit=limit)
    table = make_table(FILL_COLUMNS)
    for e in executions:
        add_row(
            table,
            FILL_COLUMNS,
            [
                str(e.id),
                str(e.order_id),
                e.exchange_trade_id,
                e.symbol,
                e.side,
                _fmt(e.quantity),
                _fmt(e.price),
                f"{_fmt(e.fee)} {e.fee_currency or ''}",
                "yes" if e.is_late else "",
                _fmt(e.executed_at),
            ],
        )
    print_table(table)


# ------------------------------------------------------------------------------ positions
@positions_app.callback()
@handles_errors
def positions(
    account: int = ACCOUNT,
    include_flat: bool = typer.Option(False, "--all", help="include flat positions"),
) -> None:
    """Positions at the latest price, and the account's valuation."""
    with _conn() as conn:
        rows = trading.list_positions(conn, account, include_flat=include_flat)
        value = trading.portfolio_valuation(conn, account)
    table = make_table(POSITION_COLUMNS)
    for p in rows:
        add_row(
            table,
            POSITION_COLUMNS,
            [
                p.symbol,
                p.side,
                _fmt(abs(p.quantity)),
                _fmt(p.avg_entry_price),
                _fmt(p.current_price),
                _fmt(p.market_value),
                _fmt(p.unrealized_pnl),
                _fmt(p.realized_pnl),
                _fmt(p.total_fees),
            ],
        )
    print_table(table)
    console.print(
        f"{value.base_currency}: total {_fmt(value.total_value)} = cash {_fmt(value.cash_balance)} "
        f"+ positions {_fmt(value.positions_value)} + other {_fmt(value.other_value)}; "
        f"available {_fmt(value.available_balance)}, invested {_fmt(value.invested_balance)}"
        + (
            f"; not valued: {', '.join(value.unvalued_currencies)}"
            if value.unvalued_currencies
            else ""
        ),
        highlight=False,
    )


# ------------------------------------------------------------------------------ ledger
@ledger_app.command("show")
@handles_errors
def ledger_show(
    account: int = ACCOUNT,
    currency: str | None = typer.Option(None, "--currency", "-c"),
    limit: int = typer.Option(50, "--limit"),
) -> None:
    """Ledger rows, newest first."""
    with _conn() as conn:
        rows = trading.entries(conn, account, currency=currency, limit=limit)
    table = make_table(LEDGER_COLUMNS)
    for r in rows:
        add_row(
            table,
            LEDGER_COLUMNS,
            [
                str(r.chain_seq),
                str(r.id),
                r.transaction_type,
                r.currency,
                _fmt(r.amount),
                _fmt(r.related_order_id),
                _fmt(r.related_execution_id),
                _fmt(r.timestamp),
                r.description or "",
            ],
        )
    print_table(table)


@ledger_app.command("balances")
@handles_errors
def ledger_balances(account: int = ACCOUNT) -> None:
    """Holdings per currency (ledger plus spot positions), free / used / total."""
    with _conn() as conn:
        rows = trading.asset_balances(conn, account)
        cash = trading.balances(conn, account)
    table = make_table(BALANCE_COLUMNS)
    for b in rows:
        add_row(
            table,
            BALANCE_COLUMNS,
            [
                b.currency,
                _fmt(cash.get(b.currency, Decimal(0))),
                _fmt(b.free),
                _fmt(b.used),
                _fmt(b.total),
            ],
        )
    print_table(table)


def _post(account: int, kind: str, currency: str, amount: str, description: str | None) -> None:
    with _conn() as conn:
        entry = trading.post_entry(
            conn, account, kind, currency, _dec("amount", amount), description=description
        )
    console.print(f"ledger row {entry}: {kind} {amount} {currency.upper()}")


@ledger_app.command("deposit")
@handles_errors
def ledger_deposit(
    account: int = ACCOUNT,
    currency: str = typer.Argument(...),
    amount: str = typer.Argument(...),
    description: str | None = typer.Option(None, "--description", "-d"),
) -> None:
    """Record a deposit (amount > 0)."""
    _post(account, "DEPOSIT", currency, amount, description)


@ledger_app.command("withdraw")
@handles_errors
def ledger_withdraw(
    account: int = ACCOUNT,
    currency: str = typer.Argument(...),
    amount: str = typer.Argument(..., help="positive amount to withdraw"),
    description: str | None = typer.Option(None, "--description", "-d"),
) -> None:
    """Record a withdrawal (not more than the balance)."""
    value = _dec("amount", amount)
    _post(
        account, "WITHDRAWAL", currency, str(-value) if value is not None else amount, description
    )


@ledger_app.command("adjust")
@handles_errors
def ledger_adjust(
    account: int = ACCOUNT,
    currency: str = typer.Argument(...),
    amount: str = typer.Argument(..., help="signed amount"),
    description: str = typer.Option(..., "--description", "-d", help="why"),
) -> None:
    """Append a correcting ADJUSTMENT row (the ledger is never edited)."""
    _post(account, "ADJUSTMENT", currency, amount, description)


@ledger_app.command("verify")
@handles_errors
def ledger_verify(
    account: int | None = typer.Option(None, "--account", "-a"),
    expect_head: str | None = typer.Option(
        None,
        "--expect-head",
        help="a head hash written down earlier (from this command); must still be "
        "in the chain, which catches a rewrite of the whole chain",
    ),
) -> None:
    """Recompute the ledger's hash chains; exit 1 if any row was altered or removed."""
    with _conn() as conn:
        result = trading.verify(conn, account)
        anchored = None
        if expect_head is not None:
            anchored = conn.execute(
                "SELECT account_id, chain_seq FROM account.transactions WHERE row_hash = decode(%s, 'hex')",
                (expect_head,),
            ).fetchone()
    for account_id, (seq, head) in result.heads.items():
        console.print(f"account {account_id}: {seq} row(s), head {head or '-'}", highlight=False)
    if expect_head is not None and anchored is None:
        raise fail(
            f"ledger: expected head {expect_head} is not in the chain (the ledger was rewritten)"
        )
    if not result.ok:
        for p in result.problems:
            where = (
                "balances" if p.chain_seq is None
                else f"row {p.chain_seq} (id {_fmt(p.transaction_id)})"
            )  # fmt: skip
            console.print(f"[red]account {p.account_id} {where}:[/] {p.problem}", highlight=False)
        raise fail(f"ledger: {len(result.problems)} problem(s) in {result.rows_checked} row(s)")
    console.print(f"[green]ledger intact[/]: {result.rows_checked} row(s) checked")


# ------------------------------------------------------------------------------ reconcile
@reconcile_app.callback()
@handles_errors
def reconcile_cmd(
    snapshot: Path = typer.Option(
        ...,
        "--snapshot",
        "-f",
        exists=True,
        dir_okay=False,
        help="JSON: {balance: fetch_balance(), open_orders: fetch_open_orders(), trades: fetch_my_trades()}",
    ),
    account: int = ACCOUNT,
    apply: bool = typer.Option(
        False, "--apply", help="record missing fills and balance ADJUSTMENTs"
    ),
    tolerance: str = typer.Option("0", "--tolerance", help="ignore balance differences up to this"),
    check: bool = typer.Option(False, "--check", help="exit 2 when differences remain"),
) -> None:
    """Report every difference between the books and the exchange snapshot."""
    with _conn() as conn:
        report = trading.reconcile(
            conn,
            account,
            trading.load_snapshot(snapshot),
            apply=apply,
            tolerance=_dec("tolerance", tolerance) or Decimal(0),
        )
    if report.in_sync:
        console.print("[green]books match the exchange[/]")
        return
    table = Table(
        "kind", "key", "books", "exchange", "detail", "applied" if apply else "apply would"
    )
    for d in report.differences:
        table.add_row(
            d.kind, d.key, d.ours or "-", d.theirs or "-", d.detail, d.action or "report only"
        )
    console.print(table)
    if apply:
        console.print(
            f"recorded {len(report.recorded_executions)} fill(s), "
            f"{len(report.adjustments)} adjustment(s)"
        )
    if check and not apply:
        raise typer.Exit(2)


# ------------------------------------------------------------------------------ reference data
@exchanges_app.command("list")
@handles_errors
def exchanges_list() -> None:
    with _conn() as conn:
        rows = conn.execute(
            "SELECT x.id, x.code, x.name, x.kind, count(ei.id) FROM market.exchanges x "
            "LEFT JOIN market.exchange_instruments ei ON ei.exchange_id = x.id "
            "GROUP BY x.id ORDER BY x.code"
        ).fetchall()
    table = Table("id", "code", "name", "kind", "listings")
    for r in rows:
        table.add_row(*(str(v) for v in r))
    console.print(table)


@exchanges_app.command("add")
@handles_errors
def exchanges_add(
    code: str = typer.Argument(...),
    name: str = typer.Argument(...),
    kind: str = typer.Option("CRYPTO", "--kind"),
) -> None:
    with _conn() as conn:
        exchange_id = reference.upsert_exchange(conn, code, name, kind=kind.upper())
    console.print(f"exchange {exchange_id}: {code.lower()}")


@exchanges_app.command("import-ccxt")
@handles_errors
def exchanges_import_ccxt(
    code: str = typer.Argument(..., help="exchange code, e.g. binance"),
    path: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="JSON of exchange.load_markets() (or {precisionMode, markets})",
    ),
    precision_mode: str | None = typer.Option(
        None, "--precision-mode", help="tick_size, decimal_places or significant_digits"
    ),
    amount_precision_mode: str | None = typer.Option(None, "--amount-precision-mode"),
    effective_from: str | None = typer.Option(
        None, "--effective-from", help="when changed rules take effect"
    ),
) -> None:
    """Import markets: instruments, listings and trading rules (changes keep their history)."""
    data = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    markets = data.get("markets", data) if isinstance(data, dict) else data
    mode = _mode(precision_mode) or (
        int(data["precisionMode"])
        if isinstance(data, dict) and "precisionMode" in data
        else reference.TICK_SIZE
    )
    with _conn() as conn:
        report = reference.import_ccxt_markets(
            conn,
            code,
            markets,
            precision_mode=mode,
            amount_precision_mode=_mode(amount_precision_mode),
            effective_from=_when(effective_from, "effective_from"),
        )
    console.print(
        f"{len(report.created)} created, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged, {len(report.skipped)} skipped"
    )
    for symbol, reason in report.skipped:
        console.print(f"  skipped {symbol}: {reason}", highlight=False)


def _mode(name: str | None) -> int | None:
    if name is None:
        return None
    if name.lower() not in reference.PRECISION_MODES:
        raise ValidationError(
            "precision_mode", f"must be one of {', '.join(reference.PRECISION_MODES)}", name
        )
    return reference.PRECISION_MODES[name.lower()]


@instruments_app.command("list")
@handles_errors
def instruments_list(exchange: str | None = typer.Option(None, "--exchange", "-x")) -> None:
    """Listings with their current trading rules."""
    with _conn() as conn:
        rows = reference.list_listings(conn, exchange)
    table = Table("listing", "exchange", "symbol", "exchange symbol", "class", "status", "rules")
    for r in rows:
        table.add_row(
            str(r.id),
            r.exchange_code,
            r.symbol,
            r.exchange_symbol,
            r.asset_class,
            r.status,
            json.dumps({k: v for k, v in r.trading_rules.items() if k != "price_bands"}),
        )
    console.print(table)


@instruments_app.command("add")
@handles_errors
def instruments_add(
    exchange: str = typer.Option(..., "--exchange", "-x"),
    symbol: str = typer.Option(..., "--symbol", "-s", help="global symbol or ticker"),
    exchange_symbol: str | None = typer.Option(None, "--exchange-symbol"),
    name: str | None = typer.Option(None, "--name"),
    asset_class: str = typer.Option("CRYPTO", "--class"),
    base: str | None = typer.Option(None, "--base"),
    quote: str | None = typer.Option(None, "--quote"),
    rules: str = typer.Option(
        "{}", "--rules", help='JSON, e.g. {"tick_size": "0.01", "step_size": "0.001"}'
    ),
) -> None:
    """Add an instrument and list it on an exchange."""
    with _conn() as conn, conn.transaction():
        exchange_id = reference.upsert_exchange(conn, exchange)
        instrument_id = reference.upsert_instrument(
            conn,
            symbol,
            name,
            asset_class=asset_class.upper(),
            base_currency=base,
            quote_currency=quote,
        )
        listing_id, outcome = reference.upsert_listing(
            conn, exchange_id, instrument_id, exchange_symbol or symbol, _rules(rules)
        )
    console.print(f"listing {listing_id}: {outcome}")


def _rules(text: str) -> dict[str, Any]:
    try:
        rules = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ValidationError("rules", "must be a JSON object", text) from exc
    return {k: (str(v) if isinstance(v, Decimal | int) else v) for k, v in rules.items()}


@instruments_app.command("rules")
@handles_errors
def instruments_rules(listing: int = typer.Argument(...)) -> None:
    """A listing's trading-rule history."""
    with _conn() as conn:
        rows = conn.execute(
            "SELECT effective_from::text, effective_to::text, source, trading_rules FROM market.trading_rule_versions "
            "WHERE exchange_instrument_id = %s ORDER BY effective_from",
            (listing,),
        ).fetchall()
    table = Table("from", "to", "source", "rules")
    for start, end, source, rules in rows:
        table.add_row(start, end or "-", source, json.dumps(rules))
    console.print(table)


@instruments_app.command("set-rules")
@handles_errors
def instruments_set_rules(
    listing: int = typer.Argument(...),
    rules: str = typer.Argument(..., help="the complete new rules as JSON"),
    effective_from: str | None = typer.Option(
        None, "--effective-from", help="ISO time (default now)"
    ),
) -> None:
    """Change a listing's rules from a time on; earlier orders keep the rules of their time."""
    with _conn() as conn:
        version = reference.set_trading_rules(
            conn, listing, _rules(rules), effective_from=_when(effective_from, "effective_from")
        )
    console.print(f"rule version {version}")


@accounts_app.command("create")
@handles_errors
def accounts_create(
    username: str = typer.Argument(..., help="the owner's username"),
    name: str = typer.Option(..., "--name", help="the account's name, unique per user"),
    exchange: str = typer.Option(
        None, "--exchange", "-x", help="exchange code (see `exchanges list`); orders need one"
    ),
    base_currency: str = typer.Option(
        "USDT", "--base-currency", help="currency balances are counted in"
    ),
    initial_capital: str = typer.Option(
        "0", help="reference for returns; deposit money with `ledger deposit`"
    ),
) -> None:
    """Open an account for a user; prints its id."""
    from tradestore.trading.accounts import create_account

    with _conn() as conn:
        account_id = create_account(
            conn, username, name, exchange=exchange, base_currency=base_currency,
            initial_capital=initial_capital,
        )  # fmt: skip
    note = (
        ""
        if exchange is not None
        else f" (no exchange: it takes no orders until `accounts update {account_id} --exchange CODE`)"
    )
    console.print(f"account {account_id} opened{note}", highlight=False, soft_wrap=True)


_ACCOUNT_COLUMNS = (
    Column("id"), Column("user"), Column("exchange"), Column("name"), Column("currency"),
    Column("initial capital", justify="right"), Column("active"), Column("mode"),
)  # fmt: skip


@accounts_app.command("list")
@handles_errors
def accounts_list(username: str = typer.Option(None, "--user", help="only this user's")) -> None:
    """Every account with its owner and exchange."""
    from tradestore.trading.accounts import list_accounts

    with _conn() as conn:
        accounts = list_accounts(conn, username)
    table = make_table(_ACCOUNT_COLUMNS)
    for a in accounts:
        add_row(table, _ACCOUNT_COLUMNS, (
            str(a.id), a.username, a.exchange or "-", a.name, a.base_currency,
            a.initial_capital, "yes" if a.is_active else "no",
            MODE_LABELS.get(a.trading_mode, a.trading_mode),
        ))  # fmt: skip
    print_table(table)


@accounts_app.command("update")
@handles_errors
def accounts_update(
    account: int = typer.Argument(..., help="account id"),
    name: str | None = typer.Option(None, "--name", help="new name, unique per user"),
    exchange: str | None = typer.Option(
        None, "--exchange", "-x", help="exchange code (only while the account has no orders)"
    ),
    description: str | None = typer.Option(None, "--description"),
    initial_capital: str | None = typer.Option(
        None, "--initial-capital", help="reference for returns (not money: see `ledger deposit`)"
    ),
) -> None:
    """Change an account's name, exchange, description or reference capital."""
    from tradestore.trading.accounts import update_account

    with _conn() as conn:
        update_account(
            conn, account, name=name, exchange=exchange, description=description,
            initial_capital=_dec("initial_capital", initial_capital),
        )  # fmt: skip
    console.print(f"account {account} updated")


@accounts_app.command("close")
@handles_errors
def accounts_close(account: int = typer.Argument(..., help="account id")) -> None:
    """Close an account: it takes no more orders (its history stays). Refused while it has
    open orders or positions."""
    from tradestore.trading.accounts import close_account

    with _conn() as conn:
        close_account(conn, account)
    console.print(f"account {account} closed")
