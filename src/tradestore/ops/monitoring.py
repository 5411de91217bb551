"""Monitoring and maintenance (seed 004 §7), written for PostgreSQL 13+.

Seed 004's queries were written for older servers: pg_stat_statements' total_time and
mean_time are total_exec_time and mean_exec_time since PostgreSQL 13, and
pg_stat_user_indexes names its columns relname and indexrelname. Its maintenance plan is
kept in spirit but made safe for a running trading system: VACUUM FULL takes an exclusive
lock for the whole rewrite (trading would stop), so the weekly job runs plain
VACUUM (ANALYZE) and REINDEX ... CONCURRENTLY; and the monthly pg_stat_reset() would also
wipe the dead-tuple counts autovacuum relies on, so only pg_stat_statements is reset.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

SLOW_QUERIES = """
SELECT query, calls, round(total_exec_time::numeric, 2) AS total_ms,
       round(mean_exec_time::numeric, 3) AS mean_ms, rows
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY mean_exec_time DESC
 LIMIT %(limit)s
"""

INDEX_USAGE = """
SELECT schemaname, relname AS tablename, indexrelname AS indexname, idx_scan
  FROM pg_stat_user_indexes
 ORDER BY idx_scan DESC
 LIMIT %(limit)s
"""

UNUSED_INDEXES = """
SELECT s.schemaname, s.relname AS tablename, s.indexrelname AS indexname,
       pg_relation_size(s.indexrelid) AS bytes
  FROM pg_stat_user_indexes s
  JOIN pg_index i ON i.indexrelid = s.indexrelid
 WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary
 ORDER BY bytes DESC
 LIMIT %(limit)s
"""

BLOAT = """
SELECT schemaname, relname AS tablename, n_dead_tup, n_live_tup,
       round(n_dead_tup::numeric / n_live_tup * 100, 2) AS dead_ratio
  FROM pg_stat_user_tables
 WHERE n_live_tup > 0
 ORDER BY dead_ratio DESC
 LIMIT %(limit)s
"""


def _rows(conninfo: str, query: str, limit: int) -> list[dict[str, object]]:
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        return conn.execute(query, {"limit": limit}).fetchall()


def slow_queries(conninfo: str, limit: int = 10) -> list[dict[str, object]]:
    """The slowest statements by mean time (needs pg_stat_statements preloaded)."""
    return _rows(conninfo, SLOW_QUERIES, limit)


def index_usage(conninfo: str, limit: int = 50) -> list[dict[str, object]]:
    return _rows(conninfo, INDEX_USAGE, limit)


def unused_indexes(conninfo: str, limit: int = 50) -> list[dict[str, object]]:
    """Indexes never scanned since the statistics were reset (not unique, not primary)."""
    return _rows(conninfo, UNUSED_INDEXES, limit)


def bloat(conninfo: str, limit: int = 20) -> list[dict[str, object]]:
    """Dead-tuple ratio per table, worst first."""
    return _rows(conninfo, BLOAT, limit)


CONNECTIONS = """
SELECT coalesce(state, 'unknown') AS state, count(*) AS count,
       count(*) FILTER (WHERE datname = current_database()) AS here
  FROM pg_stat_activity
 WHERE backend_type = 'client backend'
 GROUP BY 1
 ORDER BY 1
"""

# Alarm levels (percent); override any of them with a row of system.system_configuration
# named monitoring.<key>. A disk alarm raises below disk_free_min_pct free and clears at
# disk_free_clear_pct; a connections alarm raises above connections_max_pct of the usable
# slots and clears at connections_clear_pct.
DEFAULT_LIMITS: dict[str, float] = {
    "disk_free_min_pct": 10.0,
    "disk_free_clear_pct": 15.0,
    "connections_max_pct": 80.0,
    "connections_clear_pct": 70.0,
}


def connections(conninfo: str) -> dict[str, Any]:
    """Client connections by state (whole server, and in this database) against
    max_connections less the slots reserved for superusers."""
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        rows = conn.execute(CONNECTIONS).fetchall()
        settings = conn.execute(
            "SELECT current_setting('max_connections')::int AS max, "
            "current_setting('superuser_reserved_connections')::int AS reserved"
        ).fetchone()
    assert settings is not None
    total = sum(int(r["count"]) for r in rows)
    usable = max(int(settings["max"]) - int(settings["reserved"]), 1)
    return {
        "by_state": {str(r["state"]): int(r["count"]) for r in rows},
        "in_database": {str(r["state"]): int(r["here"]) for r in rows if r["here"]},
        "total": total,
        "max_connections": int(settings["max"]),
        "usable": usable,
        "used_pct": round(100.0 * total / usable, 1),
    }


def _existing(path: Path) -> Path:
    """The path itself or its nearest existing parent (an archive not made yet lives on
    the disk its parent is on)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_usage(paths: dict[str, Path]) -> list[dict[str, Any]]:
    """Size and free space of the file system holding each named path."""
    report = []
    for name, path in paths.items():
        usage = shutil.disk_usage(_existing(path))
        report.append(
            {
                "name": name,
                "path": str(path),
                "total_bytes": usage.total,
                "free_bytes": usage.free,
                "free_pct": round(100.0 * usage.free / usage.total, 1) if usage.total else 0.0,
            }
        )
    return report


def watched_paths(conninfo: str, backup_root: Path) -> dict[str, Path]:
    """The data directory (when the server runs on this machine), the backup root and the
    WAL archive."""
    paths = {"backups": backup_root, "wal_archive": backup_root / "wal_archive"}
    try:
        with psycopg.connect(conninfo) as conn:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        if row and Path(row[0]).exists():
            paths = {"data": Path(row[0]), **paths}
    except psycopg.Error:  # not allowed to read it (no pg_read_all_settings): skip
        pass
    return paths


def limits(conn: psycopg.Connection) -> dict[str, float]:
    """DEFAULT_LIMITS with the overrides stored in system.system_configuration."""
    found = dict(DEFAULT_LIMITS)
    for key, value in conn.execute(
        "SELECT substr(key, 12), value FROM system.system_configuration "
        "WHERE key LIKE 'monitoring.%%'"
    ):
        if key in found:
            found[key] = float(value)
    return found


def check(conninfo: str, backup_root: Path) -> dict[str, Any]:
    """Measure disks and connections and raise (or clear) their alarms; an alarm raises
    once when it starts and once when it ends (system.track_alarm)."""
    disks = disk_usage(watched_paths(conninfo, backup_root))
    conns = connections(conninfo)
    events: dict[str, str] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        lim = limits(conn)
        for disk in disks:
            condition = f"disk:{disk['name']}"
            low = disk["free_pct"] < lim["disk_free_min_pct"]
            event = conn.execute(
                "SELECT system.track_alarm(%s, %s, %s, %s::numeric, 'HIGH', %s, 'ops', %s)",
                (
                    condition,
                    low,
                    not low and disk["free_pct"] >= lim["disk_free_clear_pct"],
                    disk["free_pct"],
                    f"disk of {disk['name']} ({disk['path']}) has {disk['free_pct']}% free, "
                    f"below {lim['disk_free_min_pct']}%",
                    Jsonb(disk),
                ),
            ).fetchone()
            if event and event[0]:
                events[condition] = event[0]
        high = conns["used_pct"] > lim["connections_max_pct"]
        event = conn.execute(
            "SELECT system.track_alarm('connections', %s, %s, %s::numeric, 'HIGH', %s, 'ops', %s)",
            (
                high,
                not high and conns["used_pct"] <= lim["connections_clear_pct"],
                conns["used_pct"],
                f"{conns['total']} of {conns['usable']} connections in use "
                f"({conns['used_pct']}%), above {lim['connections_max_pct']}%",
                Jsonb(conns),
            ),
        ).fetchone()
        if event and event[0]:
            events["connections"] = event[0]
    return {"disks": disks, "connections": conns, "events": events}


@dataclass(frozen=True)
class MaintenanceStep:
    name: str
    sql: str


DAILY = [MaintenanceStep("analyze", "ANALYZE")]
WEEKLY = [
    MaintenanceStep("vacuum", "VACUUM (ANALYZE)"),
    MaintenanceStep("reindex daily_prices", "REINDEX TABLE CONCURRENTLY market.daily_prices"),
]
MONTHLY = [MaintenanceStep("reset statement statistics", "SELECT pg_stat_statements_reset()")]


def maintain(conninfo: str, steps: list[MaintenanceStep]) -> list[str]:
    """Run maintenance steps (outside a transaction, as VACUUM and REINDEX CONCURRENTLY need)."""
    done = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for step in steps:
            conn.execute(step.sql)
            done.append(step.name)
    return done
