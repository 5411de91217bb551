"""Seed 004 §7 monitoring queries and maintenance steps run on a real server."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import psycopg

from tests.support.populate import populate
from tradestore.ops import monitoring


def test_monitoring_queries_report_real_statistics(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        populate(conn)
        conn.execute("CREATE TABLE public.watched (id int PRIMARY KEY, tag int)")
        conn.execute("CREATE INDEX watched_tag ON public.watched (tag)")
        conn.execute("INSERT INTO public.watched SELECT g, g FROM generate_series(1, 100) g")
        conn.execute("DELETE FROM public.watched WHERE id <= 25")  # 25 dead, 75 live
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")  # the flush happens when the session goes idle
        before = {r["indexname"]: r["idx_scan"] for r in monitoring.index_usage(db, limit=1000)}
        conn.execute("SET enable_seqscan = off")
        for i in range(4):  # four scans of the primary key, none of watched_tag
            conn.execute("SELECT id FROM public.watched WHERE id = %s", (50 + i,))
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")
    slow = monitoring.slow_queries(db, limit=1000)
    [lookup] = [r for r in slow if r["query"] == "SELECT id FROM public.watched WHERE id = $1"]
    assert lookup["calls"] == 4 and lookup["rows"] == 4
    # total is rounded to 0.01 ms and mean to 0.001 ms: mean x calls is total within that
    assert abs(lookup["mean_ms"] * 4 - lookup["total_ms"]) <= Decimal("0.01")
    usage = {r["indexname"]: r for r in monitoring.index_usage(db, limit=1000)}
    assert usage["watched_pkey"]["idx_scan"] - before["watched_pkey"] == 4
    assert usage["watched_pkey"]["tablename"] == "watched"
    unused = {r["indexname"]: r for r in monitoring.unused_indexes(db, limit=1000)}
    assert "watched_tag" in unused and unused["watched_tag"]["bytes"] > 0
    assert "watched_pkey" not in unused
    bloat = {r["tablename"]: r for r in monitoring.bloat(db, limit=1000)}
    watched = bloat["watched"]
    assert (watched["n_dead_tup"], watched["n_live_tup"]) == (25, 75)
    assert watched["dead_ratio"] == Decimal("33.33")


def test_maintenance_steps_run_without_blocking_locks(db: str) -> None:
    done = monitoring.maintain(db, monitoring.DAILY + monitoring.WEEKLY + monitoring.MONTHLY)
    assert done == ["analyze", "vacuum", "reindex daily_prices", "reset statement statistics"]


def test_connections_count_what_is_open(db: str) -> None:
    before = monitoring.connections(db)
    extra = [psycopg.connect(db) for _ in range(3)]
    try:
        during = monitoring.connections(db)
    finally:
        for c in extra:
            c.close()
    idle = during["in_database"].get("idle", 0) - before["in_database"].get("idle", 0)
    assert idle == 3
    assert during["total"] == before["total"] + 3
    assert during["usable"] == during["max_connections"] - 3  # superuser_reserved_connections
    assert during["used_pct"] == round(100 * during["total"] / during["usable"], 1)


def test_disk_usage_reports_the_file_system_of_each_path(tmp_path: Path) -> None:
    not_yet = tmp_path / "wal_archive" / "later"
    [usage] = monitoring.disk_usage({"archive": not_yet})
    vfs = os.statvfs(tmp_path)
    assert usage["name"] == "archive" and usage["path"] == str(not_yet)
    assert usage["total_bytes"] == vfs.f_blocks * vfs.f_frsize
    assert usage["free_pct"] == round(100 * usage["free_bytes"] / usage["total_bytes"], 1)
    # Free space moves with other writers on a shared disk; it is within the total.
    assert 0 <= usage["free_bytes"] <= usage["total_bytes"]


def _ops_alerts(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT data->>'condition', data->>'event' FROM system.alerts WHERE module = 'ops' "
        "ORDER BY alert_id"
    ).fetchall()


def test_disk_and_connection_alarms_raise_once_and_clear(db: str, tmp_path: Path) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        # Levels no disk or server can satisfy: every alarm goes off.
        conn.execute(
            "INSERT INTO system.system_configuration (key, value) VALUES "
            "('monitoring.disk_free_min_pct', '101'), ('monitoring.disk_free_clear_pct', '101'),"
            "('monitoring.connections_max_pct', '-1'), ('monitoring.connections_clear_pct', '-1')"
        )
        first = monitoring.check(db, tmp_path / "backups")
        names = {d["name"] for d in first["disks"]}
        assert {"data", "backups", "wal_archive"} <= names  # the test server is local
        expected = {f"disk:{n}": "raised" for n in names} | {"connections": "raised"}
        assert first["events"] == expected
        assert monitoring.check(db, tmp_path / "backups")["events"] == {}  # no re-alert
        assert sorted(_ops_alerts(conn)) == sorted((c, "raised") for c in expected)

        conn.execute(
            "UPDATE system.system_configuration SET value = '0' WHERE key LIKE 'monitoring.%'"
        )
        conn.execute(
            "UPDATE system.system_configuration SET value = '200' "
            "WHERE key LIKE 'monitoring.connections%'"
        )
        cleared = monitoring.check(db, tmp_path / "backups")["events"]
        assert cleared == {c: "cleared" for c in expected}
        assert conn.execute("SELECT count(*) FROM system.ops_alert_state").fetchone() == (0,)
