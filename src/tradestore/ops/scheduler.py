"""The operational schedule `tradestore up` keeps (seed 004 §6.4 and §7.2, seed 001 §6).

Each job has a cadence; the scheduler runs a job when its last successful run (recorded in
system.job_runs, so restarts do not re-run or skip work) is older than the latest moment
the cadence says it should have run. A failed job is recorded with its error and retried
at the next tick; it never stops the other jobs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from tradestore.config import Settings
from tradestore.db.query import scalar
from tradestore.ops import backup, maintenance, monitoring, offsite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cadence:
    """When a job is due: every `every`, aligned to `at` past the period's start (UTC).

    every='hour', at=15min: 00:15, 01:15, ...; every='day', at=1h: 01:00 daily;
    every='week', at=2h: Sunday 02:00 (seed 004 §7.2); every='month', at=3h: the 1st, 03:00.
    """

    every: str
    at: dt.timedelta = dt.timedelta(0)

    def last_due(self, now: dt.datetime) -> dt.datetime:
        """The most recent moment at or before `now` when the job was due."""
        if self.every == "minute":
            start = now.replace(second=0, microsecond=0)
            step = dt.timedelta(minutes=1)
        elif self.every == "hour":
            start = now.replace(minute=0, second=0, microsecond=0)
            step = dt.timedelta(hours=1)
        elif self.every == "day":
            start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            step = dt.timedelta(days=1)
        elif self.every == "week":
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            start = midnight - dt.timedelta(days=(midnight.weekday() + 1) % 7)  # Sunday
            step = dt.timedelta(days=7)
        elif self.every == "month":
            start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            due = start + self.at
            if due <= now:
                return due
            previous = (start - dt.timedelta(days=1)).replace(day=1)
            return previous + self.at
        else:
            raise ValueError(
                f"every: must be minute, hour, day, week or month (value: {self.every!r})"
            )
        due = start + self.at
        return due if due <= now else due - step


@dataclass(frozen=True)
class Job:
    name: str
    cadence: Cadence
    run: Callable[[str, Settings], object]


def _reembed_documents(conninfo: str, settings: Settings) -> object:
    from tradestore.brain.documents import reembed_job

    return reembed_job(conninfo)


def _premake(conninfo: str, settings: Settings) -> object:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        made = scalar(conn, "SELECT market.premake_partitions()")
        return {"partitions_made": made}


def _equity_snapshots(conninfo: str, settings: Settings) -> object:
    from tradestore.trading.valuation import snapshot_equity

    with psycopg.connect(conninfo, autocommit=True) as conn:
        return {"accounts": snapshot_equity(conn)}


def _expire_orders(conninfo: str, settings: Settings) -> object:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return {"expired": scalar(conn, "SELECT trade.expire_orders(now())")}


def _refresh_rollups(conninfo: str, settings: Settings) -> object:
    """Materialize closed buckets and re-materialize the ones late or corrected bars
    invalidated (queries add the live tail themselves)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT sum(buckets_written), sum(buckets_recomputed) FROM market.refresh_rollups()"
        ).fetchone() or (0, 0)
    return {"buckets_written": int(rows[0] or 0), "buckets_recomputed": int(rows[1] or 0)}


def _apply_retention(conninfo: str, settings: Settings) -> object:
    """Drop whole partitions past each table's retention (seed 003: 30 days)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        dropped = scalar(
            conn, "SELECT count(*) FILTER (WHERE dropped) FROM market.apply_retention()"
        )
        # The webhook alert box (dedupe module) is not partitioned: it deletes by age.
        inbound = None
        if scalar(conn, "SELECT to_regproc('system.apply_inbound_retention')"):
            inbound = scalar(conn, "SELECT system.apply_inbound_retention()")
    return {"partitions_dropped": int(dropped), "inbound_alerts_deleted": inbound}


def _kpi_snapshot(conninfo: str, settings: Settings) -> object:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if scalar(conn, "SELECT to_regproc('system.take_kpi_snapshot') IS NULL"):
            return {"skipped": "the kpi module is not enabled"}
        ts = scalar(conn, "SELECT (system.take_kpi_snapshot()).ts")
        return {"snapshot": ts.isoformat()}


def _monitor(conninfo: str, settings: Settings) -> object:
    """Disk space and connections against their alarm levels (alerts on a change only)."""
    report = monitoring.check(conninfo, settings.backup_root)
    return {
        "events": report["events"],
        "connections_used_pct": report["connections"]["used_pct"],
        "disk_free_pct": {d["name"]: d["free_pct"] for d in report["disks"]},
    }


def _full_backup(conninfo: str, settings: Settings) -> object:
    info = backup.full_backup(conninfo, settings.backup_root)
    return {"path": str(info.path), "bytes": info.size_bytes}


def _base_backup(conninfo: str, settings: Settings) -> object:
    info = backup.base_backup(conninfo, settings.backup_root)
    return {"path": str(info.path), "bytes": info.size_bytes}


def _incremental_backup(conninfo: str, settings: Settings) -> object:
    """An incremental base backup on top of the newest physical one (seed 004's hourly
    incremental); waits for the day's first base backup."""
    parent = backup.newest_base(settings.backup_root)
    if parent is None:
        return {"skipped": "no base backup yet to build on"}
    info = backup.base_backup(conninfo, settings.backup_root, incremental_from=parent)
    return {"path": str(info.path), "bytes": info.size_bytes, "parent": str(parent)}


def _offsite_push(conninfo: str, settings: Settings) -> object:
    """Copy new backups and archived WAL segments offsite (idempotent: name + checksum)."""
    assert settings.TRADESTORE_OFFSITE_URL
    store = offsite.Store.from_url(
        settings.TRADESTORE_OFFSITE_URL, settings.TRADESTORE_OFFSITE_ENDPOINT
    )
    report = offsite.push(settings.backup_root, store)
    return {"uploaded": len(report.uploaded), "unchanged": report.unchanged}


def _prune(conninfo: str, settings: Settings) -> object:
    return {"removed": len(backup.prune(settings.backup_root))}


def _steps(steps: list[monitoring.MaintenanceStep]) -> Callable[[str, Settings], object]:
    return lambda conninfo, settings: {"done": monitoring.maintain(conninfo, steps)}


def default_jobs(settings: Settings, *, embedded: bool) -> list[Job]:
    hour = dt.timedelta(hours=1)
    jobs = [
        Job("expire_orders", Cadence("minute"), _expire_orders),  # orders past expires_at
        Job("premake_partitions", Cadence("hour"), _premake),
        Job("refresh_rollups", Cadence("minute"), _refresh_rollups),  # continuous aggregates
        Job("kpi_snapshot", Cadence("hour"), _kpi_snapshot),  # seed 001 §5.4 (kpi module)
        Job("monitor", Cadence("minute"), _monitor),  # disk space, connections
        # Chunks without a vector of the configured embedding model (after a model change).
        Job("reembed_documents", Cadence("minute"), _reembed_documents),
        # Every account's value at the UTC day's start: the daily-loss limit's base and the
        # daily series of seed 003's portfolio returns.
        Job("equity_snapshots", Cadence("day"), _equity_snapshots),
        Job("apply_retention", Cadence("day", dt.timedelta(minutes=30)), _apply_retention),
        Job("full_backup", Cadence("day"), _full_backup),  # seed 004: daily full at 00:00
        Job("prune_backups", Cadence("day", dt.timedelta(minutes=45)), _prune),
        Job("analyze", Cadence("day", hour), _steps(monitoring.DAILY)),  # 01:00
        Job("weekly_maintenance", Cadence("week", 2 * hour), _steps(monitoring.WEEKLY)),
        Job("reset_statement_stats", Cadence("month", 3 * hour), _steps(monitoring.MONTHLY)),
    ]
    if embedded and settings.TRADESTORE_WAL_ARCHIVE:
        # Point-in-time recovery needs a base backup plus the WAL archive since.
        jobs.append(Job("base_backup", Cadence("day", dt.timedelta(minutes=15)), _base_backup))
        # Seed 004's hourly incremental: only the blocks changed since the previous one
        # (PostgreSQL 17 WAL summaries); recovery combines the chain with pg_combinebackup.
        jobs.append(
            Job(
                "incremental_backup", Cadence("hour", dt.timedelta(minutes=30)), _incremental_backup
            )
        )
    if settings.TRADESTORE_OFFSITE_URL:
        # Last, so that a tick which took a backup pushes it at once; every minute for
        # the WAL segments archived meanwhile.
        jobs.append(Job("offsite_push", Cadence("minute"), _offsite_push))
    return jobs


def _last_success(conn: psycopg.Connection, job: str) -> dt.datetime | None:
    row = conn.execute(
        "SELECT max(started_at) FROM system.job_runs WHERE job = %s AND status = 'OK'", (job,)
    ).fetchone()
    return row[0] if row else None


def run_due(
    conninfo: str, settings: Settings, jobs: list[Job], now: dt.datetime | None = None
) -> list[str]:
    """Run every job that is due now; returns the names of the jobs that ran."""
    now = now or dt.datetime.now(dt.UTC)
    ran: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        window = maintenance.active(conn)
        if window is not None:  # a migration runs: its tables may be half made
            log.info("scheduled jobs wait: %s", window.message())
            return ran
        for job in jobs:
            last = _last_success(conn, job.name)
            if last is not None and last >= job.cadence.last_due(now):
                continue
            run_id = scalar(
                conn,
                "INSERT INTO system.job_runs (job, started_at) VALUES (%s, %s) RETURNING id",
                (job.name, now),
            )
            try:
                detail = job.run(conninfo, settings)
                status = "OK"
            except Exception as exc:  # recorded and retried next tick; other jobs go on
                log.exception("scheduled job %s failed", job.name)
                detail, status = {"error": str(exc)}, "FAILED"
            conn.execute(
                "UPDATE system.job_runs SET status = %s, finished_at = clock_timestamp(), detail = %s "
                "WHERE id = %s",
                (status, json.dumps(detail, default=str), run_id),
            )
            ran.append(job.name)
    return ran


def make_service(
    jobs: list[Job], tick: float = 60.0
) -> Callable[[str, Settings, threading.Event], None]:
    """A service for `up`: check the schedule every `tick` seconds until stopped."""

    def service(conninfo: str, settings: Settings, stop: threading.Event) -> None:
        while not stop.is_set():
            run_due(conninfo, settings, jobs)
            stop.wait(tick)

    return service
