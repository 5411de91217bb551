"""Seed 004 §7 monitoring queries and maintenance steps run on a real server."""

from __future__ import annotations

import psycopg

from tests.support.populate import populate
from tradestore.ops import monitoring


def test_monitoring_queries_report_real_statistics(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        populate(conn)
        conn.execute("SELECT * FROM trade.orders WHERE account_id = 1")
        conn.execute("ANALYZE")
    slow = monitoring.slow_queries(db, limit=5)
    assert slow and {"query", "calls", "total_ms", "mean_ms", "rows"} <= set(slow[0])
    usage = monitoring.index_usage(db)
    assert {"schemaname", "tablename", "indexname", "idx_scan"} <= set(usage[0])
    assert isinstance(monitoring.unused_indexes(db), list)
    bloat = monitoring.bloat(db)
    assert all(row["n_live_tup"] > 0 for row in bloat)


def test_maintenance_steps_run_without_blocking_locks(db: str) -> None:
    done = monitoring.maintain(db, monitoring.DAILY + monitoring.WEEKLY + monitoring.MONTHLY)
    assert done == ["analyze", "vacuum", "reindex daily_prices", "reset statement statistics"]
