"""`tradestore run`, `runners list|add|remove`, `halt`, `resume`: live strategy runners
(docs/live.md)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import typer

from tradestore.cli.common import console, database, fail, handles_errors, make_table, parse_decimal
from tradestore.db.connect import connect
from tradestore.strategy.live import store

__all__ = ["halt_command", "resume_command", "run_command", "runners_app"]

runners_app = typer.Typer(
    help="Configured strategy runners (started by `up`).", no_args_is_help=True
)


@contextmanager
def _conn() -> Iterator[psycopg.Connection[Any]]:
    with database() as conninfo, connect(conninfo, autocommit=True) as conn:
        yield conn


def _limits(**values: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: parse_decimal(k, v) for k, v in values.items() if k != "max_open_orders"
    }
    if values.get("max_open_orders") is not None:
        out["max_open_orders"] = int(values["max_open_orders"])  # type: ignore[arg-type]
    return out


def _mode(paper: bool, live: bool, simulated: bool) -> str:
    if paper + live + simulated != 1:
        raise fail("give exactly one of --paper, --live, --simulated")
    return "live" if live else "simulated" if simulated else "paper"


def _confirm_live(yes: bool) -> None:
    """Live trading spends real money: it needs --live and a yes typed on a terminal."""
    if not sys.stdin.isatty():
        raise fail("live mode needs a confirmation on a terminal (stdin is not a terminal)")
    answer = typer.prompt("This runner will place REAL orders. Type 'live' to confirm")
    if answer.strip() != "live":
        raise fail("not confirmed")


@runners_app.command("add")
@handles_errors
def runners_add(
    strategy: str = typer.Argument(..., help="A registered strategy."),
    account: int = typer.Option(..., "--account", "-a"),
    symbol: list[str] = typer.Option(..., "--symbol", "-s"),
    timeframe: str = typer.Option("1m", "--timeframe", "-t"),
    paper: bool = typer.Option(False, "--paper"),
    live: bool = typer.Option(False, "--live"),
    simulated: bool = typer.Option(False, "--simulated", help="Fill in process (no exchange)."),
    size_pct: str | None = typer.Option(None, "--size-pct"),
    fee: str | None = typer.Option(None, "--fee"),
    max_position: str | None = typer.Option(None, "--max-position"),
    max_order_notional: str | None = typer.Option(None, "--max-order-notional"),
    max_open_orders: str | None = typer.Option(None, "--max-open-orders"),
    daily_loss_limit: str | None = typer.Option(None, "--daily-loss-limit"),
) -> None:
    mode = _mode(paper, live, simulated)
    if mode == "live":
        _confirm_live(False)
    with _conn() as conn:
        runner_id = store.add_runner(
            conn, strategy, account, symbol, timeframe=timeframe, mode=mode,
            position_size_pct=parse_decimal("size_pct", size_pct),
            fee_rate=parse_decimal("fee", fee),
            limits=_limits(max_position_notional=max_position,
                           max_order_notional=max_order_notional,
                           max_open_orders=max_open_orders, daily_loss_limit=daily_loss_limit),
        )  # fmt: skip
    console.print(f"runner {runner_id} added ({mode})")


@runners_app.command("list")
@handles_errors
def runners_list() -> None:
    with _conn() as conn:
        rows = store.list_runners(conn)
    table = make_table(["id", "strategy", "account", "symbols", "tf", "mode", "state",
                        "last bar", "lag ms", "holder", "last message"])  # fmt: skip
    for r in rows:
        table.add_row(str(r.id), r.strategy, str(r.account_id), ",".join(r.symbols), r.timeframe,
                      r.mode, r.state, str(r.last_bar_at or ""), str(r.last_lag_ms or ""),
                      r.lease_holder or "", r.last_message or "")  # fmt: skip
    console.print(table)


@runners_app.command("remove")
@handles_errors
def runners_remove(runner_id: int = typer.Argument(...)) -> None:
    with _conn() as conn:
        store.remove_runner(conn, runner_id)
    console.print(f"runner {runner_id} removed")


@handles_errors
def run_command(
    strategy: str = typer.Argument(..., help="A registered strategy."),
    account: int = typer.Option(..., "--account", "-a"),
    symbol: list[str] = typer.Option(..., "--symbol", "-s"),
    timeframe: str = typer.Option("1m", "--timeframe", "-t"),
    paper: bool = typer.Option(False, "--paper"),
    live: bool = typer.Option(False, "--live"),
    simulated: bool = typer.Option(False, "--simulated"),
    size_pct: str | None = typer.Option(None, "--size-pct"),
) -> None:
    """Run a strategy on closed bars as they are stored, until Ctrl-C (adds the runner
    when the strategy and account have none)."""
    from tradestore.strategy.live.runner import LiveRunner

    mode = _mode(paper, live, simulated)
    if mode == "live":
        _confirm_live(False)
    with _conn() as conn:
        found = [r for r in store.list_runners(conn)
                 if r.strategy == strategy and r.account_id == account]  # fmt: skip
        if found:
            runner_id = found[0].id
            if found[0].mode != mode:
                raise fail(f"runner {runner_id} is configured as {found[0].mode}, not {mode}")
        else:
            runner_id = store.add_runner(conn, strategy, account, symbol, timeframe=timeframe,
                                         mode=mode, position_size_pct=parse_decimal(
                                             "size_pct", size_pct))  # fmt: skip
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        console.print(f"runner {runner_id} ({mode}) waiting for bars; Ctrl-C stops it")
        LiveRunner(conn, runner_id).run(stop, heartbeat=1.0)


@handles_errors
def halt_command(reason: str | None = typer.Option(None, "--reason")) -> None:
    """Stop every runner and cancel every open order; new orders are refused until
    `resume` (orders that reduce a position are still accepted)."""
    with _conn() as conn:
        canceled = store.halt(conn, reason)
    console.print(f"trading halted; {canceled} open orders canceled")


@handles_errors
def resume_command(runner: int | None = typer.Option(None, "--runner")) -> None:
    """Undo `halt` (or resume one runner halted by its own limit)."""
    with _conn() as conn:
        resumed = store.resume(conn, runner)
    console.print(f"resumed; {resumed} runners running again")
