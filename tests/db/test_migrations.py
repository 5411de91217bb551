"""Migrations up, down and up again; Plus modules on and off; zz_ backups."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.support.fixtures import create_database, drop_database
from tests.support.populate import empty_tables, populate
from tests.support.schema import ALL_AVAILABLE_MODULES
from tradestore.db import migrate

OUR_SCHEMAS = ("market", "account", "trade", "brain", "analytics", "system", "christmas", "bithumb")


@pytest.fixture
def empty_db(pg_conninfo: str) -> Iterator[str]:
    conninfo = create_database(pg_conninfo, "t_migrate")
    yield conninfo
    drop_database(pg_conninfo, conninfo)


def _schemas(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}


def test_upgrade_applies_every_core_revision_once(empty_db: str) -> None:
    pending = migrate.pending_revisions(empty_db)
    assert pending[0] == "0001_foundation" and pending[-1] == "0017_candles_between_ordered"
    assert migrate.upgrade(empty_db) == pending
    assert migrate.pending_revisions(empty_db) == []
    assert migrate.upgrade(empty_db) == []  # idempotent
    assert set(OUR_SCHEMAS) <= _schemas(empty_db)
    assert migrate.enabled_modules(empty_db) == []


def test_round_trip_on_a_database_with_data_in_every_table(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    migrate.enable_modules(empty_db, ALL_AVAILABLE_MODULES)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        populate(conn)
        assert empty_tables(conn) == []

    # Refused without force, and nothing changed.
    with pytest.raises(migrate.DataWouldBeLost) as refused:
        migrate.downgrade(empty_db, "base")
    assert "--force" in str(refused.value)
    assert migrate.pending_revisions(empty_db) == []
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM system.ops_kpi_snapshots").fetchone()[0] == 1

    migrate.downgrade(empty_db, "base", force=True)
    assert migrate.current_revisions(empty_db) == set()
    assert not (set(OUR_SCHEMAS) & _schemas(empty_db))
    with psycopg.connect(empty_db) as conn:
        backed_up = {r[0] for r in conn.execute("SELECT source FROM zz_backup.backups")}
        assert {
            "account.transactions",
            "trade.orders",
            "market.candles",
            "system.ops_kpi_snapshots",
        } <= backed_up
        ledger_copy = conn.execute(
            "SELECT backup_table FROM zz_backup.backups WHERE source = 'account.transactions'"
        ).fetchone()[0]
        assert conn.execute(f'SELECT amount FROM zz_backup."{ledger_copy}"').fetchone()[0] == 1000

    # And up again, with data again.
    migrate.upgrade(empty_db)
    migrate.enable_modules(empty_db, ALL_AVAILABLE_MODULES)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        populate(conn)
        assert empty_tables(conn) == []


def test_downgrade_one_revision_and_back(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    migrate.downgrade(empty_db, "0010_operations")
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('bithumb.orders')").fetchone()[0] is None
        assert conn.execute("SELECT to_regclass('trade.orders')").fetchone()[0] is not None
    assert migrate.pending_revisions(empty_db)[:2] == ["0011_seed_views", "0012_roles_security"]
    migrate.upgrade(empty_db)
    assert migrate.pending_revisions(empty_db) == []


def test_module_disable_refuses_with_data_and_keeps_a_backup_when_forced(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    assert migrate.enable_modules(empty_db, ["kpi", "llm_trace"]) == ["kpi", "llm_trace"]
    assert migrate.enable_modules(empty_db, ["kpi"]) == []  # already on
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO system.ops_kpi_snapshots (ts, order_latency_p50_ms) VALUES ('2024-01-01', 7)"
        )
        conn.execute(
            "INSERT INTO brain.llm_prompts (name, template, prompt_hash) VALUES ('p', 't', 'h1')"
        )

    with pytest.raises(migrate.DataWouldBeLost) as refused:
        migrate.disable_modules(empty_db, ["kpi"])
    assert "system.ops_kpi_snapshots" in refused.value.holding
    assert "kpi" in migrate.enabled_modules(empty_db)

    assert migrate.disable_modules(empty_db, ["kpi", "llm_trace"], force=True) == [
        "kpi",
        "llm_trace",
    ]
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT to_regclass('system.ops_kpi_snapshots')").fetchone()[0] is None
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'llm_prompts'"
            )
        }
        assert "prompt_hash" not in columns
        backups = dict(conn.execute("SELECT source, row_count FROM zz_backup.backups").fetchall())
        assert backups == {"system.ops_kpi_snapshots": 1, "brain.llm_prompts.prompt_hash": 1}
        assert all(
            name.startswith("zz_")
            for (name,) in conn.execute("SELECT backup_table FROM zz_backup.backups")
        )

    migrate.enable_modules(empty_db, ["kpi", "llm_trace"], restore=True)
    with psycopg.connect(empty_db) as conn:
        assert (
            conn.execute("SELECT order_latency_p50_ms FROM system.ops_kpi_snapshots").fetchone()[0]
            == 7
        )
        assert conn.execute("SELECT prompt_hash FROM brain.llm_prompts").fetchone()[0] == "h1"


def test_module_without_data_disables_without_force(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    migrate.enable_modules(empty_db, ["settlement"])
    assert migrate.disable_modules(empty_db, ["settlement"]) == ["settlement"]
    assert migrate.enabled_modules(empty_db) == []


def test_timeseries_module_refuses_clearly_without_timescaledb(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    with pytest.raises(migrate.ModuleUnavailable, match="timescaledb extension is not available"):
        migrate.enable_modules(empty_db, ["timeseries"])
    assert "timeseries" not in migrate.enabled_modules(empty_db)
    status = {s.module.name: s for s in migrate.module_status(empty_db)}
    assert status["timeseries"].available is False and status["kpi"].available is True


def test_unknown_module_is_named(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    with pytest.raises(migrate.UnknownModule, match="'nope'"):
        migrate.enable_modules(empty_db, ["nope"])


_DEFINITIONS = {
    "functions": """SELECT pg_get_functiondef(p.oid) FROM pg_proc p
                     JOIN pg_namespace n ON n.oid = p.pronamespace
                    WHERE n.nspname = ANY(%(s)s) AND p.prokind IN ('f', 'p')""",
    "constraints": """SELECT c.conrelid::regclass::text || ' ' || c.conname || ' '
                             || pg_get_constraintdef(c.oid)
                        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
                       WHERE n.nspname = ANY(%(s)s)""",
    "triggers": """SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t
                    JOIN pg_class c ON c.oid = t.tgrelid
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE NOT t.tgisinternal AND n.nspname = ANY(%(s)s)""",
    "indexes": """SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
                   JOIN pg_class c ON c.oid = i.indrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = ANY(%(s)s)""",
    "columns": """SELECT a.attrelid::regclass::text || '.' || a.attname || ' '
                         || format_type(a.atttypid, a.atttypmod) || ' ' || a.attgenerated::text
                    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v')
                     AND n.nspname = ANY(%(s)s)""",
}


def _definitions(conninfo: str) -> dict[str, set[str]]:
    with psycopg.connect(conninfo) as conn:
        return {
            kind: {r[0] for r in conn.execute(query, {"s": [*OUR_SCHEMAS, "public"]})}
            for kind, query in _DEFINITIONS.items()
        }


def test_downgrades_of_the_revisions_that_replace_objects_restore_them_exactly(
    empty_db: str, pg_conninfo: str
) -> None:
    """Revisions 0013 on replace functions, constraints, keys and triggers that earlier
    revisions made. Downgrading past them gives back exactly what 0012 had made: every
    function body, constraint, trigger, index and column."""
    from alembic import command

    before = "0012_roles_security"
    reference = create_database(pg_conninfo, "t_migrate_ref")
    try:
        with migrate._alembic(reference) as config:
            command.upgrade(config, before)
        want = _definitions(reference)
    finally:
        drop_database(pg_conninfo, reference)
    migrate.upgrade(empty_db)
    assert _definitions(empty_db) != want  # the revisions did change something
    migrate.downgrade(empty_db, before)
    got = _definitions(empty_db)
    for kind in _DEFINITIONS:
        assert got[kind] == want[kind], (kind, got[kind] ^ want[kind])
