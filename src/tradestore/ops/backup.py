"""Backups, restores and point-in-time recovery (seed 004 §6, seed 001 §6, seed 002 §6.2).

Layout under the backup root (TRADESTORE_HOME/backups by default), after seed 004 §6.1:

    daily_full/YYYYMMDD/full_backup.dump + metadata.json   pg_dump -F c -b (logical)
    partial/<schemas>_<stamp>.dump + .json                 pg_dump -n SCHEMA ... (logical)
    base/<stamp>/base.tar.gz, pg_wal.tar.gz, metadata.json  pg_basebackup (physical, for PITR)
    wal_archive/                                            archived WAL segments

A logical dump restores into any PostgreSQL; point-in-time recovery needs a physical base
backup taken before the target time plus the WAL archived since. Seed 004's
`recovery.conf` no longer exists (PostgreSQL 12 moved recovery settings into
postgresql.conf and a `recovery.signal` file); `pitr_restore` does it the current way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tradestore import __version__
from tradestore.db.errors import TradestoreError
from tradestore.db.pgproc import chown_to, log_tail, make_traversable, pg_os_user
from tradestore.db.query import scalar
from tradestore.db.server import EmbeddedPostgres, ServerStartError

# Seed 004 §6.4: full dumps 30 days, "incremental" (base backups) 7 days, WAL 48 hours.
FULL_RETENTION = dt.timedelta(days=30)
BASE_RETENTION = dt.timedelta(days=7)
WAL_RETENTION = dt.timedelta(hours=48)

# Seed 004 §6.3 step 4, plus tradestore's own books.
VERIFY_QUERIES = {
    "stocks": "SELECT count(*) FROM market.stocks",
    "latest_trade_date": "SELECT max(trade_date)::text FROM market.daily_prices",
    "orders": "SELECT count(*) FROM trade.orders",
    "executions": "SELECT count(*) FROM trade.executions",
    "ledger_rows": "SELECT count(*) FROM account.transactions",
    "candles": "SELECT count(*) FROM market.candles",
}


# Roles are cluster-wide, so pg_dump leaves them out; a full dump carries them beside it.
ROLES_FILE = "roles.sql"
# Schemas of PostgreSQL itself, never dropped when a fresh database is reset for a restore.
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


class BackupError(TradestoreError, RuntimeError):
    """A backup or restore step failed; the message carries the tool's own error."""


@dataclass
class BackupInfo:
    kind: str  # full | partial | base
    path: Path
    created_at: str
    database: str
    server_version: str
    size_bytes: int
    sha256: str | None
    schemas: list[str] = field(default_factory=list)
    counts: dict[str, object] = field(default_factory=dict)
    revisions: list[str] = field(default_factory=list)
    tradestore_version: str = __version__

    def to_json(self) -> str:
        data = asdict(self)
        data["path"] = str(self.path)
        return json.dumps(data, indent=2, default=str)


def _pg_args(conninfo: str) -> list[str]:
    params = conninfo_to_dict(conninfo)
    args = []
    if params.get("host"):
        args += ["-h", str(params["host"])]
    if params.get("port"):
        args += ["-p", str(params["port"])]
    if params.get("user"):
        args += ["-U", str(params["user"])]
    return args


def _env(conninfo: str) -> dict[str, str]:
    env = dict(os.environ)
    password = conninfo_to_dict(conninfo).get("password")
    if password:
        env["PGPASSWORD"] = str(password)
    return env


def _run(argv: list[str], conninfo: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(conninfo))
    if proc.returncode:
        raise BackupError(
            f"{Path(argv[0]).name} failed: {proc.stderr.strip() or proc.stdout.strip()}"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _describe(conninfo: str) -> tuple[str, str, list[str]]:
    with psycopg.connect(conninfo) as conn:
        version = scalar(conn, "SHOW server_version")
        database = scalar(conn, "SELECT current_database()")
        has_alembic = scalar(conn, "SELECT to_regclass('public.alembic_version') IS NOT NULL")
        revisions = (
            sorted(r[0] for r in conn.execute("SELECT version_num FROM public.alembic_version"))
            if has_alembic
            else []
        )
    return database, version, revisions


def verify(conninfo: str) -> dict[str, object]:
    """The post-restore checks of seed 004 §6.3 (counts and the latest trade date)."""
    results: dict[str, object] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name, query in VERIFY_QUERIES.items():
            try:
                results[name] = scalar(conn, query)
            except psycopg.errors.UndefinedTable:
                results[name] = None
    return results


def full_backup(
    conninfo: str, root: Path, *, schemas: list[str] | None = None, now: dt.datetime | None = None
) -> BackupInfo:
    """A logical dump (pg_dump -F c -b), whole database or only `schemas` (seed 004 §6.2)."""
    now = now or _now()
    database, version, revisions = _describe(conninfo)
    if schemas:
        folder = root / "partial"
        target = folder / f"{'_'.join(schemas)}_{now:%Y%m%dT%H%M%S}.dump"
    else:
        folder = root / "daily_full" / f"{now:%Y%m%d}"
        target = folder / "full_backup.dump"
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".dump.part")
    argv = [
        str(EmbeddedPostgres.bin("pg_dump")),
        *_pg_args(conninfo),
        "-F",
        "c",
        "-b",
        "-f",
        str(partial),
    ]
    for schema in schemas or []:
        argv += ["-n", schema]
    _run([*argv, database], conninfo)
    partial.replace(target)  # a crash mid-dump never leaves a file that looks complete
    if not schemas:
        _dump_roles(conninfo, database, folder / ROLES_FILE)
    info = BackupInfo(
        kind="partial" if schemas else "full",
        path=target,
        created_at=now.isoformat(),
        database=database,
        server_version=version,
        size_bytes=target.stat().st_size,
        sha256=_sha256(target),
        schemas=list(schemas or []),
        counts=verify(conninfo),
        revisions=revisions,
    )
    meta = folder / "metadata.json" if not schemas else target.with_suffix(".json")
    meta.write_text(info.to_json())
    return info


def _dump_roles(conninfo: str, database: str, target: Path) -> None:
    """The cluster's roles and memberships (no passwords), which a dump's GRANTs and
    policies name: a restore into a new cluster creates them first."""
    partial = target.with_suffix(".sql.part")
    argv = [str(EmbeddedPostgres.bin("pg_dumpall")), *_pg_args(conninfo), "-l", database,
            "--roles-only", "--no-role-passwords", "-f", str(partial)]  # fmt: skip
    _run(argv, conninfo)
    partial.replace(target)


def _restore_roles(roles: Path, conninfo: str) -> list[str]:
    """Create the roles a dump needs that the target cluster lacks. Statements about
    roles that exist already (the superuser, roles made by an earlier restore or by
    `db upgrade`) fail harmlessly and are skipped; returns what was skipped and why."""
    skipped = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for line in roles.read_text().splitlines():
            statement = line.strip()
            # psql meta-commands (\connect, \restrict), comments and session SETs
            if not statement or statement.startswith(("--", "\\", "SET ")):
                continue
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                skipped.append(f"{statement}: {str(exc).strip().splitlines()[0]}")
    return skipped


def _holds_data(conn: psycopg.Connection) -> list[str]:
    """The tables counted after a restore (orders, ledger, ...) that hold rows."""
    holding = []
    for name, query in VERIFY_QUERIES.items():
        if not query.startswith("SELECT count(*)"):
            continue
        try:
            with conn.transaction():
                if scalar(conn, query):
                    holding.append(name)
        except psycopg.errors.UndefinedTable:
            continue
    return holding


def holding_data(conninfo: str) -> list[str]:
    """Which of the counted tables (orders, ledger, candles ...) hold rows."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return _holds_data(conn)


def check_dump(dump: Path) -> None:
    """A dump is complete and readable: its checksum matches and pg_restore can list its
    table of contents (a truncated or damaged archive fails here)."""
    meta = (
        dump.parent / "metadata.json"
        if dump.name == "full_backup.dump"
        else dump.with_suffix(".json")
    )
    if meta.exists():
        expected = json.loads(meta.read_text()).get("sha256")
        if expected and expected != _sha256(dump):
            raise BackupError(f"{dump} does not match the checksum recorded when it was made")
    proc = subprocess.run(
        [str(EmbeddedPostgres.bin("pg_restore")), "--list", str(dump)],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode or "TABLE DATA" not in proc.stdout:
        raise BackupError(
            f"pg_restore cannot read {dump}: {proc.stderr.strip() or 'no table data'}"
        )


def _prepare_full_target(conninfo: str) -> None:
    """A full dump recreates every schema, so it needs an empty database. A database that
    `db upgrade` (or `up`) set up but that holds none of the counted data is emptied
    first; one that holds data is refused."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        schemas = [
            r[0]
            for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname <> ALL(%s) "
                "AND nspname NOT LIKE 'pg\\_temp\\_%%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' "
                "ORDER BY 1",
                (list(_SYSTEM_SCHEMAS),),
            )
        ]
        extensions = [
            r[0]
            for r in conn.execute("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")
        ]
        if schemas == ["public"] and not extensions:
            public_empty = not scalar(
                conn,
                "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public')",
            )
            if public_empty:
                return
        holding = _holds_data(conn)
        if holding:
            raise BackupError(
                f"the target database already holds data ({', '.join(holding)}); a full dump "
                "restores into an empty database only: use a new TRADESTORE_HOME or DATABASE_URL"
            )
        # Set up by migrations but empty: start from nothing so the dump's own schema wins.
        with conn.transaction():
            for ext in extensions:
                conn.execute(f'DROP EXTENSION IF EXISTS "{ext}" CASCADE')
            for schema in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute("CREATE SCHEMA public AUTHORIZATION pg_database_owner")
            conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")


def _check_restored(conninfo: str, expected: dict[str, object] | None) -> dict[str, object]:
    """The counts of seed 004 §6.3 step 4, compared with the ones recorded at backup time,
    and the ledger's hash chain walked end to end."""
    counts = verify(conninfo)
    if expected:
        differ = {k: (expected.get(k), v) for k, v in counts.items() if expected.get(k) != v}
        if differ:
            detail = ", ".join(f"{k}: backup {a}, restored {b}" for k, (a, b) in differ.items())
            raise BackupError(f"restored, but the counts differ from the backup's: {detail}")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if scalar(conn, "SELECT to_regproc('account.verify_ledger') IS NOT NULL"):
            problems = scalar(conn, "SELECT count(*) FROM account.verify_ledger(NULL)")
            if problems:
                raise BackupError(
                    f"restored, but the ledger does not verify: {problems} problem(s); "
                    "run `tradestore ledger verify` for the details"
                )
    return counts


def _prepare_partial_target(conninfo: str, schemas: list[str], replace: bool) -> None:
    """Refuse to load rows over existing ones; with replace, empty the tables first
    (migration-seeded configuration included: the dump carries its own copy)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s) "
                "AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
                (schemas,),
            )
        ]
        holding = [t for t in tables if scalar(conn, f"SELECT EXISTS (SELECT 1 FROM {t})")]
        if holding and not replace:
            raise BackupError(
                f"target tables already hold rows: {', '.join(holding)}; restore into a fresh "
                "database or pass replace=True (--replace) to empty them first"
            )
        if holding:
            # Foreign keys are checked after the load instead (foreign_key_orphans):
            # clearing parent tables before their children would otherwise refuse.
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
                for table in holding:
                    conn.execute(f"DELETE FROM {table}")


def foreign_key_orphans(conninfo: str, schemas: list[str]) -> list[str]:
    """Foreign keys into or out of `schemas` that rows violate (after a data-only load)."""
    problems = []
    with psycopg.connect(conninfo) as conn:
        constraints = conn.execute(
            """
            SELECT c.conname, c.conrelid::regclass::text, c.confrelid::regclass::text,
                   array_agg(a.attname ORDER BY k.ord), array_agg(fa.attname ORDER BY k.ord)
              FROM pg_constraint c
              CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(col, fcol, ord)
              JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.col
              JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = k.fcol
              JOIN pg_class child ON child.oid = c.conrelid
              JOIN pg_namespace cn ON cn.oid = child.relnamespace
              JOIN pg_class parent ON parent.oid = c.confrelid
              JOIN pg_namespace pn ON pn.oid = parent.relnamespace
             WHERE c.contype = 'f' AND NOT child.relispartition
               AND (cn.nspname = ANY(%s) OR pn.nspname = ANY(%s))
             GROUP BY c.oid, c.conname, c.conrelid, c.confrelid
            """,
            (schemas, schemas),
        ).fetchall()
        for name, child, parent, cols, pcols in constraints:
            match = " AND ".join(f'p."{pc}" = c."{cc}"' for cc, pc in zip(cols, pcols, strict=True))
            not_null = " AND ".join(f'c."{cc}" IS NOT NULL' for cc in cols)
            count = scalar(
                conn,
                f"SELECT count(*) FROM {child} c WHERE {not_null} "
                f"AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {match})",
            )
            if count:
                problems.append(f"{count} row(s) of {child} break {name} (-> {parent})")
    return problems


def restore(
    dump: Path, target_conninfo: str, *, jobs: int = 2, replace: bool = False
) -> dict[str, object]:
    """Restore a logical dump and verify it (seed 004 §6.3).

    A full dump goes into an empty database. A partial dump (some schemas) holds objects
    that depend on the rest of the schema, so it restores its rows only, into a database
    migrated to the same revision whose tables in those schemas are empty; triggers are
    off during the load so rows come back exactly as dumped.
    """
    if not dump.exists():
        raise BackupError(f"backup file {dump} does not exist")
    meta = (
        dump.parent / "metadata.json"
        if dump.name == "full_backup.dump"
        else dump.with_suffix(".json")
    )
    partial = False
    recorded: dict[str, Any] = {}
    if meta.exists():
        recorded = json.loads(meta.read_text())
        partial = recorded.get("kind") == "partial"
        expected = recorded.get("sha256")
        if expected and expected != _sha256(dump):
            raise BackupError(f"{dump} does not match the checksum recorded when it was made")
    if partial:
        _prepare_partial_target(target_conninfo, recorded.get("schemas", []), replace)
    else:
        roles = dump.parent / ROLES_FILE
        if roles.exists():
            _restore_roles(roles, target_conninfo)
        _prepare_full_target(target_conninfo)
    database = str(conninfo_to_dict(target_conninfo)["dbname"])
    argv = [str(EmbeddedPostgres.bin("pg_restore")), *_pg_args(target_conninfo), "--exit-on-error",
            "-d", database]  # fmt: skip
    argv += ["--data-only", "--disable-triggers"] if partial else ["-j", str(jobs)]
    _run([*argv, str(dump)], target_conninfo)
    if partial:
        orphans = foreign_key_orphans(target_conninfo, recorded.get("schemas", []))
        if orphans:
            raise BackupError("restored, but references do not hold: " + "; ".join(orphans))
        return verify(target_conninfo)
    return _check_restored(target_conninfo, recorded.get("counts"))


def base_backup(
    conninfo: str,
    root: Path,
    *,
    incremental_from: Path | None = None,
    now: dt.datetime | None = None,
) -> BackupInfo:
    """A physical base backup (pg_basebackup), the starting point of point-in-time recovery.

    With `incremental_from` (an earlier base backup folder) it is an incremental backup
    (PostgreSQL 17+, seed 004's hourly incrementals); `pitr_restore` combines the chain.
    """
    now = now or _now()
    database, version, revisions = _describe(conninfo)
    folder = root / "base" / f"{now:%Y%m%dT%H%M%S}"
    n = 1
    while folder.exists():  # two backups within one second (an incremental right after)
        n += 1
        folder = root / "base" / f"{now:%Y%m%dT%H%M%S}_{n}"
    scratch = folder.with_name(folder.name + ".part")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    argv = [str(EmbeddedPostgres.bin("pg_basebackup")), *_pg_args(conninfo), "-D", str(scratch),
            "-F", "t", "-z", "-X", "stream", "-c", "fast", "--no-password"]  # fmt: skip
    if incremental_from is not None:
        argv += ["--incremental", str(incremental_from / "backup_manifest")]
    _run(argv, conninfo)
    scratch.rename(folder)
    info = BackupInfo(
        kind="incremental" if incremental_from else "base",
        path=folder,
        created_at=now.isoformat(),
        database=database,
        server_version=version,
        size_bytes=sum(p.stat().st_size for p in folder.iterdir()),
        sha256=None,
        counts=verify(conninfo),
        revisions=revisions,
    )
    data = json.loads(info.to_json())
    data["parent"] = str(incremental_from) if incremental_from else None
    (folder / "metadata.json").write_text(json.dumps(data, indent=2))
    return info


def newest_base(root: Path) -> Path | None:
    """The newest physical backup (base or incremental) under root: an incremental's parent."""
    bases = sorted(p.parent for p in (root / "base").glob("*/backup_manifest"))
    return bases[-1] if bases else None


def list_backups(root: Path) -> list[dict[str, object]]:
    """Every backup under root with its metadata, oldest first."""
    found = []
    for meta in sorted(root.glob("*/*/metadata.json")) + sorted(root.glob("partial/*.json")):
        data = json.loads(meta.read_text())
        found.append(data)
    return sorted(found, key=lambda d: str(d.get("created_at")))


def base_for(root: Path, target_time: dt.datetime) -> Path | None:
    """The newest base or incremental backup under root taken at or before target_time."""
    candidates = [
        Path(str(m["path"])) for m in list_backups(root)
        if m.get("kind") in ("base", "incremental")
        and dt.datetime.fromisoformat(str(m["created_at"])) <= target_time
    ]  # fmt: skip
    if not candidates:
        return None
    # metadata.json records where the backup was taken; a copy (pulled from offsite,
    # moved disk) finds it by name beside the metadata instead.
    found = candidates[-1]
    return found if found.exists() else root / "base" / found.name


def _chain(base: Path) -> list[Path]:
    """The base backup and the incrementals it depends on, oldest first. A parent is
    found beside its child (by name) when the recorded path is gone: backups copied
    elsewhere keep their chain."""
    chain = [base]
    while True:
        parent = json.loads((chain[0] / "metadata.json").read_text()).get("parent")
        if not parent:
            return chain
        sibling = chain[0].parent / Path(parent).name
        chain.insert(0, sibling if sibling.exists() else Path(parent))


def _extract(base: Path, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, mode=0o700)
    with tarfile.open(base / "base.tar.gz") as tar:
        tar.extractall(data_dir, filter="data")
    wal = base / "pg_wal.tar.gz"
    if wal.exists():
        with tarfile.open(wal) as tar:
            tar.extractall(data_dir / "pg_wal", filter="data")
    manifest = base / "backup_manifest"
    if manifest.exists():  # pg_combinebackup reads each link's manifest from its directory
        shutil.copy2(manifest, data_dir / "backup_manifest")


def pitr_restore(
    base: Path, wal_archive: Path, target_time: dt.datetime, new_home: Path, *, timeout: float = 120
) -> EmbeddedPostgres:
    """Recover a new server in `new_home` to `target_time` (seed 004 §6.3 step 3).

    Restores the base backup (combining an incremental chain with pg_combinebackup),
    replays archived WAL up to the target, promotes, and returns the running server.
    The original server is not touched.
    """
    if target_time.tzinfo is None:
        raise BackupError("target_time: must carry a time zone (UTC recommended)")
    chain = _chain(base)
    created = dt.datetime.fromisoformat(
        json.loads((chain[-1] / "metadata.json").read_text())["created_at"]
    )
    if target_time < created:
        raise BackupError(
            f"target_time {target_time.isoformat()} is before base backup {base.name}; "
            "use an older base backup"
        )
    _check_archive_reaches(wal_archive, target_time)
    new_home.mkdir(parents=True, exist_ok=True)
    data_dir = new_home / "pgdata"
    if data_dir.exists():
        raise BackupError(f"{data_dir} already exists; restore into an empty TRADESTORE_HOME")
    if len(chain) == 1:
        _extract(base, data_dir)
    else:
        parts = []
        for i, link in enumerate(chain):
            part = new_home / f"chain{i}"
            _extract(link, part)
            parts.append(str(part))
        argv = [str(EmbeddedPostgres.bin("pg_combinebackup")), "-o", str(data_dir), *parts]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode:
            raise BackupError(f"pg_combinebackup failed: {proc.stderr.strip()}")
        for part in parts:
            shutil.rmtree(part, ignore_errors=True)
    for leftover in ("postmaster.pid", "postmaster.opts"):
        (data_dir / leftover).unlink(missing_ok=True)
    recovery = (
        "\n# point-in-time recovery by tradestore\n"
        f'restore_command = \'cp "{wal_archive}/%f" "%p"\'\n'
        f"recovery_target_time = '{target_time.isoformat()}'\n"
        "recovery_target_action = 'promote'\n"
    )
    with (data_dir / "postgresql.auto.conf").open("a") as fh:
        fh.write(recovery)
    (data_dir / "recovery.signal").touch()
    user = pg_os_user()  # as root, PostgreSQL runs as its own OS user and must own the files
    if user is not None:
        make_traversable(new_home)
        for path in [data_dir, *data_dir.rglob("*")]:
            chown_to(path, user)
    data_dir.chmod(0o700)
    server = EmbeddedPostgres(new_home)  # no archiving of its own until the user says so
    try:
        server.start()
        deadline = time.monotonic() + timeout
        with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
            while scalar(conn, "SELECT pg_is_in_recovery()"):
                if time.monotonic() > deadline:
                    raise BackupError(
                        f"recovery did not finish within {timeout:.0f}s; see {server.log_file}"
                    )
                time.sleep(0.2)
            for setting in ("restore_command", "recovery_target_time", "recovery_target_action"):
                conn.execute(f"ALTER SYSTEM RESET {setting}")
            conn.execute("SELECT pg_reload_conf()")
    except (ServerStartError, psycopg.OperationalError) as exc:
        # The server ends recovery with FATAL when the archive runs out before the target.
        if _RECOVERY_SHORT in log_tail(server.log_file, 200):
            raise BackupError(_not_archived(target_time, wal_archive)) from None
        raise BackupError(f"recovery failed: {exc}") from None
    return server


# PostgreSQL's message when the archived WAL ends before recovery_target_time.
_RECOVERY_SHORT = "recovery ended before configured recovery target was reached"


def _not_archived(target_time: dt.datetime, wal_archive: Path) -> str:
    return (
        f"the WAL for {target_time.isoformat()} is not archived yet in {wal_archive}: "
        "a segment is archived when it fills or at the latest 15 minutes after a write "
        "(archive_timeout). Retry later, run `SELECT pg_switch_wal()` on the running "
        "server to archive the current segment now, or choose an earlier --to"
    )


def _check_archive_reaches(wal_archive: Path, target_time: dt.datetime) -> None:
    """Refuse a target after the newest archived segment: WAL written after that moment
    is not in the archive, so recovery could not reach the target."""
    segments = [p for p in wal_archive.glob("*") if p.is_file()] if wal_archive.is_dir() else []
    newest = max((p.stat().st_mtime for p in segments), default=None)
    if newest is None or target_time.timestamp() >= newest:
        raise BackupError(_not_archived(target_time, wal_archive))


def prune(root: Path, *, now: dt.datetime | None = None) -> list[Path]:
    """Delete backups past seed 004 §6.4's retention; never the newest full or base backup,
    nor WAL that the oldest kept base backup still needs."""
    now = now or _now()
    removed: list[Path] = []
    fulls = sorted((root / "daily_full").glob("*/metadata.json"))
    for meta in fulls[:-1]:
        if (
            now - dt.datetime.fromisoformat(json.loads(meta.read_text())["created_at"])
            > FULL_RETENTION
        ):
            shutil.rmtree(meta.parent)
            removed.append(meta.parent)
    for meta in sorted((root / "partial").glob("*.json")):
        if (
            now - dt.datetime.fromisoformat(json.loads(meta.read_text())["created_at"])
            > FULL_RETENTION
        ):
            meta.with_suffix(".dump").unlink(missing_ok=True)
            meta.unlink()
            removed.append(meta)
    bases = sorted((root / "base").glob("*/metadata.json"))
    kept_bases = []
    needed: set[Path] = set()
    for meta in bases:
        age = now - dt.datetime.fromisoformat(json.loads(meta.read_text())["created_at"])
        if age <= BASE_RETENTION or meta == bases[-1]:
            kept_bases.append(meta.parent)
            needed.update(_chain(meta.parent))
    for meta in bases:
        if meta.parent not in needed:
            shutil.rmtree(meta.parent)
            removed.append(meta.parent)
    oldest_needed = min(
        (
            dt.datetime.fromisoformat(json.loads((p / "metadata.json").read_text())["created_at"])
            for p in needed
        ),
        default=now,
    )
    wal_cutoff = min(now - WAL_RETENTION, oldest_needed)
    for segment in sorted((root / "wal_archive").glob("*")):
        mtime = dt.datetime.fromtimestamp(segment.stat().st_mtime, dt.UTC)
        if segment.is_file() and mtime < wal_cutoff:
            segment.unlink()
            removed.append(segment)
    return removed
