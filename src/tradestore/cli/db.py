"""`tradestore db ...` and `tradestore modules ...`: schema and Plus modules."""

from __future__ import annotations

import os
import subprocess

import typer
from rich.table import Table

from tradestore.cli.common import console, database, fail, handles_errors, settings
from tradestore.db import migrate
from tradestore.db.connect import session_conninfo
from tradestore.db.server import EmbeddedPostgres
from tradestore.ops import backup, maintenance

db_app = typer.Typer(help="Schema migrations (Alembic) and database access.", no_args_is_help=True)
modules_app = typer.Typer(
    help="Plus modules (seed 001 §5): list, enable, disable.", no_args_is_help=True
)


@db_app.command("upgrade")
@handles_errors
def db_upgrade(
    no_backup: bool = typer.Option(
        False,
        "--no-backup",
        help="skip the full backup taken before migrating a database with data",
    ),
) -> None:
    """Apply every pending core revision (and revisions of enabled modules).

    A database that holds data is backed up first (a full dump, verified), and a running
    `up` refuses writes until the migration ends."""
    with database() as conninfo:
        pending = migrate.pending_revisions(conninfo)
        if not pending:
            console.print("schema is up to date")
            return
        with maintenance.hold(conninfo, "db upgrade"):
            _backup_before_upgrade(conninfo, skip=no_backup)
            applied = migrate.upgrade(conninfo)
    console.print(f"applied {len(applied)} revision(s): {', '.join(applied)}")


def _backup_before_upgrade(conninfo: str, *, skip: bool) -> None:
    holding = backup.holding_data(conninfo)
    if not holding:
        return  # nothing to lose: a new or empty database
    if skip:
        console.print("[yellow]no backup taken[/] (--no-backup); the database holds data")
        return
    info = backup.full_backup(conninfo, settings().backup_root)
    try:
        backup.check_dump(info.path)
    except backup.BackupError as exc:
        raise fail(
            f"the backup before upgrading could not be verified ({exc}); nothing was migrated. "
            "Fix the backup or pass --no-backup to migrate without one"
        ) from None
    console.print(f"backed up to {info.path} ({info.size_bytes:,} bytes, verified)")


@db_app.command("downgrade")
@handles_errors
def db_downgrade(
    revision: str = typer.Argument(..., help="target revision, e.g. 0010_operations, or 'base'"),
    force: bool = typer.Option(
        False, "--force", help="drop tables that hold data (a zz_ backup copy is kept)"
    ),
) -> None:
    """Downgrade to REVISION. Refused while dropped tables hold data, unless --force."""
    with database() as conninfo:
        migrate.downgrade(conninfo, revision, force=force)
        current = migrate.current_revisions(conninfo)
    console.print(f"now at: {', '.join(sorted(current)) or 'base (empty)'}")


@db_app.command("status")
@handles_errors
def db_status() -> None:
    """Applied and pending revisions, and the enabled Plus modules."""
    with database() as conninfo:
        current = sorted(migrate.current_revisions(conninfo))
        pending = migrate.pending_revisions(conninfo)
        enabled = migrate.enabled_modules(conninfo)
    console.print(f"current:  {', '.join(current) or 'base (empty database)'}")
    console.print(f"pending:  {', '.join(pending) or 'none'}")
    console.print(f"modules:  {', '.join(enabled) or 'none (Lite core only)'}")
    if pending:
        raise typer.Exit(3)  # scripts can tell "not up to date" apart from success


@db_app.command("url")
@handles_errors
def db_url() -> None:
    """Print the connection URL (the embedded server must be running, e.g. under `up`)."""
    with database() as conninfo:
        console.print(conninfo, highlight=False, soft_wrap=True)


@db_app.command("shell")
@handles_errors
def db_shell() -> None:
    """Open psql (bundled with the embedded server) with tradestore's search_path."""
    with database() as conninfo:
        code = subprocess.call(
            [str(EmbeddedPostgres.bin("psql")), session_conninfo(conninfo)], env=os.environ.copy()
        )
    raise typer.Exit(code)


@modules_app.command("list")
@handles_errors
def modules_list() -> None:
    """Every Plus module with its state."""
    with database() as conninfo:
        statuses = migrate.module_status(conninfo)
    table = Table("module", "seed", "state", "rows", "what it adds")
    for s in statuses:
        state = (
            "[green]enabled[/]"
            if s.enabled
            else ("disabled" if s.available else "[yellow]unavailable[/]")
        )
        table.add_row(s.module.name, s.module.seed_section, state, str(s.rows), s.module.summary)
    console.print(table)


@modules_app.command("enable")
@handles_errors
def modules_enable(
    names: list[str] = typer.Argument(None, help="modules to enable"),
    all_: bool = typer.Option(False, "--all", help="enable every module this server supports"),
    restore: bool = typer.Option(False, "--restore", help="refill from the newest zz_ backup"),
) -> None:
    """Enable Plus modules (the Lite core is always on)."""
    with database() as conninfo:
        if all_:
            available = {s.module.name for s in migrate.module_status(conninfo) if s.available}
            skipped = [n for n in migrate.MODULES if n not in available]
            names = [n for n in migrate.MODULES if n in available]
            for name in skipped:
                console.print(f"[yellow]skipped {name}[/]: not available on this server")
        if not names:
            raise fail("name at least one module, or pass --all", 2)
        enabled = migrate.enable_modules(conninfo, names, restore=restore)
    console.print(f"enabled: {', '.join(enabled) or 'nothing new (already enabled)'}")


@modules_app.command("disable")
@handles_errors
def modules_disable(
    names: list[str] = typer.Argument(..., help="modules to disable"),
    force: bool = typer.Option(
        False, "--force", help="disable even if it holds data (kept in zz_ backups)"
    ),
) -> None:
    """Disable Plus modules. Refused while a module holds data, unless --force."""
    with database() as conninfo:
        disabled = migrate.disable_modules(conninfo, names, force=force)
    console.print(f"disabled: {', '.join(disabled) or 'nothing (not enabled)'}")
