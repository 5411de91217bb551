"""Exchange commands: `route set|run` (the order router) and `fills sync` (one fill sync
pass, then a balance check). CCXT is imported only when one of them runs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import typer

from tradestore.cli.common import console, database, fail, handles_errors, settings
from tradestore.cli.trading import fills_app
from tradestore.db.connect import connect
from tradestore.identity.secretbox import SecretBox

route_app = typer.Typer(
    help="Route orders to exchanges: set an account's mode and key, run the router.",
    no_args_is_help=True,
)

API_URL = typer.Option(
    None,
    "--api-url",
    help="send the exchange's REST calls to this base URL instead (a local proxy or fake)",
    hidden=True,
)


@contextmanager
def _conn() -> Iterator[psycopg.Connection[Any]]:
    with database() as conninfo, connect(conninfo, autocommit=True) as conn:
        yield conn


def _factory(
    conn: psycopg.Connection[Any],
    api_url: str | None,
    account_id: int | None,
    ws_url: str | None = None,
) -> Any:
    from tradestore.trading.exchange.accounts import ConnectorFactory, routing_accounts

    urls: dict[str, str] = {}
    ws_urls: dict[str, str] = {}
    if api_url or ws_url:
        for a in routing_accounts(conn, account_id):
            if api_url:
                urls[a.exchange] = api_url
            if ws_url:
                ws_urls[a.exchange] = ws_url
    return ConnectorFactory(SecretBox.from_settings(settings()), base_urls=urls, ws_urls=ws_urls)


@route_app.command("set")
@handles_errors
def route_set(
    account: int = typer.Option(..., "--account", "-a", help="account id"),
    mode: str = typer.Option(
        ...,
        "--mode",
        help="off (books only), sim (tradestore's paper exchange), paper (testnet), live",
    ),
    key: int | None = typer.Option(None, "--key", help="API key id (tradestore apikeys list)"),
) -> None:
    """Set whether an account's orders go to its exchange, and with which API key."""
    from tradestore.trading.exchange.accounts import set_routing

    with _conn() as conn:
        set_routing(conn, account, mode, key)
    console.print(f"account {account}: trading mode {mode}")


@route_app.command("run")
@handles_errors
def route_run(
    once: bool = typer.Option(False, "--once", help="one pass, then exit"),
    account: list[int] | None = typer.Option(None, "--account", "-a", help="only these accounts"),
    api_url: str | None = API_URL,
) -> None:
    """Run the order router until Ctrl-C (sends, cancels, retries, crash recovery)."""
    from tradestore.trading.exchange.router import Router

    with _conn() as conn:
        router = Router(conn, _factory(conn, api_url, None), account_ids=account or None)
        if once:
            result = router.run_once()
            console.print(
                f"sent {len(result.sent)}, found {len(result.found)}, rejected "
                f"{len(result.rejected)}, canceled {len(result.canceled)}, retried "
                f"{len(result.retried)}, failed {len(result.failed)}"
            )
            if result.halted_accounts:
                raise fail(f"authentication failed for account(s) {result.halted_accounts}")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        console.print("routing orders; Ctrl-C to stop")
        try:
            router.run_forever(stop)
        except KeyboardInterrupt:
            stop.set()


def _follow_fills(
    conn: psycopg.Connection[Any],
    account: Any,
    factory: Any,
    connector: Any,
    rest: bool,
    interval: float,
) -> None:
    import signal
    import threading

    from tradestore.trading.exchange.fillsync import FillFollower

    stream = None if rest else factory.stream_for_account(conn, account)
    follower = FillFollower(conn, account, connector, stream)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    how = "the user stream" if follower.streaming else "REST polling"
    console.print(f"following the fills of account {account.account_id} ({how}); Ctrl-C to stop")
    try:
        while not stop.is_set():
            report = follower.run_once()
            for done in (report.caught_up, report.streamed):
                if done is not None and done.applied:
                    console.print(f"{len(done.applied)} new fill(s)")
            for failure in report.failed:
                console.print(f"[yellow]{failure}[/]")
            stop.wait(interval)
    except KeyboardInterrupt:
        pass
    finally:
        follower.close()


@fills_app.command("sync")
@handles_errors
def fills_sync(
    account: int = typer.Option(..., "--account", "-a", help="account id"),
    check: bool = typer.Option(True, "--check/--no-check", help="compare balances afterwards"),
    follow: bool = typer.Option(False, "--follow", help="keep following: the exchange's user "
                                "stream where it has one (REST catch-up on every reconnect), "
                                "REST polling otherwise; until Ctrl-C"),
    rest: bool = typer.Option(False, "--rest", help="with --follow: poll over REST only"),
    interval: float = typer.Option(1.0, "--interval", help="with --follow: seconds between passes"),
    api_url: str | None = API_URL,
    ws_url: str | None = typer.Option(None, "--ws-url", hidden=True,
                                      help="send the exchange's websockets here (a local fake)"),
) -> None:  # fmt: skip
    """One fill sync pass for a routing account: the exchange's trades into the books."""
    from tradestore.trading.exchange.accounts import routing_accounts
    from tradestore.trading.exchange.fillsync import check_balances, sync_fills

    with _conn() as conn:
        found = routing_accounts(conn, account)
        if not found:
            raise fail(f"account {account} does not route to an exchange (tradestore route set)")
        factory = _factory(conn, api_url, account, ws_url)
        connector = factory.for_account(conn, found[0])
        if follow:
            _follow_fills(conn, found[0], factory, connector, rest or bool(api_url and not ws_url),
                          interval)  # fmt: skip
            return
        report = sync_fills(conn, found[0], connector)
        console.print(
            f"{len(report.applied)} new fill(s), {len(report.duplicates)} already recorded, "
            f"{len(report.deferred)} waiting for the router ({', '.join(report.symbols) or '-'})"
        )
        if check:
            balances = check_balances(conn, found[0], connector)
            drift = [d for d in balances.differences if d.kind == "BALANCE_MISMATCH"]
            for d in drift:
                console.print(f"[yellow]drift[/] {d.key}: books {d.ours}, exchange {d.theirs}")
            if drift:
                raise typer.Exit(1)
