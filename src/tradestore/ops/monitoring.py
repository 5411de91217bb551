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

from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

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
