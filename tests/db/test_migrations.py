"""Migrations up, down and up again; the schema built from the files equals the one the
revisions build; Plus modules on and off; zz_ backups."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.support.fixtures import create_database, drop_database
from tests.support.populate import empty_tables, populate
from tests.support.schema import ALL_AVAILABLE_MODULES
from tradestore.db import migrate
from tradestore.market.listings import resolve_listing

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
    assert pending[0] == "0001_foundation" and pending[-1] == "0014_cache_invalidation"
    assert migrate.upgrade(empty_db) == pending  # built from the files, stamped at head
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


def _execution_triggers(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'trade.executions'::regclass "
                "AND NOT tgisinternal ORDER BY tgname"
            )
        ]


def test_module_without_data_disables_without_force(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    core = _execution_triggers(empty_db)
    assert "tr_executions_fee_from_schedule" not in core
    migrate.enable_modules(empty_db, ["settlement"])
    assert "tr_executions_fee_from_schedule" in _execution_triggers(empty_db)
    assert migrate.disable_modules(empty_db, ["settlement"]) == ["settlement"]
    assert migrate.enabled_modules(empty_db) == []
    # The trigger the module put on the core executions table went with it; the core's stay.
    assert _execution_triggers(empty_db) == core


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
                         || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
                    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                   WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v')
                     AND n.nspname = ANY(%(s)s)""",
    "types": """SELECT format_type(t.oid, NULL) || ' ' || t.typtype::text || ' '
                       || format_type(t.typbasetype, t.typtypmod)
                  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE n.nspname = ANY(%(s)s) AND t.typtype IN ('c', 'd', 'e')
                   AND NOT EXISTS (SELECT 1 FROM pg_class c
                                    WHERE c.oid = t.typrelid AND c.relkind <> 'c')""",
    "views": """SELECT c.oid::regclass::text || ' ' || pg_get_viewdef(c.oid)
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('v', 'm') AND n.nspname = ANY(%(s)s)""",
    "grants": """SELECT c.oid::regclass::text || ' ' || coalesce(c.relacl::text, '-')
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = ANY(%(s)s)
                 UNION ALL
                 SELECT a.attrelid::regclass::text || '.' || a.attname || ' ' || a.attacl::text
                   FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE a.attacl IS NOT NULL AND n.nspname = ANY(%(s)s)
                 UNION ALL
                 SELECT p.oid::regprocedure::text || ' ' || coalesce(p.proacl::text, '-')
                   FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname = ANY(%(s)s)
                 UNION ALL
                 SELECT n.nspname || ' ' || coalesce(n.nspacl::text, '-')
                   FROM pg_namespace n WHERE n.nspname = ANY(%(s)s)
                 UNION ALL
                 SELECT d.defaclrole::regrole::text || ' ' || coalesce(n.nspname, '*') || ' '
                        || d.defaclobjtype::text || ' ' || d.defaclacl::text
                   FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace""",
    "policies": """SELECT schemaname || '.' || tablename || ' ' || policyname || ' ' || permissive
                          || ' ' || roles::text || ' ' || cmd || ' ' || coalesce(qual, '') || ' '
                          || coalesce(with_check, '')
                     FROM pg_policies WHERE schemaname = ANY(%(s)s)
                   UNION ALL
                   SELECT c.oid::regclass::text || ' rls ' || c.relrowsecurity::text || ' '
                          || c.relforcerowsecurity::text
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%(s)s)""",
}


def _definitions(conninfo: str) -> dict[str, set[str]]:
    with psycopg.connect(conninfo) as conn:
        return {
            kind: {r[0] for r in conn.execute(query, {"s": [*OUR_SCHEMAS, "public"]})}
            for kind, query in _DEFINITIONS.items()
        }


def test_the_files_and_the_revisions_build_the_same_schema(empty_db: str, pg_conninfo: str) -> None:
    """A fresh database is built from the SQL files in one go; an existing one got there
    revision by revision from the first. Both must have the same functions, constraints,
    triggers, indexes, columns, grants and policies."""
    from alembic import command

    migrate.upgrade(empty_db)
    migrated = create_database(pg_conninfo, "t_migrate_steps")
    try:
        steps = migrate.pending_revisions(migrated)
        for revision in steps:  # one revision (and one transaction) at a time
            with migrate._alembic(migrated) as config:
                command.upgrade(config, revision)
        assert migrate.current_revisions(migrated) == migrate.current_revisions(empty_db)
        got, want = _definitions(empty_db), _definitions(migrated)
    finally:
        drop_database(pg_conninfo, migrated)
    for kind in _DEFINITIONS:
        assert got[kind], kind
        assert got[kind] == want[kind], (kind, got[kind] ^ want[kind])


def test_downgrade_one_step_from_head_and_up_again(empty_db: str) -> None:
    """The core's downgrade policy: one step back from head works and leaves a working
    schema (a candle write still notifies the cache and keeps its series)."""
    migrate.upgrade(empty_db)
    want = _definitions(empty_db)
    head = migrate.current_revisions(empty_db)
    migrate.downgrade(empty_db, "0012_roles_security")
    assert migrate.current_revisions(empty_db) == {"0012_roles_security"}
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute("SELECT to_regproc('system.cache_order_changed')").fetchone()[0] is None
        conn.execute("LISTEN tradestore_cache")
        with conn.transaction():
            listing = resolve_listing(conn, "binance", "BTC/USDT")
        conn.execute(
            'INSERT INTO market.candles (exchange_instrument_id, timeframe, "time", open, high, '
            "low, close, volume) VALUES (%s, '1m', date_trunc('minute', now()), 1, 1, 1, 1, 1)",
            (listing,),
        )
        assert any('"candles"' in n.payload for n in conn.notifies(timeout=0, stop_after=1))
    migrate.upgrade(empty_db)
    assert migrate.current_revisions(empty_db) == head
    assert _definitions(empty_db) == want


@pytest.mark.parametrize(
    ("folded", "restamped"),
    [
        ("0013_apply_fill_fast_path", "0012_roles_security"),
        ("0015_candle_statement_checks", "0014_cache_invalidation"),
        ("0016_apply_fill_fewer_statements", "0014_cache_invalidation"),
        ("0017_candles_between_ordered", "0014_cache_invalidation"),
    ],
)
def test_a_database_stamped_at_a_folded_revision_is_restamped_and_upgraded(
    empty_db: str, folded: str, restamped: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Development databases built before the fold carry a revision id that no longer
    exists; upgrade restamps them (saying so) and carries on from there."""
    from alembic import command

    with migrate._alembic(empty_db) as config:
        command.upgrade(config, restamped)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (folded,))
    expected = [] if restamped == "0014_cache_invalidation" else ["0014_cache_invalidation"]
    assert migrate.pending_revisions(empty_db) == expected  # status works before the upgrade
    with caplog.at_level("WARNING", logger="tradestore.db.migrate"):
        ran = migrate.upgrade(empty_db)
    assert ran == expected
    assert migrate.current_revisions(empty_db) == {"0014_cache_invalidation"}
    assert any(folded in r.message and restamped in r.message for r in caplog.records)
