"""The `tradestore` command."""

from __future__ import annotations

from typing import Any

import typer

from tradestore import __version__
from tradestore.cli import collect, notify, webhooks
from tradestore.cli.backtest import app as backtest_app
from tradestore.cli.backtest import strategies_app
from tradestore.cli.brain import brain_app
from tradestore.cli.common import OUTPUT, console, handles_errors, settings
from tradestore.cli.db import db_app, modules_app
from tradestore.cli.events import app as events_app
from tradestore.cli.exchange import route_app
from tradestore.cli.identity import apikeys_app, users_app
from tradestore.cli.live import halt_command, resume_command, run_command, runners_app
from tradestore.cli.market import ingest_app, market_app
from tradestore.cli.ops import backup_app, ops_app
from tradestore.cli.trading import (
    accounts_app,
    exchanges_app,
    fills_app,
    instruments_app,
    ledger_app,
    orders_app,
    positions_app,
    reconcile_app,
)
from tradestore.ops.scheduler import default_jobs, make_service
from tradestore.ops.supervise import DatabaseLost, DatabaseSupervisor
from tradestore.ops.up import prepare, run_services, stop_on_signals

app = typer.Typer(
    name="tradestore",
    help="Self-hosted trading data platform: PostgreSQL at the heart, embedded by default.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    exact: bool = typer.Option(
        False, "--exact", help="print decimals at full stored precision (default: 7 digits)"
    ),
    wide: bool = typer.Option(
        False, "--wide", help="tables show every column, unwrapped (default: fit the terminal)"
    ),
) -> None:
    """Self-hosted trading data platform: PostgreSQL at the heart, embedded by default."""
    OUTPUT.exact = exact
    OUTPUT.wide = wide


app.add_typer(db_app, name="db")
app.add_typer(runners_app, name="runners")
app.command("run")(run_command)
app.command("halt")(halt_command)
app.command("resume")(resume_command)
app.add_typer(modules_app, name="modules")
app.add_typer(users_app, name="users")
app.add_typer(apikeys_app, name="apikeys")
app.add_typer(accounts_app, name="accounts")
app.add_typer(exchanges_app, name="exchanges")
app.add_typer(instruments_app, name="instruments")
app.add_typer(orders_app, name="orders")
app.add_typer(fills_app, name="fills")
app.add_typer(positions_app, name="positions")
app.add_typer(ledger_app, name="ledger")
app.add_typer(reconcile_app, name="reconcile")
app.add_typer(route_app, name="route")
app.add_typer(ingest_app, name="ingest")
app.add_typer(market_app, name="market")
app.add_typer(events_app, name="events")
app.add_typer(strategies_app, name="strategies")
app.add_typer(backtest_app, name="backtest")
app.add_typer(notify.app, name="notify")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(notify.worker_app, name="worker")
app.command("serve")(notify.serve_command)
app.add_typer(backup_app, name="backup")
app.add_typer(ops_app, name="ops")
app.add_typer(brain_app, name="brain")
collect.register(app)


@app.command()
@handles_errors
def up(
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="keep running until Ctrl-C (default), or set up and exit"
    ),
) -> None:
    """Start the database (embedded unless DATABASE_URL is set), migrate, and run."""
    config = settings()
    runtime = prepare(config)
    where = (
        f"embedded PostgreSQL in {config.TRADESTORE_HOME}" if runtime.embedded else "DATABASE_URL"
    )
    console.print(f"[green]database ready[/] ({where})")
    console.print(f"  schema: {len(runtime.applied)} revision(s) applied now, up to date")
    console.print(f"  modules: {', '.join(runtime.enabled_modules) or 'Lite core only'}")
    console.print(f"  partitions made ahead: {runtime.partitions_made}")
    console.print(f"  connect: {runtime.conninfo}", highlight=False, soft_wrap=True)
    if not wait:
        return
    from tradestore.api.config import ApiSettings
    from tradestore.api.server import urls

    api = ApiSettings()
    for name, url in urls(api.API_HOST, api.API_PORT).items():
        console.print(f"  {name}: {url}", highlight=False)
    console.print("running; press Ctrl-C to stop")
    stop_on_signals(runtime)
    supervisor = DatabaseSupervisor(runtime.conninfo, runtime.server)
    code = 0
    try:
        run_services(runtime, config, services=services(runtime.embedded), supervisor=supervisor)
    except KeyboardInterrupt:
        pass
    except (DatabaseLost, RuntimeError) as exc:
        runtime.stop_reason = runtime.stop_reason or str(exc)
        code = 1
    stopped_db = runtime.server.stop() if runtime.server is not None else False
    # Say what happened and why: a service manager's journal shows this line last.
    reason = runtime.stop_reason or "stop requested"
    tail = "; embedded PostgreSQL stopped" if stopped_db else ""
    console.print(f"stopped: {reason}{tail}", highlight=False)
    if code:
        raise typer.Exit(code)


def services(embedded: bool) -> dict[str, Any]:
    """What `up` runs beside the database: the API server (webhooks, health), the cache
    invalidation listener, the notification worker, the operational schedule and the
    fleet (configured runners and collectors, the router, the paper exchange)."""
    from tradestore.api.server import service as api_service
    from tradestore.cache.invalidation import service as cache_service
    from tradestore.notify.worker import service as notify_service
    from tradestore.ops.fleet import fleet_service

    config = settings()
    return {
        "api": api_service,
        "cache-invalidation": cache_service,
        "notify-worker": notify_service,
        "scheduler": make_service(default_jobs(config, embedded=embedded)),
        # The runners and collectors configured in the database, the router and the
        # paper exchange when accounts need them (tradestore.ops.fleet).
        "fleet": fleet_service,
    }


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"tradestore {__version__}")


if __name__ == "__main__":
    app()
