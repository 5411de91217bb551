"""Backups, restore and point-in-time recovery on real servers (seed 004 §6)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.fixtures import create_database, drop_database
from tests.support.populate import populate
from tests.support.schema import ALL_AVAILABLE_MODULES
from tests.support.wal import wait_archived
from tradestore.config import load_settings
from tradestore.db import migrate
from tradestore.db.server import EmbeddedPostgres
from tradestore.ops import backup
from tradestore.ops.scheduler import Cadence, default_jobs


def test_full_backup_restores_into_an_empty_database_and_verifies(
    db: str, pg_conninfo: str, tmp_path: Path
) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        populate(conn)
    info = backup.full_backup(db, tmp_path)
    assert (
        info.path
        == tmp_path / "daily_full" / info.created_at[:10].replace("-", "") / "full_backup.dump"
    )
    assert info.counts["stocks"] == 1 and info.counts["ledger_rows"] == 1
    assert (info.path.parent / "metadata.json").exists()

    target = create_database(pg_conninfo, "t_restore")
    try:
        restored = backup.restore(info.path, target)
        assert restored == info.counts
        # The restored database is a working tradestore: its rules still hold.
        with (
            psycopg.connect(target, autocommit=True) as conn,
            pytest.raises(psycopg.errors.RestrictViolation),
        ):
            conn.execute("DELETE FROM account.transactions")
        assert migrate.pending_revisions(target) == []
    finally:
        drop_database(pg_conninfo, target)


def test_partial_backup_restores_the_named_schemas_rows(
    db: str, pg_conninfo: str, schema_template: str, tmp_path: Path
) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        populate(conn)
    info = backup.full_backup(db, tmp_path, schemas=["market"])
    assert info.kind == "partial" and info.path.parent == tmp_path / "partial"
    target = create_database(pg_conninfo, "t_partial", template=schema_template)
    try:
        with pytest.raises(backup.BackupError, match="already hold rows"):
            backup.restore(info.path, target)  # migration-seeded rows are there
        restored = backup.restore(info.path, target, replace=True)
        assert restored["stocks"] == 1 and restored["candles"] == 1
        assert restored["orders"] == 0  # trade was not in the backup
        with psycopg.connect(target) as conn:
            versions = conn.execute("SELECT count(*) FROM market.trading_rule_versions").fetchone()[
                0
            ]
        assert versions == 2  # restored as dumped, not re-created by triggers
    finally:
        drop_database(pg_conninfo, target)


def test_a_corrupted_dump_is_refused(db: str, pg_conninfo: str, tmp_path: Path) -> None:
    info = backup.full_backup(db, tmp_path)
    with info.path.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00garbage\x00")
    with pytest.raises(backup.BackupError, match="checksum"):
        backup.restore(info.path, db)


@pytest.mark.slow
def test_point_in_time_recovery_stops_at_the_target(tmp_path: Path) -> None:
    """Base backup, then writes before and after a moment T; recovering to T keeps the
    first and not the second."""
    archive = tmp_path / "backups" / "wal_archive"
    server = EmbeddedPostgres(tmp_path / "home", wal_archive=archive)
    conninfo = server.start()
    recovered = None
    try:
        migrate.upgrade(conninfo)
        migrate.enable_modules(conninfo, ALL_AVAILABLE_MODULES)
        base = backup.base_backup(conninfo, tmp_path / "backups")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("INSERT INTO market.exchanges (code, name) VALUES ('before', 'Before T')")
            time.sleep(1.1)
            target = conn.execute("SELECT now()").fetchone()[0]
            time.sleep(1.1)
            conn.execute("INSERT INTO market.exchanges (code, name) VALUES ('after', 'After T')")
        wait_archived(conninfo)
        recovered = backup.pitr_restore(base.path, archive, target, tmp_path / "recovered")
        with psycopg.connect(recovered.conninfo()) as conn:
            codes = {r[0] for r in conn.execute("SELECT code FROM market.exchanges")}
            assert codes == {"before"}
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
            assert backup.verify(recovered.conninfo())["orders"] == 0
    finally:
        if recovered is not None:
            recovered.stop()
        server.stop()


def test_pitr_refuses_a_target_before_the_base_backup(tmp_path: Path) -> None:
    base = tmp_path / "base" / "20250101T000000"
    base.mkdir(parents=True)
    (base / "metadata.json").write_text('{"created_at": "2025-01-01T00:00:00+00:00"}')
    with pytest.raises(backup.BackupError, match="before base backup"):
        backup.pitr_restore(
            base, tmp_path, dt.datetime(2024, 12, 31, tzinfo=dt.UTC), tmp_path / "x"
        )
    with pytest.raises(backup.BackupError, match="time zone"):
        backup.pitr_restore(base, tmp_path, dt.datetime(2025, 2, 1), tmp_path / "x")


def test_prune_keeps_the_newest_and_what_recovery_needs(tmp_path: Path) -> None:
    now = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)

    def make(kind: str, name: str, created: dt.datetime) -> Path:
        folder = tmp_path / kind / name
        folder.mkdir(parents=True)
        (folder / "metadata.json").write_text(f'{{"created_at": "{created.isoformat()}"}}')
        return folder

    old_full = make("daily_full", "20250101", now - dt.timedelta(days=59))
    new_full = make("daily_full", "20250228", now - dt.timedelta(days=1))
    old_base = make("base", "20250201T000000", now - dt.timedelta(days=28))
    new_base = make("base", "20250227T000000", now - dt.timedelta(days=2))
    (tmp_path / "wal_archive").mkdir()
    stale = tmp_path / "wal_archive" / "000000010000000000000001"
    stale.write_bytes(b"x")
    import os

    old = (now - dt.timedelta(days=3)).timestamp()
    os.utime(stale, (old, old))
    removed = backup.prune(tmp_path, now=now)
    assert old_full in removed and old_base in removed and stale in removed
    assert new_full.exists() and new_base.exists()


def test_partial_restore_reports_references_that_do_not_hold(
    db: str, pg_conninfo: str, schema_template: str, tmp_path: Path
) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        populate(conn)
    info = backup.full_backup(db, tmp_path, schemas=["trade"])
    target = create_database(pg_conninfo, "t_orphans", template=schema_template)
    try:  # the orders' accounts and listings live in schemas that were not restored
        with pytest.raises(backup.BackupError, match=r"references do not hold: .*trade\.orders"):
            backup.restore(info.path, target, replace=True)
    finally:
        drop_database(pg_conninfo, target)


@pytest.mark.slow
def test_recovery_from_a_base_and_incremental_chain(tmp_path: Path) -> None:
    """base -> incremental -> incremental, as the schedule takes them; recovering from the
    last one combines the chain and keeps the rows written before each link."""
    settings = load_settings(None, TRADESTORE_HOME=tmp_path / "home")
    root = settings.backup_root
    archive = root / "wal_archive"
    server = EmbeddedPostgres(tmp_path / "home", wal_archive=archive)
    conninfo = server.start()
    recovered = None
    try:
        migrate.upgrade(conninfo)
        jobs = {j.name: j for j in default_jobs(settings, embedded=True)}
        assert jobs["incremental_backup"].cadence == Cadence("hour", dt.timedelta(minutes=30))
        # the schedule's incremental job waits for a base backup to build on
        assert jobs["incremental_backup"].run(conninfo, settings) == {
            "skipped": "no base backup yet to build on"
        }
        base = backup.base_backup(conninfo, root)
        codes = []
        links = [base.path]
        for code in ("one", "two"):
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO market.exchanges (code, name) VALUES (%s, %s)", (code, code)
                )
            codes.append(code)
            detail = jobs["incremental_backup"].run(conninfo, settings)
            assert detail["parent"] == str(links[-1])  # type: ignore[index]
            links.append(Path(detail["path"]))  # type: ignore[index]
        metas = [json.loads((p / "metadata.json").read_text()) for p in links]
        assert [m["kind"] for m in metas] == ["base", "incremental", "incremental"]
        with psycopg.connect(conninfo, autocommit=True) as conn:
            target = conn.execute("SELECT now()").fetchone()[0]
            time.sleep(1.1)
            conn.execute("INSERT INTO market.exchanges (code, name) VALUES ('late', 'late')")
        wait_archived(conninfo)
        recovered = backup.pitr_restore(links[-1], archive, target, tmp_path / "recovered")
        with psycopg.connect(recovered.conninfo()) as conn:
            found = {r[0] for r in conn.execute("SELECT code FROM market.exchanges")}
        assert set(codes) <= found and "late" not in found
    finally:
        if recovered is not None:
            recovered.stop()
        server.stop()


def test_pitr_to_a_moment_not_yet_archived_says_so(tmp_path: Path) -> None:
    archive = tmp_path / "backups" / "wal_archive"
    server = EmbeddedPostgres(tmp_path / "home", wal_archive=archive)
    conninfo = server.start()
    try:
        base = backup.base_backup(conninfo, tmp_path / "backups")
        wait_archived(conninfo)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE TABLE written_later (x int)")  # in the open segment only
            target = conn.execute("SELECT now()").fetchone()[0]
        with pytest.raises(backup.BackupError, match="not archived yet"):
            backup.pitr_restore(base.path, archive, target, tmp_path / "recovered")
        assert not (tmp_path / "recovered" / "pgdata").exists()
    finally:
        server.stop()
