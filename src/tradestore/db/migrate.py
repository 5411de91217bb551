"""Schema migrations (Alembic) and the Lite/Plus module switches (seed 001 §0, §5, §7).

The Lite core is one Alembic branch (`core`), always installed. Each Plus module is a
branch of its own that depends on the core, so modules are enabled (`<name>@head`) and
disabled (`<name>@base`) one at a time.

The `<capability>/sql/*.sql` files hold the current definition of everything the core
owns; each core revision applies the files it lists. A fresh database is built from the
files in one transaction and stamped at the core head (build_from_files); an existing
one is upgraded revision by revision. tests/db/test_migrations.py checks that both give
the same catalog.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy.pool import NullPool

from tradestore.db.errors import TradestoreError
from tradestore.db.query import scalar
from tradestore.db.schema_ops import BACKUP_SCHEMA, DataWouldBeLost, ModuleUnavailable
from tradestore.db.sqlfiles import created_objects, execute_script, read

__all__ = [
    "MODULES",
    "DataWouldBeLost",
    "Module",
    "ModuleStatus",
    "ModuleUnavailable",
    "UnknownModule",
    "build_from_files",
    "core_files",
    "current_revisions",
    "disable_modules",
    "downgrade",
    "enable_modules",
    "module_status",
    "pending_revisions",
    "upgrade",
]

CORE_BRANCH = "core"

log = logging.getLogger(__name__)

# Revisions of development builds before the first release, since folded into the files
# they patched. A database stamped at one already has their changes, so it is restamped
# at the revision that now stands for its schema (and upgraded from there).
FOLDED_REVISIONS = {
    "0013_apply_fill_fast_path": "0012_roles_security",
    "0015_candle_statement_checks": "0014_cache_invalidation",
    "0016_apply_fill_fewer_statements": "0014_cache_invalidation",
    "0017_candles_between_ordered": "0014_cache_invalidation",
}


@dataclass(frozen=True)
class Module:
    name: str
    seed_section: str
    summary: str
    sql_file: str | None


MODULES: dict[str, Module] = {
    m.name: m
    for m in (
        Module(
            "dedupe",
            "001 §5.1, §5.7",
            "inbound dedupe keys, mark_idem_seen, TradingView alert box",
            "inbound/sql/module_dedupe.sql",
        ),
        Module(
            "settlement",
            "001 §5.2",
            "fee schedules, funding rates, FX snapshots",
            "trading/sql/module_settlement.sql",
        ),
        Module(
            "symbol_events",
            "001 §5.3",
            "corporate actions and symbol/listing events",
            "market/sql/module_symbol_events.sql",
        ),
        Module("kpi", "001 §5.4", "operational KPI snapshots", "ops/sql/module_kpi.sql"),
        Module(
            "llm_trace",
            "001 §5.5",
            "prompt hash, data snapshot key, model version on LLM traces",
            "brain/sql/module_llm_trace.sql",
        ),
        Module("timeseries", "001 §5.6", "TimescaleDB extension (when the server offers it)", None),
    )
}


class UnknownModule(TradestoreError, ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"module: unknown module {name!r} (known: {', '.join(MODULES)})")


@dataclass(frozen=True)
class ModuleStatus:
    module: Module
    enabled: bool
    available: bool
    rows: int


def _script_location() -> str:
    return str(resources.files("tradestore.db").joinpath("migrations"))


@contextmanager
def _alembic(conninfo: str, **attributes: object) -> Iterator[Config]:
    engine = sa.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(conninfo), poolclass=NullPool
    )
    try:
        with engine.connect() as connection:
            config = Config()
            config.set_main_option("script_location", _script_location())
            config.attributes["connection"] = connection
            config.attributes.update(attributes)
            yield config
            connection.commit()
    finally:
        engine.dispose()


@functools.cache  # the revision files do not change while the process runs
def _script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", _script_location())
    return ScriptDirectory.from_config(config)


def current_revisions(conninfo: str) -> set[str]:
    """Revisions applied to the database (every branch's current head)."""
    with psycopg.connect(conninfo) as conn:
        exists = scalar(conn, "SELECT to_regclass('public.alembic_version') IS NOT NULL")
        if not exists:
            return set()
        return {r[0] for r in conn.execute("SELECT version_num FROM public.alembic_version")}


def _applied_with_ancestors(current: set[str]) -> set[str]:
    script = _script()
    applied: set[str] = set()
    for rev in current:
        rev = FOLDED_REVISIONS.get(rev, rev)  # what upgrade() will restamp it as
        applied.update(r.revision for r in script.iterate_revisions(rev, "base"))
    return applied


def enabled_modules(conninfo: str) -> list[str]:
    applied = _applied_with_ancestors(current_revisions(conninfo))
    return [name for name in MODULES if _module_base(name) in applied]


def _module_base(name: str) -> str:
    return f"m_{name}_0001"


def pending_revisions(conninfo: str) -> list[str]:
    """Core revisions (and revisions of enabled modules) not yet applied, oldest first."""
    script = _script()
    applied = _applied_with_ancestors(current_revisions(conninfo))
    targets = [f"{CORE_BRANCH}@head"] + [f"{m}@head" for m in enabled_modules(conninfo)]
    pending: list[str] = []
    for target in targets:
        for rev in reversed(list(script.iterate_revisions(target, "base"))):
            if rev.revision not in applied and rev.revision not in pending:
                pending.append(rev.revision)
    return pending


def _core_revisions() -> list[str]:
    """The core revisions, oldest first."""
    script = _script()
    return [
        r.revision for r in reversed(list(script.iterate_revisions(f"{CORE_BRANCH}@head", "base")))
    ]


def core_files() -> list[str]:
    """Every SQL file of the core, in the order the core revisions apply them."""
    script = _script()
    return [path for rev in _core_revisions() for path in script.get_revision(rev).module.FILES]


def build_from_files(conninfo: str) -> list[str]:
    """Build the core of an empty database from the SQL files, in one transaction, and
    stamp it at the core head. Returns the core revisions it stands for."""
    if current_revisions(conninfo):
        raise RuntimeError("build_from_files: the database already has a schema version")
    with _alembic(conninfo) as config:
        raw = config.attributes["connection"].connection.dbapi_connection
        for path in core_files():
            execute_script(raw, read(path))
        command.stamp(config, f"{CORE_BRANCH}@head")
    return _core_revisions()


def restamp_folded(conninfo: str) -> dict[str, str]:
    """Restamp a database stamped at a folded revision (see FOLDED_REVISIONS). Returns
    {old: new} for what it changed."""
    changed: dict[str, str] = {}
    with psycopg.connect(conninfo) as conn:
        exists = scalar(conn, "SELECT to_regclass('public.alembic_version') IS NOT NULL")
        if not exists:
            return changed
        for (old,) in conn.execute("SELECT version_num FROM public.alembic_version").fetchall():
            new = FOLDED_REVISIONS.get(old)
            if new is None:
                continue
            conn.execute(
                "UPDATE public.alembic_version SET version_num = %s WHERE version_num = %s",
                (new, old),
            )
            changed[old] = new
            log.warning(
                "schema version %s was folded into the SQL files before the first release; "
                "restamped the database at %s (a development database: objects edited in the "
                "files since it was built are not re-applied, rebuild it to get them)",
                old,
                new,
            )
    return changed


def upgrade(conninfo: str) -> list[str]:
    """Bring the core, and every enabled module, to its newest revision. An empty
    database is built from the files. Returns the revisions that ran (or were built)."""
    if not current_revisions(conninfo):
        return build_from_files(conninfo)
    restamp_folded(conninfo)
    pending = pending_revisions(conninfo)
    modules = enabled_modules(conninfo)
    with _alembic(conninfo) as config:
        command.upgrade(config, f"{CORE_BRANCH}@head")
        for name in modules:
            command.upgrade(config, f"{name}@head")
    return pending


def downgrade(conninfo: str, revision: str, *, force: bool = False) -> None:
    """Downgrade to `revision` ('base' removes everything). Tables that hold data are
    refused unless force, and then copied to zz_backup first."""
    with _alembic(
        conninfo, force=force, backup_label=f"downgrade:{revision}", transaction_per_migration=False
    ) as config:
        command.downgrade(config, revision)


def _check_names(names: Iterable[str]) -> list[str]:
    checked = []
    for name in names:
        if name not in MODULES:
            raise UnknownModule(name)
        checked.append(name)
    return checked


def enable_modules(conninfo: str, names: Iterable[str], *, restore: bool = False) -> list[str]:
    """Enable modules (core must be installed). With restore, refill each module table
    from its newest zz_ backup. Returns the modules that were newly enabled."""
    names = _check_names(names)
    already = set(enabled_modules(conninfo))
    enabled = []
    for name in names:
        if name in already:
            continue
        with _alembic(conninfo) as config:
            command.upgrade(config, f"{name}@head")
        enabled.append(name)
        if restore:
            restore_module(conninfo, name)
    return enabled


def disable_modules(conninfo: str, names: Iterable[str], *, force: bool = False) -> list[str]:
    """Disable modules. Refused while a module holds data unless force; forced, its data
    is kept in zz_ backup tables. Returns the modules that were disabled."""
    names = _check_names(names)
    enabled = set(enabled_modules(conninfo))
    disabled = []
    for name in names:
        if name not in enabled:
            continue
        with _alembic(conninfo, force=force, backup_label=f"module:{name}") as config:
            command.downgrade(config, f"{name}@base")
        disabled.append(name)
    return disabled


def module_status(conninfo: str) -> list[ModuleStatus]:
    enabled = set(enabled_modules(conninfo))
    statuses = []
    with psycopg.connect(conninfo) as conn:
        timescale = scalar(
            conn, "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
        )
        for module in MODULES.values():
            rows = 0
            if module.name in enabled and module.sql_file:
                for obj in created_objects(read(module.sql_file)):
                    if obj.kind == "TABLE":
                        rows += scalar(
                            conn,
                            sql.SQL("SELECT count(*) FROM {}").format(
                                sql.Identifier(*obj.name.split("."))
                            ),
                        )
            available = timescale if module.name == "timeseries" else True
            statuses.append(ModuleStatus(module, module.name in enabled, available, rows))
    return statuses


def restore_module(conninfo: str, name: str) -> dict[str, int]:
    """Copy each module table's (and column's) newest zz_ backup back in. Returns rows per source."""
    module = MODULES[name]
    if module.sql_file is None:
        return {}
    restored: dict[str, int] = {}
    with psycopg.connect(conninfo) as conn:
        if not scalar(conn, "SELECT to_regclass(%s) IS NOT NULL", (f"{BACKUP_SCHEMA}.backups",)):
            return {}
        for obj in created_objects(read(module.sql_file)):
            if obj.kind not in ("TABLE", "COLUMN"):
                continue
            row = conn.execute(
                f"SELECT backup_table, key_columns FROM {BACKUP_SCHEMA}.backups "
                "WHERE source = %s ORDER BY id DESC LIMIT 1",
                (obj.name,),
            ).fetchone()
            if row is None:
                continue
            backup_table, keys = row
            parts = obj.name.split(".")
            if obj.kind == "TABLE":
                # Generated columns are recomputed; enum columns were backed up as text
                # and are cast back to their type.
                columns = conn.execute(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                    "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
                    "AND a.attgenerated = '' ORDER BY a.attnum",
                    (obj.name,),
                ).fetchall()
                cur = conn.execute(
                    sql.SQL("INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM {}").format(
                        sql.Identifier(*parts),
                        sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns),
                        sql.SQL(", ").join(
                            sql.SQL("{}::{}").format(sql.Identifier(c), sql.SQL(t))
                            for c, t in columns
                        ),
                        sql.Identifier(BACKUP_SCHEMA, backup_table),
                    )
                )
                _bump_identity(conn, parts[0], parts[1])
            else:
                match = sql.SQL(" AND ").join(
                    sql.SQL("t.{} = b.{}").format(sql.Identifier(k), sql.Identifier(k))
                    for k in keys
                )
                cur = conn.execute(
                    sql.SQL("UPDATE {} t SET {} = b.{} FROM {} b WHERE {}").format(
                        sql.Identifier(parts[0], parts[1]),
                        sql.Identifier(parts[2]),
                        sql.Identifier(parts[2]),
                        sql.Identifier(BACKUP_SCHEMA, backup_table),
                        match,
                    )
                )
            restored[obj.name] = cur.rowcount
    return restored


def _bump_identity(conn: psycopg.Connection, schema: str, table: str) -> None:
    for (column,) in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND is_identity = 'YES'",
        (schema, table),
    ).fetchall():
        conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({}, {}), coalesce(max({}), 0) + 1, false) FROM {}"
            ).format(
                sql.Literal(f"{schema}.{table}"),
                sql.Literal(column),
                sql.Identifier(column),
                sql.Identifier(schema, table),
            )
        )
