"""`db upgrade` on a database with data backs it up first (or says why not, --no-backup),
and holds the maintenance flag, during which a running `up` refuses writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
from fastapi.testclient import TestClient

from tests.support.populate import populate
from tests.support.redis_fixtures import own_redis, redis_cache, redis_server  # noqa: F401
from tradestore.api.app import create_app
from tradestore.api.config import ApiSettings
from tradestore.cache.client import Cache
from tradestore.config import load_settings
from tradestore.db import migrate
from tradestore.inbound.config import load_webhook_settings
from tradestore.ops import maintenance
from tradestore.ops.scheduler import Cadence, Job, run_due


def tradestore(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradestore.cli.main", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_upgrade_backs_up_a_database_with_data_first(db: str, tmp_path: Path) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        populate(conn)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"DATABASE_URL": db, "TRADESTORE_HOME": str(tmp_path / "home"), "COLUMNS": "200"}

    migrate.downgrade(db, f"{migrate.CORE_BRANCH}@-1", force=True)
    upgraded = tradestore("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "verified" in upgraded.stdout and "applied 1 revision" in upgraded.stdout
    (dump,) = (tmp_path / "home" / "backups").glob("daily_full/*/full_backup.dump")
    assert dump.stat().st_size > 0

    migrate.downgrade(db, f"{migrate.CORE_BRANCH}@-1", force=True)
    skipped = tradestore("db", "upgrade", "--no-backup", env=env)
    assert skipped.returncode == 0, skipped.stderr
    assert "no backup taken" in skipped.stdout
    assert migrate.pending_revisions(db) == []


def test_writes_are_refused_while_a_migration_holds_the_flag(
    db: str,
    tmp_path: Path,
    redis_cache: Cache,  # noqa: F811
) -> None:
    settings = load_settings(None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path, DB_POOL_SIZE=2)
    app = create_app(
        settings,
        conninfo=db,
        webhook_settings=load_webhook_settings(None),
        api_settings=ApiSettings(_env_file=None),  # type: ignore[call-arg]
        cache=redis_cache,
    )
    ran: list[str] = []
    jobs = [Job("probe", Cadence("minute"), lambda c, s: ran.append("probe"))]
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        before = client.post("/api/v1/auth/login", json={"username": "x", "password": "y"})
        assert before.status_code != 503
        with maintenance.hold(db, "db upgrade"):
            with psycopg.connect(db) as conn:
                window = maintenance.active(conn)
            assert window is not None and window.what == "db upgrade"
            refused = client.post("/api/v1/auth/login", json={"username": "x", "password": "y"})
            assert refused.status_code == 503
            assert "writes are paused: db upgrade is running" in refused.json()["detail"]
            assert client.get("/health").status_code != 503  # reads still answer
            assert run_due(db, settings, jobs) == [] and ran == []
        after = client.post("/api/v1/auth/login", json={"username": "x", "password": "y"})
        assert after.status_code != 503
        assert run_due(db, settings, jobs) == ["probe"]


def test_the_flag_goes_away_with_the_process_holding_it(db: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from tradestore.ops import maintenance\n"
         "with maintenance.hold(sys.argv[1], 'db upgrade'):\n"
         "    print('held', flush=True); sys.stdin.read()", db],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    with psycopg.connect(db, autocommit=True) as conn:
        assert maintenance.active(conn) is not None
        holder.kill()  # a migration that dies never leaves writes refused
        holder.wait(timeout=30)
        deadline = 0
        while maintenance.active(conn) is not None:
            deadline += 1
            assert deadline < 300, "the flag outlived its holder"
            conn.execute("SELECT pg_sleep(0.1)")
