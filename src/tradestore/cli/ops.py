"""`tradestore backup ...` and `tradestore ops ...`: backups, recovery, monitoring."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import psycopg
import typer
from psycopg.rows import dict_row
from rich.table import Table

from tradestore.cli.common import console, database, fail, handles_errors, settings
from tradestore.ops import backup, monitoring, offsite

backup_app = typer.Typer(
    help="Backups, restore and point-in-time recovery (seed 004 §6).", no_args_is_help=True
)
ops_app = typer.Typer(help="Monitoring and maintenance (seed 004 §7).", no_args_is_help=True)


def _root(root: Path | None) -> Path:
    return root or settings().backup_root


@backup_app.command("full")
@handles_errors
def backup_full(
    schema: list[str] = typer.Option(
        None, "--schema", "-n", help="only these schemas (partial backup)"
    ),
    root: Path = typer.Option(None, help="backup root (default TRADESTORE_HOME/backups)"),
) -> None:
    """A logical dump (pg_dump -F c -b) with a metadata.json of counts and checksum."""
    with database() as conninfo:
        info = backup.full_backup(conninfo, _root(root), schemas=schema or None)
    console.print(f"wrote {info.path} ({info.size_bytes:,} bytes)")


@backup_app.command("base")
@handles_errors
def backup_base(
    incremental: bool = typer.Option(False, help="incremental on top of the newest base backup"),
    root: Path = typer.Option(None, help="backup root (default TRADESTORE_HOME/backups)"),
) -> None:
    """A physical base backup (pg_basebackup), the starting point of PITR."""
    root = _root(root)
    parent = None
    if incremental:
        parent = backup.newest_base(root)
        if parent is None:
            raise fail("no base backup to build an incremental on; run `backup base` first")
    with database() as conninfo:
        info = backup.base_backup(conninfo, root, incremental_from=parent)
    console.print(f"wrote {info.kind} backup {info.path} ({info.size_bytes:,} bytes)")


@backup_app.command("list")
@handles_errors
def backup_list(root: Path = typer.Option(None, help="backup root")) -> None:
    """Every backup with its kind, time and size."""
    table = Table("kind", "created", "bytes", "path")
    for item in backup.list_backups(_root(root)):
        table.add_row(str(item.get("kind")), str(item.get("created_at")), f"{item.get('size_bytes', 0):,}",
                      str(item.get("path")))  # fmt: skip
    console.print(table)


@backup_app.command("restore")
@handles_errors
def backup_restore(
    dump: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="a .dump from `backup full`"
    ),
    replace: bool = typer.Option(False, help="partial dumps: empty the target tables first"),
) -> None:
    """Restore a logical dump into the configured database and verify it (seed 004 §6.3).
    A full dump needs an empty database (e.g. DATABASE_URL of a new one)."""
    with database() as conninfo:
        counts = backup.restore(dump, conninfo, replace=replace)
    console.print_json(json.dumps(counts, default=str))


@backup_app.command("pitr")
@handles_errors
def backup_pitr(
    to: dt.datetime = typer.Option(
        ..., "--to", help="recovery target time, e.g. 2025-03-05T12:00:00+00:00"
    ),
    home: Path = typer.Option(..., help="a new, empty TRADESTORE_HOME for the recovered server"),
    base: Path = typer.Option(None, help="base backup folder (default: newest one before --to)"),
    root: Path = typer.Option(None, help="backup root"),
    offsite_: bool = typer.Option(
        False, "--offsite", help="recover from the offsite store (TRADESTORE_OFFSITE_URL)"
    ),
) -> None:
    """Point-in-time recovery into a new server; the running one is not touched."""
    root = _root(root)
    target = to if to.tzinfo else to.replace(tzinfo=dt.UTC)
    if offsite_:
        server = offsite.pitr_from_store(_store(), target, home)
    else:
        chosen = base or backup.base_for(root, target)
        if chosen is None:
            raise fail(f"--to: no base backup taken before {target.isoformat()}")
        server = backup.pitr_restore(chosen, root / "wal_archive", target, home)
    counts = backup.verify(server.conninfo())
    server.stop()
    console.print(
        f"recovered to {target.isoformat()} in {home}; start it with TRADESTORE_HOME={home}"
    )
    console.print_json(json.dumps(counts, default=str))


def _store() -> offsite.Store:
    s = settings()
    if not s.TRADESTORE_OFFSITE_URL:
        raise fail("TRADESTORE_OFFSITE_URL is not set (e.g. s3://bucket/tradestore)")
    return offsite.Store.from_url(s.TRADESTORE_OFFSITE_URL, s.TRADESTORE_OFFSITE_ENDPOINT)


@backup_app.command("push")
@handles_errors
def backup_push(root: Path = typer.Option(None, help="backup root")) -> None:
    """Copy finished backups and archived WAL to the offsite store (only what it lacks)."""
    report = offsite.push(_root(root), _store())
    console.print(f"uploaded {len(report.uploaded)} file(s), {report.unchanged} already there")


@backup_app.command("pull")
@handles_errors
def backup_pull(
    dest: Path = typer.Argument(..., help="a new directory for the copies"),
    only: list[str] = typer.Option(
        None, help="only these folders: daily_full, partial, base, wal_archive"
    ),
) -> None:
    """Download the offsite store's backups (checksums checked) into DEST, in the backup
    root's layout: restore a dump from DEST/daily_full, or run `backup pitr --root DEST`."""
    written = offsite.pull(_store(), dest, only=tuple(only or ()))
    console.print(f"downloaded {len(written)} file(s) into {dest}")


@backup_app.command("prune")
@handles_errors
def backup_prune(root: Path = typer.Option(None, help="backup root")) -> None:
    """Delete backups past retention (30 days full, 7 days base, 48 hours WAL)."""
    removed = backup.prune(_root(root))
    console.print(f"removed {len(removed)} item(s)")


def _print_rows(rows: list[dict[str, object]]) -> None:
    if not rows:
        console.print("(no rows)")
        return
    table = Table(*rows[0].keys())
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)


@ops_app.command("slow-queries")
@handles_errors
def ops_slow_queries(limit: int = typer.Option(10, min=1, max=1000)) -> None:
    """Slowest statements by mean time (pg_stat_statements)."""
    with database() as conninfo:
        _print_rows(monitoring.slow_queries(conninfo, limit))


@ops_app.command("index-usage")
@handles_errors
def ops_index_usage(unused: bool = typer.Option(False, help="only never-used indexes"),
                    limit: int = typer.Option(50, min=1, max=1000)) -> None:  # fmt: skip
    """Index scans per index (or the never-used ones)."""
    with database() as conninfo:
        _print_rows(
            (monitoring.unused_indexes if unused else monitoring.index_usage)(conninfo, limit)
        )


@ops_app.command("bloat")
@handles_errors
def ops_bloat(limit: int = typer.Option(20, min=1, max=1000)) -> None:
    """Dead-tuple ratio per table."""
    with database() as conninfo:
        _print_rows(monitoring.bloat(conninfo, limit))


@ops_app.command("maintain")
@handles_errors
def ops_maintain(
    period: str = typer.Argument(
        "daily", help="daily (ANALYZE), weekly (VACUUM, REINDEX) or monthly"
    ),
) -> None:
    """Run the maintenance steps of a period now."""
    steps = {
        "daily": monitoring.DAILY,
        "weekly": monitoring.WEEKLY,
        "monthly": monitoring.MONTHLY,
    }.get(period)
    if steps is None:
        raise fail(f"period: must be daily, weekly or monthly (value: {period!r})", 2)
    with database() as conninfo:
        done = monitoring.maintain(conninfo, steps)
    console.print(f"done: {', '.join(done)}")


kpi_app = typer.Typer(help="KPI snapshots and their alarm levels (seed 001 §5.4).",
                      no_args_is_help=True)  # fmt: skip
thresholds_app = typer.Typer(help="Alarm levels per KPI.", no_args_is_help=True)
kpi_app.add_typer(thresholds_app, name="thresholds")
ops_app.add_typer(kpi_app, name="kpi")


@thresholds_app.command("list")
@handles_errors
def kpi_thresholds_list() -> None:
    """The levels in force (built-in unless customized) and the alarms going on."""
    with database() as conninfo, psycopg.connect(conninfo, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT t.*, a.since AS alarm_since FROM system.kpi_thresholds t "
            "LEFT JOIN system.ops_alert_state a ON a.condition = 'kpi:' || t.kpi ORDER BY t.kpi"
        ).fetchall()
    _print_rows(rows)


@thresholds_app.command("set")
@handles_errors
def kpi_thresholds_set(
    kpi: str = typer.Argument(..., help="e.g. order_latency_p95_ms, outbox_backlog"),
    above: Decimal = typer.Option(..., "--above", help="alarm when the value is above this"),
    clear_at: Decimal = typer.Option(
        None, "--clear-at", help="the alarm ends at or below this (default: --above)"
    ),
    severity: str = typer.Option("HIGH", help="CRITICAL, HIGH, MEDIUM or LOW"),
    enabled: bool = typer.Option(True, "--enabled/--disabled"),
) -> None:
    """Set a KPI's alarm levels; checked at every snapshot."""
    with database() as conninfo, psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "SELECT system.set_kpi_threshold(%s, %s, %s, %s, %s)",
            (kpi, above, clear_at, severity, enabled),
        )
    console.print(
        f"{kpi}: alarm above {above}, clears at {clear_at if clear_at is not None else above}"
    )
