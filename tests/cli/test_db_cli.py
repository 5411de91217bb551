"""The `tradestore` command end to end, as a user runs it (subprocesses, real servers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.fixtures import create_database, drop_database


def tradestore(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradestore.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def env_with_db(pg_conninfo: str, tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    db = create_database(pg_conninfo, "t_cli")
    env = {
        **os.environ,
        "DATABASE_URL": db,
        "TRADESTORE_HOME": str(tmp_path / "home"),
        "COLUMNS": "200",
    }
    yield env, db
    drop_database(pg_conninfo, db)


def test_up_db_and_modules_commands(env_with_db: tuple[dict[str, str], str]) -> None:
    env, db = env_with_db
    status = tradestore("db", "status", env=env)
    assert status.returncode == 3 and "0001_foundation" in status.stdout  # pending

    up = tradestore(
        "up",
        "--no-wait",
        env={**env, "TRADESTORE_MODULES": "kpi"},
    )
    assert up.returncode == 0, up.stderr
    assert "database ready" in up.stdout and "kpi" in up.stdout

    status = tradestore("db", "status", env=env)
    assert status.returncode == 0 and "pending:  none" in status.stdout

    enabled = tradestore("modules", "enable", "--all", env=env)
    assert enabled.returncode == 0
    assert "skipped timeseries" in enabled.stdout and "dedupe" in enabled.stdout
    listing = tradestore("modules", "list", env=env)
    assert "unavailable" in listing.stdout

    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO system.ops_kpi_snapshots (order_latency_p50_ms) VALUES (3)")
    refused = tradestore("modules", "disable", "kpi", env=env)
    assert refused.returncode == 1
    assert "system.ops_kpi_snapshots" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    forced = tradestore("modules", "disable", "kpi", "--force", env=env)
    assert forced.returncode == 0 and "disabled: kpi" in forced.stdout

    down = tradestore("db", "downgrade", "base", "--force", env=env)
    assert down.returncode == 0 and "base" in down.stdout
    assert tradestore("db", "upgrade", env=env).returncode == 0


def test_bad_input_gets_one_clear_line(env_with_db: tuple[dict[str, str], str]) -> None:
    env, _ = env_with_db
    bad = tradestore("modules", "enable", "nope", env=env)
    assert (
        bad.returncode == 1
        and "unknown module 'nope'" in bad.stderr
        and "Traceback" not in bad.stderr
    )
    bad_setting = tradestore("db", "status", env={**env, "DB_STATEMENT_TIMEOUT": "soon"})
    assert bad_setting.returncode != 0 and "DB_STATEMENT_TIMEOUT" in bad_setting.stderr


def test_up_on_the_embedded_default(tmp_path: Path) -> None:
    """No DATABASE_URL: `up` starts its own PostgreSQL under TRADESTORE_HOME, and stops it."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["TRADESTORE_HOME"] = str(tmp_path / "home")
    env["COLUMNS"] = "300"
    first = tradestore("up", "--no-wait", env=env)
    assert first.returncode == 0, first.stderr
    applied = re.search(r"(\d+) revision\(s\) applied", first.stdout)
    assert "embedded PostgreSQL" in first.stdout and applied and int(applied.group(1)) >= 11
    assert (tmp_path / "home" / "pgdata" / "PG_VERSION").exists()
    assert not (tmp_path / "home" / "pgdata" / "postmaster.pid").exists()  # stopped on exit
    again = tradestore("up", "--no-wait", env=env)
    assert again.returncode == 0 and "0 revision(s) applied" in again.stdout


def test_up_runs_until_sigterm_and_stops_postgres(tmp_path: Path) -> None:
    import signal

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["TRADESTORE_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradestore.cli.main", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if "press Ctrl-C" in line:
                break
        assert (tmp_path / "home" / "pgdata" / "postmaster.pid").exists()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert not (tmp_path / "home" / "pgdata" / "postmaster.pid").exists()
