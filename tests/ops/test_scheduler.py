"""The operational schedule: cadences, and jobs run once per due moment across restarts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest

from tradestore.config import load_settings
from tradestore.ops.scheduler import Cadence, Job, default_jobs, run_due

UTC = dt.UTC


@pytest.mark.parametrize(
    ("cadence", "now", "due"),
    [
        (Cadence("minute"), "2025-03-05T10:20:31", "2025-03-05T10:20"),
        (Cadence("hour", dt.timedelta(minutes=15)), "2025-03-05T10:20", "2025-03-05T10:15"),
        (Cadence("hour", dt.timedelta(minutes=15)), "2025-03-05T10:05", "2025-03-05T09:15"),
        (Cadence("day", dt.timedelta(hours=1)), "2025-03-05T00:30", "2025-03-04T01:00"),
        (
            Cadence("week", dt.timedelta(hours=2)),
            "2025-03-05T12:00",
            "2025-03-02T02:00",
        ),  # a Sunday
        (Cadence("week", dt.timedelta(hours=2)), "2025-03-02T01:00", "2025-02-23T02:00"),
        (Cadence("month", dt.timedelta(hours=3)), "2025-03-01T02:00", "2025-02-01T03:00"),
        (Cadence("month", dt.timedelta(hours=3)), "2025-03-09T00:00", "2025-03-01T03:00"),
    ],
)
def test_last_due(cadence: Cadence, now: str, due: str) -> None:
    moment = dt.datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert cadence.last_due(moment) == dt.datetime.fromisoformat(due).replace(tzinfo=UTC)


def test_unknown_cadence_names_the_field() -> None:
    with pytest.raises(ValueError, match="every: must be"):
        Cadence("fortnight").last_due(dt.datetime.now(UTC))


def test_jobs_run_once_per_due_moment_and_failures_are_recorded(db: str, tmp_path: Path) -> None:
    settings = load_settings(None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path)
    calls: list[str] = []

    def boom(conninfo: str, s: object) -> object:
        raise RuntimeError("disk full")

    jobs = [
        Job("counter", Cadence("day"), lambda c, s: calls.append("x") or {"n": len(calls)}),
        Job("broken", Cadence("day"), boom),
    ]
    t0 = dt.datetime(2025, 3, 5, 10, tzinfo=UTC)
    assert run_due(db, settings, jobs, now=t0) == ["counter", "broken"]
    assert run_due(db, settings, jobs, now=t0 + dt.timedelta(hours=5)) == ["broken"]  # retried
    assert run_due(db, settings, jobs, now=t0 + dt.timedelta(days=1)) == ["counter", "broken"]
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT job, status, detail->>'error' FROM system.job_runs ORDER BY id"
        ).fetchall()
    assert rows[1] == ("broken", "FAILED", "disk full")
    assert [r[1] for r in rows if r[0] == "counter"] == ["OK", "OK"]


def test_default_schedule_runs_real_backups_and_maintenance(db: str, tmp_path: Path) -> None:
    settings = load_settings(None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path)
    ran = run_due(db, settings, default_jobs(settings, embedded=False))
    assert ran == ["expire_orders", "premake_partitions", "refresh_rollups", "kpi_snapshot", "monitor",
                   "reembed_documents", "equity_snapshots", "apply_retention", "full_backup",
                   "prune_backups", "analyze",
                   "weekly_maintenance", "reset_statement_stats"]  # fmt: skip
    with psycopg.connect(db) as conn:
        statuses = dict(conn.execute("SELECT job, status FROM system.job_runs").fetchall())
    assert set(statuses.values()) == {"OK"}
    assert list((tmp_path / "backups" / "daily_full").glob("*/full_backup.dump"))
