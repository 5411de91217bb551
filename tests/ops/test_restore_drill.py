"""The restore drill of docs/operations.md, as a user runs it: a full dump restored into a
fresh TRADESTORE_HOME (a new cluster, without the tradestore roles), with and without
`db upgrade` first, then the ledger verifies and the row counts equal the backup's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.populate import populate
from tradestore.db.server import EmbeddedPostgres
from tradestore.ops import backup


def tradestore(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tradestore.cli.main", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def homes(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for home in tmp_path.glob("home*"):
        leftover = EmbeddedPostgres(home)
        if leftover.status().running:
            leftover.stop(mode="immediate", force=True)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**env, "COLUMNS": "200", **extra}


def _counts(home: Path) -> dict[str, object]:
    server = EmbeddedPostgres(home)
    try:
        return backup.verify(server.start())
    finally:
        server.stop()


def test_a_full_dump_restores_into_a_fresh_home(db: str, homes: Path) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        populate(conn)
    root = homes / "backups"
    made = tradestore("backup", "full", "--root", str(root), env=_env(DATABASE_URL=db))
    assert made.returncode == 0, made.stderr
    (dump,) = root.glob("daily_full/*/full_backup.dump")
    recorded = json.loads((dump.parent / "metadata.json").read_text())["counts"]
    assert recorded["ledger_rows"] == 1 and recorded["orders"] == 1
    assert (dump.parent / backup.ROLES_FILE).is_file()

    fresh = _env(TRADESTORE_HOME=str(homes / "home-fresh"))
    restored = tradestore("backup", "restore", str(dump), env=fresh)
    assert restored.returncode == 0, restored.stderr
    ledger = tradestore("ledger", "verify", env=fresh)
    assert ledger.returncode == 0, ledger.stdout + ledger.stderr
    assert _counts(homes / "home-fresh") == recorded

    # `db upgrade` first (what a user following `up` would have done): still restores.
    upgraded = _env(TRADESTORE_HOME=str(homes / "home-upgraded"))
    assert tradestore("db", "upgrade", env=upgraded).returncode == 0
    restored = tradestore("backup", "restore", str(dump), env=upgraded)
    assert restored.returncode == 0, restored.stderr
    assert tradestore("ledger", "verify", env=upgraded).returncode == 0
    assert _counts(homes / "home-upgraded") == recorded

    # A database that holds data is never overwritten.
    again = tradestore("backup", "restore", str(dump), env=fresh)
    assert again.returncode == 1
    assert "already holds data" in again.stderr and "orders" in again.stderr
