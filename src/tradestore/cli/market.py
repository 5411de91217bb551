"""`tradestore ingest ...` (bulk ingest of market data) and `tradestore market ...`
(rollups, queries and exports, indicators, partitions, retention)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tradestore.cli.common import console, database, err_console, handles_errors
from tradestore.db.connect import connect
from tradestore.db.errors import ValidationError
from tradestore.market import indicators as ind
from tradestore.market import query, retention, rollups
from tradestore.market.daily import ingest_daily_prices as ingest_daily_file
from tradestore.market.ingest import IngestReport, ingest
from tradestore.market.listings import KINDS, close_matches, find_listing_id
from tradestore.market.timeframes import check_served
from tradestore.timeparse import parse_optional_time

ingest_app = typer.Typer(
    help="Bulk-ingest market data from CSV or Parquet (validated, idempotent).",
    no_args_is_help=True,
)
market_app = typer.Typer(
    help="Market data: rollups, queries and exports, indicators, partitions, retention.",
    no_args_is_help=True,
)
rollup_app = typer.Typer(
    help="Rollup timeframes (1m -> 1h -> 1d, and any you add).", no_args_is_help=True
)
indicators_app = typer.Typer(help="Technical indicators (TA-Lib).", no_args_is_help=True)
partitions_app = typer.Typer(help="Partitions made ahead of time.", no_args_is_help=True)
retention_app = typer.Typer(help="Retention by dropping whole partitions.", no_args_is_help=True)
market_app.add_typer(rollup_app, name="rollup")
market_app.add_typer(indicators_app, name="indicators")
market_app.add_typer(partitions_app, name="partitions")
market_app.add_typer(retention_app, name="retention")

EXCHANGE = typer.Option(..., "--exchange", "-x", help="exchange code, e.g. binance")
SYMBOL = typer.Option(..., "--symbol", "-s", help="symbol, e.g. BTC/USDT")
TIMEFRAME = typer.Option(
    "1m", "--timeframe", "-t", help="bar timeframe: 1m, 5m, 1h, 4h, 1d, 1w ..."
)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_report(report: IngestReport, show: int) -> None:
    for made in report.created:
        console.print(f"created {made}", highlight=False)
    console.print(report.summary(), highlight=False)
    console.print(
        f"  {report.rows_per_second:,.0f} rows/s, {report.partitions_made} partition(s) made",
        style="dim",
    )
    for rejected in report.rejected[:show]:
        err_console.print(f"  [yellow]rejected[/] {rejected}", highlight=False)
    if len(report.rejected) > show:
        err_console.print(f"  ... and {len(report.rejected) - show} more rejected rows")
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)


@dataclass(frozen=True)
class IngestOptions:
    create: bool
    kind: str | None
    allow_rejects: bool
    show: int


def _may_create(conninfo: str, exchange: str, symbol: str, create: bool) -> bool:
    """--create, or, on a terminal, the user's yes when the listing does not exist yet."""
    if create or not sys.stdin.isatty():
        return create
    with connect(conninfo) as conn:
        if find_listing_id(conn, exchange, symbol) is not None:
            return False
    return typer.confirm(f"{exchange}:{symbol} is not listed yet. Create it?", default=False)


def _ingest(
    kind: str,
    file: Path,
    exchange: str,
    symbol: str,
    timeframe: str | None,
    refresh: bool,
    options: IngestOptions,
) -> None:
    with database() as conninfo:
        create = _may_create(conninfo, exchange, symbol, options.create)
        with _progress(f"ingest {kind}") as progress:
            report = ingest(
                conninfo,
                kind,
                file,
                exchange=exchange,
                symbol=symbol,
                timeframe=timeframe,
                create_listing=create,
                instrument_kind=options.kind,
                progress=progress,
            )
        _print_report(report, options.show)
        if kind == "candles" and refresh and report.written:
            done = rollups.refresh_rollups(conninfo, listing_id=report.listing_id)
            written = sum(r.buckets_written + r.buckets_recomputed for r in done)
            console.print(f"  rollups refreshed: {written} bucket(s)", style="dim")
    if report.rejected and not options.allow_rejects:
        err_console.print(
            f"[bold red]error:[/] {len(report.rejected)} row(s) rejected (the good rows were "
            "written; pass --allow-rejects to accept a partial file)",
            highlight=False,
        )
        raise typer.Exit(1)


def _options(create: bool, kind: str | None, allow_rejects: bool, show: int) -> IngestOptions:
    if kind is not None and kind.lower() not in KINDS:
        raise ValidationError("kind", f"must be one of {', '.join(KINDS)}", kind)
    return IngestOptions(create, kind and kind.lower(), allow_rejects, show)


SHOW = typer.Option(20, "--show-rejects", help="how many rejected rows to print")
CREATE = typer.Option(
    False,
    "--create",
    help="create the exchange, instrument and listing when missing (asked on a terminal)",
)
KIND = typer.Option(
    None,
    "--kind",
    "--calendar",
    help=f"kind of a new exchange/instrument: {', '.join(KINDS)} "
    "(default: the exchange's kind, crypto for a new exchange)",
)
ALLOW_REJECTS = typer.Option(
    False, "--allow-rejects", help="exit 0 even when rows were rejected (the summary lists them)"
)


@ingest_app.command("candles")
@handles_errors
def ingest_candles(
    file: Path = typer.Argument(
        ..., help="CSV or Parquet: time, open, high, low, close, volume[, vwap, trade_count]"
    ),
    exchange: str = EXCHANGE,
    symbol: str = SYMBOL,
    timeframe: str = TIMEFRAME,
    refresh: bool = typer.Option(
        True, "--refresh/--no-refresh", help="refresh the listing's rollups after"
    ),
    show: int = SHOW,
    create: bool = CREATE,
    kind: str = KIND,
    allow_rejects: bool = ALLOW_REJECTS,
) -> None:
    """Ingest OHLCV bars. Bad rows are reported with file, line and reason; good rows are
    kept, and the exit code is 1 when any row was rejected (unless --allow-rejects)."""
    options = _options(create, kind, allow_rejects, show)
    _ingest("candles", file, exchange, symbol, timeframe, refresh, options)


@ingest_app.command("daily-prices")
@handles_errors
def ingest_daily_prices(
    file: Path = typer.Argument(
        ...,
        help="CSV: date, open, high, low, close, volume[, ticker, amount, changes] "
        "(KRX Korean headers too)",
    ),
    ticker: str = typer.Option(None, "--ticker", help="ticker of a file without a ticker column"),
    show: int = SHOW,
    allow_rejects: bool = ALLOW_REJECTS,
) -> None:
    """Ingest daily prices (seed 004 market.daily_prices) for KRX or US equities. Tickers
    must be known instruments; amount and changes are derived where the file lacks them."""
    with database() as conninfo, connect(conninfo) as conn:
        report = ingest_daily_file(conn, file, ticker)
    console.print(f"daily prices: {report.summary()}", highlight=False)
    for reject in report.rejected[:show]:
        err_console.print(f"  {file}:{reject}", highlight=False)
    if report.rejected and not allow_rejects:
        raise typer.Exit(1)


@ingest_app.command("trades")
@handles_errors
def ingest_trades(
    file: Path = typer.Argument(
        ..., help="CSV or Parquet: time, trade_id, price, quantity (or amount), side"
    ),
    exchange: str = EXCHANGE,
    symbol: str = SYMBOL,
    show: int = SHOW,
    create: bool = CREATE,
    kind: str = KIND,
    allow_rejects: bool = ALLOW_REJECTS,
) -> None:
    """Ingest public trade prints (seed 003 transactions)."""
    options = _options(create, kind, allow_rejects, show)
    _ingest("trades", file, exchange, symbol, None, False, options)


@ingest_app.command("tickers")
@handles_errors
def ingest_tickers(
    file: Path = typer.Argument(..., help="CSV or Parquet with seed 003's ticker columns"),
    exchange: str = EXCHANGE,
    symbol: str = SYMBOL,
    show: int = SHOW,
    create: bool = CREATE,
    kind: str = KIND,
    allow_rejects: bool = ALLOW_REJECTS,
) -> None:
    """Ingest 24h ticker snapshots (seed 003 tickers)."""
    options = _options(create, kind, allow_rejects, show)
    _ingest("tickers", file, exchange, symbol, None, False, options)


@ingest_app.command("orderbooks")
@handles_errors
def ingest_orderbooks(
    file: Path = typer.Argument(
        ..., help="CSV or Parquet: time, bids, asks (JSON lists of [price, size])"
    ),
    exchange: str = EXCHANGE,
    symbol: str = SYMBOL,
    show: int = SHOW,
    create: bool = CREATE,
    kind: str = KIND,
    allow_rejects: bool = ALLOW_REJECTS,
) -> None:
    """Ingest order book snapshots (seed 003 orderbooks)."""
    options = _options(create, kind, allow_rejects, show)
    _ingest("orderbooks", file, exchange, symbol, None, False, options)


# ------------------------------------------------------------------------------ rollups
@ingest_app.command("funding-rates")
@handles_errors
def ingest_funding_rates(
    file: Path = typer.Argument(..., help="CSV: funding_time,funding_rate"),
    exchange: str = EXCHANGE,
    symbol: str = SYMBOL,
    settle: bool = typer.Option(
        False, "--settle", help="then book every due funding payment (FUNDING_FEE ledger rows)"
    ),
) -> None:
    """Ingest a perpetual's funding rates (settlement module); --settle books the payments."""
    _settlement_ingest("funding-rates", file, exchange, symbol, settle)


@ingest_app.command("mark-prices")
@handles_errors
def ingest_mark_prices(
    file: Path = typer.Argument(..., help="CSV: time,open[,high,low,close]"),
    exchange: str = EXCHANGE,
    symbol: str = SYMBOL,
    settle: bool = typer.Option(False, "--settle", help="then book every due funding payment"),
) -> None:
    """Ingest mark-price candles (funding is priced at the mark bar of the funding time)."""
    _settlement_ingest("mark-prices", file, exchange, symbol, settle)


@ingest_app.command("fx-rates")
@handles_errors
def ingest_fx_rates(
    file: Path = typer.Argument(..., help="CSV: ts,base_ccy,quote_ccy,rate"),
) -> None:
    """Ingest FX snapshots (valuation of accounts in their base currency)."""
    _settlement_ingest("fx-rates", file, None, None, False)


def _settlement_ingest(
    kind: str, file: Path, exchange: str | None, symbol: str | None, settle: bool
) -> None:
    from tradestore.trading import settlement

    with database() as conninfo:
        listing = _listing_id(conninfo, exchange, symbol)
        with connect(conninfo) as conn:
            if kind == "fx-rates":
                count = settlement.ingest_fx_rates(conn, file)
            elif kind == "funding-rates":
                count = settlement.ingest_funding_rates(conn, listing, file)  # type: ignore[arg-type]
            else:
                count = settlement.ingest_mark_prices(conn, listing, file)  # type: ignore[arg-type]
            conn.commit()
            console.print(f"{kind}: {count.inserted} inserted, {count.duplicates} already stored")
            if settle:
                done = settlement.settle_due_funding(conn, listing_id=listing)
                conn.commit()
                booked = sum(d.payments for d in done)
                waiting = sum(1 for d in done if d.status != "SETTLED")
                console.print(
                    f"funding: {booked} payments booked; {waiting} funding times wait for a mark price"
                )


@rollup_app.command("list")
@handles_errors
def rollup_list() -> None:
    """Rollup timeframes and every series' watermark."""
    with database() as conninfo:
        timeframes = rollups.rollup_timeframes(conninfo)
        status = rollups.rollup_status(conninfo)
    console.print(f"rollup timeframes: {', '.join(timeframes) or 'none'}")
    table = Table("listing", "timeframe", "source", "watermark", "invalidated buckets")
    for row in status:
        table.add_row(
            row["listing"],
            row["timeframe"],
            row["source"],
            str(row["watermark"] or "-"),
            str(row["invalidated"]),
        )
    console.print(table)


@rollup_app.command("add")
@handles_errors
def rollup_add(
    timeframe: str = typer.Argument(..., help="e.g. 5m, 4h, 1w"),
    keep: str = typer.Option(None, "--retention", help="e.g. 365d (default: keep forever)"),
) -> None:
    """Keep TIMEFRAME as materialized buckets (built from the coarsest finer series)."""
    with database() as conninfo:
        rollups.add_rollup_timeframe(conninfo, timeframe, retention.parse_retention(keep))
    console.print(f"rollup timeframe {timeframe} added; run `tradestore market rollup refresh`")


@rollup_app.command("drop")
@handles_errors
def rollup_drop(timeframe: str = typer.Argument(...)) -> None:
    """Stop keeping TIMEFRAME and drop its buckets."""
    with database() as conninfo:
        rollups.drop_rollup_timeframe(conninfo, timeframe)
    console.print(f"rollup timeframe {timeframe} dropped")


def _listing_id(conninfo: str, exchange: str | None, symbol: str | None) -> int | None:
    if exchange is None and symbol is None:
        return None
    if not exchange or not symbol:
        raise ValidationError("listing", "needs both --exchange and --symbol", exchange or symbol)
    with connect(conninfo) as conn:
        found = find_listing_id(conn, exchange, symbol)
        if found is None:
            raise ValidationError(
                "symbol", f"is not listed on {exchange}{_near(conn, exchange, symbol)}", symbol
            )
    return found


def _near(conn: object, exchange: str, symbol: str) -> str:
    matches = close_matches(conn, exchange, symbol)  # type: ignore[arg-type]
    return f" (close matches: {', '.join(matches)})" if matches else ""


@rollup_app.command("refresh")
@handles_errors
def rollup_refresh(
    exchange: str = typer.Option(None, "--exchange", "-x"),
    symbol: str = typer.Option(None, "--symbol", "-s"),
    timeframe: str = typer.Option(None, "--timeframe", "-t"),
) -> None:
    """Materialize new complete buckets and recompute invalidated ones (incremental)."""
    with database() as conninfo:
        listing = _listing_id(conninfo, exchange, symbol)
        with _progress("refresh rollups") as progress:
            done = rollups.refresh_rollups(conninfo, listing, timeframe, progress)
    written = sum(r.buckets_written for r in done)
    recomputed = sum(r.buckets_recomputed for r in done)
    console.print(f"{len(done)} series: {written} new bucket(s), {recomputed} recomputed")


# ------------------------------------------------------------------------------ queries
@market_app.command("query")
@handles_errors
def market_query(
    exchange: str = EXCHANGE,
    symbol: str = SYMBOL,
    timeframe: str = TIMEFRAME,
    start: str = typer.Option(None, "--from", help="first bucket (ISO-8601, UTC when no offset)"),
    end: str = typer.Option(None, "--to", help="end (exclusive)"),
    fill: bool = typer.Option(
        False, "--fill", help="forward-fill empty buckets (default: gaps stay gaps)"
    ),
    out: Path = typer.Option(None, "--out", "-o", help="write CSV or Parquet instead of printing"),
    limit: int = typer.Option(
        50,
        "--limit",
        min=1,
        help="bars to print (without --out): with --from the first N from that time, "
        "otherwise the latest N",
    ),
) -> None:
    """Bars at any timeframe: ingested, or rolled up (materialized plus the live tail).
    Printed oldest first: with --from, the first --limit bars from that time; without
    it, the latest --limit bars."""
    start_at, end_at = parse_optional_time(start, "from"), parse_optional_time(end, "to")
    with database() as conninfo:
        listing = _listing_id(conninfo, exchange, symbol)
        with connect(conninfo) as conn:
            check_served(conn, listing, timeframe)  # type: ignore[arg-type]
        frame = query.candles(
            conninfo,
            listing_id=listing,
            timeframe=timeframe,
            start=start_at,
            end=end_at,
            fill=fill,
        )
    if out is not None:
        query.export(frame, out)
        console.print(f"wrote {frame.height} bars to {out}")
        return
    shown = frame.head(limit) if start_at is not None else frame.tail(limit)
    table = Table(*frame.columns)
    for row in shown.iter_rows():
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
    which = "the first" if start_at is not None else "the latest"
    note = f" ({which} {shown.height} shown)" if shown.height < frame.height else ""
    console.print(f"{frame.height} bars{note}", style="dim")


# --------------------------------------------------------------------------- indicators
@indicators_app.command("compute")
@handles_errors
def indicators_compute(
    exchange: str = EXCHANGE,
    symbol: str = SYMBOL,
    timeframe: str = TIMEFRAME,
    full: bool = typer.Option(False, "--full", help="recompute every bar instead of only new ones"),
) -> None:
    """Compute and store indicators for the bars not computed yet (or all with --full)."""
    with database() as conninfo:
        listing = _listing_id(conninfo, exchange, symbol)
        assert listing is not None
        report = ind.update_indicators(conninfo, listing, timeframe, full=full)
    console.print(
        f"{report.rows_written} bar(s) written from {report.bars_read} read "
        f"({'full' if report.full else 'incremental'}), through {report.computed_through}; "
        f"{report.rows_per_second:,.0f} rows/s"
    )


@indicators_app.command("export")
@handles_errors
def indicators_export(
    out: Path = typer.Argument(..., help="CSV or Parquet file"),
    exchange: str = EXCHANGE,
    symbol: str = SYMBOL,
    timeframe: str = TIMEFRAME,
    long: bool = typer.Option(
        False, "--long", help="seed 002's long form instead of 003's wide form"
    ),
) -> None:
    """Export stored indicators."""
    with database() as conninfo:
        frame = query.indicators(
            conninfo,
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            form="long" if long else "wide",
        )
    query.export(frame, out)
    console.print(f"wrote {frame.height} rows to {out}")


# ---------------------------------------------------------------------- partitions, retention
@partitions_app.command("premake")
@handles_errors
def partitions_premake() -> None:
    """Make the partitions ahead of time for every partitioned table."""
    with database() as conninfo:
        made = retention.premake_partitions(conninfo)
    console.print(f"{made} partition(s) made")


@retention_app.command("show")
@handles_errors
def retention_show() -> None:
    """Retention and partitions of every market table."""
    with database() as conninfo:
        policies = retention.retention_policies(conninfo)
    table = Table("table", "partition", "made ahead", "retention", "imported", "partitions")
    for p in policies:
        table.add_row(
            p["table"],
            p["unit"],
            str(p["premake"]),
            str(p["retention"] or "forever"),
            "expires" if p["includes_imported"] else "kept",
            str(p["partitions"]),
        )
    console.print(table)


@retention_app.command("set")
@handles_errors
def retention_set(
    table: str = typer.Argument(
        ..., help="candles, tickers, orderbooks, trades, indicators, daily_prices, rollups"
    ),
    keep: str = typer.Argument(..., help="e.g. 30d, 12w, or none (forever)"),
    timeframe: str = typer.Option(
        None, "--timeframe", "-t", help="the rollup timeframe (rollups only)"
    ),
    imported: bool = typer.Option(
        None,
        "--include-imported/--live-only",
        help="whether history loaded with `tradestore ingest` expires too (default: kept; "
        "unchanged when not given)",
    ),
) -> None:
    """Set how long TABLE keeps its rows. Retention applies to data collected live;
    imported history is kept unless --include-imported."""
    with database() as conninfo:
        name = retention.set_retention(
            conninfo, table, retention.parse_retention(keep), timeframe, include_imported=imported
        )
    scope = {None: "", True: " (imported history included)", False: " (live data only)"}
    console.print(f"{name}: retention {keep}{scope[imported]}")


@retention_app.command("apply")
@handles_errors
def retention_apply(
    dry_run: bool = typer.Option(False, "--dry-run", help="only list what would be dropped"),
) -> None:
    """Drop every partition whose rows are all older than its table's retention."""
    with database() as conninfo:
        dropped = retention.apply_retention(conninfo, dry_run=dry_run)
    for d in dropped:
        if d.imported_kept:
            console.print(
                f"{'would keep' if dry_run else 'kept'} {d.partition} (rows before "
                f"{d.upper_bound}): it holds imported history, which retention keeps"
            )
            continue
        console.print(
            f"{'would drop' if dry_run else 'dropped'} {d.partition} (rows before {d.upper_bound})"
        )
    gone = sum(not d.imported_kept for d in dropped)
    console.print(f"{gone} partition(s) {'expired' if dry_run else 'dropped'}")
