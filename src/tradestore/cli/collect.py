"""`tradestore collect` (live market data into the database) and `tradestore paper run`
(the paper exchange's matcher as a worker). CCXT is imported only when they run."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import typer

from tradestore.cli.common import console, database, fail, handles_errors, settings
from tradestore.db.connect import connect

paper_app = typer.Typer(
    help="tradestore's paper exchange: fills the orders of accounts in trading mode 'sim'.",
    no_args_is_help=True,
)


@contextmanager
def _conn() -> Iterator[psycopg.Connection[Any]]:
    with database() as conninfo, connect(conninfo, autocommit=True) as conn:
        yield conn


def _until_stopped(step: Callable[[], None], interval: float, what: str) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"{what}; Ctrl-C to stop")
    try:
        while not stop.is_set():
            started = time.monotonic()
            step()
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        stop.set()


collect_app = typer.Typer(
    help="Collect live market data now (options), or manage the collectors `up` runs "
    "(add, list, remove).",
)


@collect_app.callback(invoke_without_command=True)
@handles_errors
def collect_command(
    ctx: typer.Context,
    exchange: str | None = typer.Option(None, "--exchange", "-x", help="exchange code (binance, upbit ...)"),
    symbols: list[str] | None = typer.Option(None, "--symbol", "-s", help="CCXT symbol, e.g. BTC/USDT; repeat"),
    candles: str | None = typer.Option(None, "--candles", help="collect closed bars at this timeframe"),
    tickers: bool = typer.Option(False, "--tickers", help="collect 24h tickers"),
    orderbook: int | None = typer.Option(None, "--orderbook", help="collect book snapshots of DEPTH levels"),
    trades: bool = typer.Option(False, "--trades", help="collect public trades"),
    interval: float = typer.Option(1.0, "--interval", help="seconds between polls"),
    once: bool = typer.Option(False, "--once", help="one pass (backfill included), then exit"),
    rest: bool = typer.Option(False, "--rest", help="poll over REST even what the exchange "
                              "streams over its websocket"),
    api_url: str | None = typer.Option(None, "--api-url", hidden=True,
                                       help="send the exchange's REST calls here (a local fake)"),
    ws_url: str | None = typer.Option(None, "--ws-url", hidden=True,
                                      help="send the exchange's websockets here (a local fake)"),
) -> None:  # fmt: skip
    """Collect live market data into the database (gaps backfilled first)."""
    if ctx.invoked_subcommand is not None:
        return
    if not exchange or not symbols:
        raise fail("collect needs --exchange and at least one --symbol (or: add, list, remove)")
    from tradestore.cache.client import existing_cache
    from tradestore.market.collect.collector import Collector
    from tradestore.market.collect.feed import FeedSpec, MarketSource
    from tradestore.market.collect.stream import stream_source

    specs = []
    for symbol in symbols:
        if candles:
            specs.append(FeedSpec(exchange, symbol, "candles", timeframe=candles))
        if trades:
            specs.append(FeedSpec(exchange, symbol, "trades"))
        if orderbook is not None:
            specs.append(FeedSpec(exchange, symbol, "orderbook", depth=orderbook))
        if tickers:
            specs.append(FeedSpec(exchange, symbol, "ticker"))
    if not specs:
        raise fail(
            "nothing to collect: pass --candles TF, --trades, --orderbook DEPTH or --tickers"
        )
    cache = existing_cache(settings())
    try:
        with _conn() as conn:
            # One pass (--once) is a poll; REST redirected (--api-url) without a websocket
            # address keeps the websocket off too.
            stream = None if once else stream_source(exchange, rest=rest, api_url=api_url,
                                                     ws_url=ws_url)  # fmt: skip
            collector = Collector(
                conn, MarketSource(exchange, api_url), specs, cache=cache, stream=stream
            )
            with collector:

                def step() -> None:
                    report = collector.run_once()
                    flush = report.flush
                    stored = dict(flush.stored) if flush else {}
                    if once or stored or report.failed or report.stale:
                        console.print(
                            f"stored {stored or 'nothing'}"
                            + (f"; backfilled {report.backfilled}" if report.backfilled else "")
                            + (f"; failed {report.failed}" if report.failed else "")
                            + (f"; stale {report.stale}" if report.stale else "")
                        )

                if once:
                    step()
                else:
                    _until_stopped(step, interval, f"collecting {len(specs)} feeds")
    finally:
        if cache is not None:
            cache.close()


@paper_app.command("run")
@handles_errors
def paper_run(
    account: int | None = typer.Option(None, "--account", "-a", help="only this account"),
    interval: float = typer.Option(1.0, "--interval", help="seconds between passes"),
    once: bool = typer.Option(False, "--once", help="one pass, then exit"),
) -> None:
    """Fill the open orders of 'sim' accounts from the collected market data."""
    from tradestore.trading.exchange.paper import PaperExchange

    with _conn() as conn:
        paper = PaperExchange(conn)

        def step() -> None:
            report = paper.run_once(account)
            if once or report.fills or report.canceled:
                console.print(
                    f"paper: {report.orders} open orders, {report.fills} fills"
                    + (f", remainder canceled: {report.canceled}" if report.canceled else "")
                )

        if once:
            step()
        else:
            _until_stopped(step, interval, "paper exchange running")


@collect_app.command("add")
@handles_errors
def collect_add(
    exchange: str = typer.Option(..., "--exchange", "-x", help="exchange code"),
    symbols: list[str] = typer.Option(..., "--symbol", "-s", help="CCXT symbol; repeat"),
    candles: str | None = typer.Option(None, "--candles", help="closed bars at this timeframe"),
    tickers: bool = typer.Option(False, "--tickers"),
    orderbook: int | None = typer.Option(None, "--orderbook", help="book snapshots of DEPTH levels"),
    trades: bool = typer.Option(False, "--trades"),
    interval: str = typer.Option("1", "--interval", help="seconds between polls"),
    disabled: bool = typer.Option(False, "--disabled", help="store it, do not run it yet"),
    rest: bool = typer.Option(False, "--rest", help="poll over REST even what the exchange streams"),
) -> None:  # fmt: skip
    """Store a collector for `up` to run (and restart) from now on."""
    from tradestore.cli.common import parse_decimal
    from tradestore.market.collect.feeds import add_collector

    kinds = [k for k, on in (("candles", candles), ("trades", trades),
                             ("orderbook", orderbook is not None), ("ticker", tickers)) if on]  # fmt: skip
    if not kinds:
        raise fail(
            "nothing to collect: pass --candles TF, --trades, --orderbook DEPTH or --tickers"
        )
    with _conn() as conn:
        collector_id = add_collector(
            conn, exchange, symbols, kinds, timeframe=candles, depth=orderbook,
            interval_s=parse_decimal("interval", interval) or Decimal(1), enabled=not disabled,
            transport="rest" if rest else "auto",
        )  # fmt: skip
    console.print(
        f"collector {collector_id} added: {exchange} {', '.join(symbols)} ({', '.join(kinds)})"
    )


@collect_app.command("list")
@handles_errors
def collect_list() -> None:
    """The collectors `up` runs."""
    from tradestore.cli.common import make_table
    from tradestore.market.collect.feeds import list_collectors

    with _conn() as conn:
        found = list_collectors(conn)
    table = make_table(
        ["id", "exchange", "symbols", "kinds", "tf", "depth", "interval s", "transport", "enabled"]
    )
    for r in found:
        table.add_row(str(r.id), r.exchange, ",".join(r.symbols), ",".join(r.kinds),
                      r.timeframe or "", str(r.depth or ""), str(r.interval_s), r.transport,
                      "yes" if r.enabled else "no")  # fmt: skip
    console.print(table)


@collect_app.command("remove")
@handles_errors
def collect_remove(collector_id: int = typer.Argument(...)) -> None:
    """Delete a collector (`up` stops it within its next check)."""
    from tradestore.market.collect.feeds import remove_collector

    with _conn() as conn:
        remove_collector(conn, collector_id)
    console.print(f"collector {collector_id} removed")


def register(app: typer.Typer) -> None:
    app.add_typer(collect_app, name="collect")
    app.add_typer(paper_app, name="paper")
