"""Embedded PostgreSQL server living under TRADESTORE_HOME.

Layout of `home`:
    pgdata/            the cluster (initdb'd once, atomically via pgdata.init/ + rename)
    log/postgres.log   server log (pg_ctl -l)
    run/               unix socket dir (or /tmp/tradestore-<hash>/ if the path is too long)
    server.lock        flock serializing start/stop between processes
    server.owner       which process started the running server and will stop it
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import stat
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal
from urllib.parse import quote

import psycopg

from tradestore.db.errors import TradestoreError
from tradestore.db.pgproc import (
    OsUser,
    PgCommandError,
    PostmasterPid,
    chown_to,
    is_postmaster_for,
    kill_orphan_backends,
    log_tail,
    make_traversable,
    pg_bin,
    pg_os_user,
    run_pg,
)
from tradestore.ownership import ReentrantFileLock, owner_alive, read_owner, write_owner

__all__ = [
    "DB_NAME",
    "SUPERUSER",
    "EmbeddedPostgres",
    "ServerStartError",
    "ServerStatus",
    "ShutdownMode",
    "install_signal_handlers",
    "socket_dir_for",
]

log = logging.getLogger(__name__)

DB_NAME = "tradestore"
SUPERUSER = "postgres"
# With port=0 we only listen on a socket, but its file name still carries a port number.
SOCKET_ONLY_PORT = 5432
# sun_path is 108 bytes on Linux (104 on macOS); keep a margin.
SOCKET_PATH_LIMIT = 100
MAX_LOG_BYTES = 10 * 1024 * 1024

ShutdownMode = Literal["smart", "fast", "immediate"]

_PG_HBA = """\
# Managed by tradestore. Trust only the unix socket, whose directory is private (0700);
# TCP connections need a password.
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  trust
local   replication  all                  trust
host    all          all   127.0.0.1/32   scram-sha-256
host    all          all   ::1/128        scram-sha-256
"""


class ServerStartError(TradestoreError, RuntimeError):
    """PostgreSQL could not be initialized or started; the message includes the log tail."""


@dataclass(frozen=True)
class ServerStatus:
    data_dir: Path
    running: bool
    state: str  # "stopped", "stale" (leftover pid file), or postmaster.pid's status line
    pid: int | None
    owner_pid: int | None  # process that will stop the server, if it is alive
    owned: bool  # whether *this* EmbeddedPostgres instance owns it
    socket_dir: Path | None
    port: int | None


def socket_dir_for(home: Path, port: int = 0) -> Path:
    """`home/run`, unless the socket path would exceed the unix socket path limit."""
    candidate = home / "run"
    sock = candidate / f".s.PGSQL.{port or SOCKET_ONLY_PORT}"
    if len(os.fsencode(sock)) <= SOCKET_PATH_LIMIT:
        return candidate
    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:16]
    return Path("/tmp") / f"tradestore-{digest}"


def _conf_str(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


class EmbeddedPostgres:
    """A PostgreSQL cluster under `home`, started on demand and shared between processes.

    The process that starts the server owns it and stops it (on `stop()`, at exit, or when
    leaving the `with` block). Other processes attach to the running server and never stop
    it. If the owner died without stopping it, the next process adopts it.
    """

    def __init__(
        self,
        home: Path | str,
        port: int = 0,
        *,
        adopt_orphans: bool = True,
        timeout: float = 60.0,
        wal_archive: Path | str | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, got {port}")
        # Resolved, so that the socket-dir hash and data-dir comparisons are stable.
        self.home = Path(home).expanduser().resolve()
        self.port = port
        self.adopt_orphans = adopt_orphans
        self.timeout = timeout
        # Where finished WAL segments are archived (for point-in-time recovery); None
        # leaves archiving off.
        self.wal_archive = Path(wal_archive).expanduser().resolve() if wal_archive else None
        self.data_dir = self.home / "pgdata"
        self.log_file = self.home / "log" / "postgres.log"
        self.socket_dir = socket_dir_for(self.home, port)
        self._lock = ReentrantFileLock(self.home / "server.lock")
        self._owner_path = self.home / "server.owner"
        self._socket_port = port or SOCKET_ONLY_PORT
        self._user: OsUser | None = None
        self._owned = False
        self._owner_pid: int | None = None  # guards against stopping from a forked child
        self._token = uuid.uuid4().hex  # tells instances within one process apart
        self._endpoint: tuple[Path, int] | None = None

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(home={str(self.home)!r}, port={self.port})"

    # ----------------------------------------------------------------- public API

    @staticmethod
    def bin(name: str) -> Path:
        """Path of a bundled PostgreSQL program, e.g. `bin("pg_dump")`."""
        return pg_bin(name)

    @property
    def owned(self) -> bool:
        return self._owned and self._owner_pid == os.getpid()

    def conninfo(self, dbname: str = DB_NAME) -> str:
        """libpq URL for `dbname` as superuser over the unix socket."""
        sock, port = self._endpoint or (self.socket_dir, self._socket_port)
        host = quote(str(sock), safe="/")
        return f"postgresql://{SUPERUSER}@/{quote(dbname, safe='')}?host={host}&port={port}"

    def start(self) -> str:
        """Start the server (or attach to the running one) and return its conninfo."""
        t0 = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._prepare()
            pm = self._running_postmaster()
            if pm is not None:
                pm = self._wait_until_ready(pm)
            if pm is not None:
                self._attach(pm)
            else:
                self._start_postmaster()
            self._ensure_database()
        if self.owned:
            atexit.register(self._stop_at_exit)
        log.info(
            "postgres %s (%s) in %.2fs",
            "started" if self.owned else "attached",
            self.data_dir,
            time.monotonic() - t0,
        )
        return self.conninfo()

    def stop(self, mode: ShutdownMode = "fast", *, force: bool = False) -> bool:
        """Stop the server if this instance owns it (or `force`); else just detach.

        Returns whether a server was stopped.
        """
        atexit.unregister(self._stop_at_exit)
        if not (self.owned or force):
            self._endpoint = None
            return False
        stopped = False
        with self._lock:
            self._user = pg_os_user()
            pm = PostmasterPid.read(self.data_dir)
            if pm is not None and is_postmaster_for(pm.pid, self.data_dir):
                record = self._read_owner() or {}
                mine = record.get("token") == self._token and record.get("pid") == os.getpid()
                if force or (mine and record.get("server_pid") == pm.pid):
                    self._pg_ctl("stop", "-m", mode, "-w", "-t", str(int(self.timeout)))
                    stopped = True
            if stopped or force:
                self._owner_path.unlink(missing_ok=True)
        self._owned = False
        self._endpoint = None
        return stopped

    def status(self) -> ServerStatus:
        pm = PostmasterPid.read(self.data_dir)
        running = pm is not None and is_postmaster_for(pm.pid, self.data_dir)
        owner_pid = None
        if pm is not None and running:
            record = self._read_owner()
            if record and record.get("server_pid") == pm.pid and owner_alive(record):
                owner_pid = int(record["pid"])
        if pm is None:
            state = "stopped"
        elif not running:
            state = "stale"
        else:
            state = pm.status or "starting"
        return ServerStatus(
            data_dir=self.data_dir,
            running=running,
            state=state,
            pid=pm.pid if running and pm else None,
            owner_pid=owner_pid,
            owned=running and self.owned,
            socket_dir=pm.socket_dir if running and pm else None,
            port=pm.port if running and pm else None,
        )

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- internals

    def _prepare(self) -> None:
        """Create the OS user, directories and (first time only) the cluster."""
        self._user = pg_os_user()
        if self._user is not None:
            make_traversable(self.home)
        self._private_dir(self.socket_dir)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if not self.log_file.exists():
            self.log_file.touch(mode=0o600)
        chown_to(self.log_file, self._user)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()

    def _private_dir(self, path: Path) -> None:
        """A 0700 dir owned by the postgres user; refuse one planted by somebody else."""
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
        allowed = {os.geteuid()} | ({self._user.uid} if self._user else set())
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in allowed:
            raise ServerStartError(f"{path} is not a directory owned by us; refusing to use it")
        chown_to(path, self._user)
        path.chmod(0o700)

    def _initdb(self) -> None:
        # initdb into a scratch dir and rename it: an interrupted initdb never leaves a
        # half-made pgdata behind that later starts would trip over.
        scratch = self.home / "pgdata.init"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        chown_to(scratch, self._user)
        log.info("initializing PostgreSQL cluster in %s", self.data_dir)
        try:
            run_pg(
                ["initdb", "-D", scratch, "-U", SUPERUSER, "-E", "UTF8",
                 "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8",
                 "--auth-local=trust", "--auth-host=scram-sha-256"],
                user=self._user, cwd=scratch, timeout=self.timeout * 2,
            )  # fmt: skip
        except PgCommandError as exc:
            raise ServerStartError(f"initdb failed for {self.data_dir}: {exc}") from None
        (scratch / "pg_hba.conf").write_text(_PG_HBA)
        with (scratch / "postgresql.conf").open("a") as fh:
            # Last one wins in postgresql.conf, and ALTER SYSTEM (postgresql.auto.conf) is
            # still read after this, so users can override our defaults.
            fh.write("\n# Settings managed by tradestore\ninclude_if_exists = 'tradestore.conf'\n")
        scratch.rename(self.data_dir)

    def _write_config(self) -> None:
        settings: dict[str, str] = {
            "listen_addresses": _conf_str("127.0.0.1" if self.port else ""),
            "port": str(self._socket_port),
            "unix_socket_directories": _conf_str(self.socket_dir),
            "unix_socket_permissions": "0700",
            "max_connections": "100",
            "shared_preload_libraries": _conf_str("pg_stat_statements"),
            "wal_level": "replica",
            "log_min_duration_statement": "-1",
            "timezone": _conf_str("UTC"),
            "log_timezone": _conf_str("UTC"),
            "password_encryption": _conf_str("scram-sha-256"),
            # Lets `tradestore backup base --incremental` take incremental base backups.
            "summarize_wal": "on",
            # Bulk ingest writes about 250 MB of WAL per million bars. With the default
            # 4 MB of WAL buffers the writing backend stalls to write WAL itself; with 64
            # MB the WAL writer does it on another core (a 1M-bar COPY into market.candles
            # took 10-15% less time). 256 MB of shared buffers (the default is 128 MB)
            # keeps the indexes being appended to in memory. Both are modest for the
            # machine a solo developer runs this on; ALTER SYSTEM overrides them.
            "shared_buffers": "256MB",
            "wal_buffers": "64MB",
            "max_wal_size": "2GB",
        }
        if self.wal_archive is not None:
            # basic_archive (bundled) copies each segment atomically and fsyncs it, which a
            # `cp %p` archive_command (seed 004 §6.2) does not. A segment is closed at least
            # every 15 minutes when there was activity (seed 004 §6.1).
            self.wal_archive.mkdir(parents=True, exist_ok=True)
            chown_to(self.wal_archive, self._user)
            settings |= {
                "archive_mode": "on",
                "archive_library": _conf_str("basic_archive"),
                "basic_archive.archive_directory": _conf_str(self.wal_archive),
                "archive_timeout": _conf_str("15min"),
            }
        path = self.data_dir / "tradestore.conf"
        body = "".join(f"{k} = {v}\n" for k, v in settings.items())
        path.write_text(
            "# Rewritten by tradestore on every start; use ALTER SYSTEM instead.\n" + body
        )
        chown_to(path, self._user)

    def _running_postmaster(self) -> PostmasterPid | None:
        """The live postmaster of our data dir, after clearing leftovers of a dead one."""
        pm = PostmasterPid.read(self.data_dir)
        if pm is not None and is_postmaster_for(pm.pid, self.data_dir):
            return pm
        if pm is not None:
            # A crashed server (kill -9, power loss). Its pid may now belong to an unrelated
            # process, which would make postgres refuse to start: remove the pid file.
            log.warning("removing stale postmaster.pid (pid %s) in %s", pm.pid, self.data_dir)
            kill_orphan_backends(self.data_dir)
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        self._clear_socket_locks()
        return None

    def _clear_socket_locks(self) -> None:
        # Socket lock files hold a pid too, with the same reuse problem. The socket dir is
        # private to this home and our cluster is dead (we hold the flock), so any lock or
        # socket file in it is a leftover.
        for path in self.socket_dir.glob(".s.PGSQL.*"):
            path.unlink(missing_ok=True)

    def _wait_until_ready(self, pm: PostmasterPid) -> PostmasterPid | None:
        """Wait until the running server accepts connections; None if it went away."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with psycopg.connect(self._pm_conninfo(pm, "postgres"), connect_timeout=5):
                    return pm
            except psycopg.OperationalError as exc:
                error = exc
            time.sleep(0.1)
            current = PostmasterPid.read(self.data_dir)
            if current is None or not is_postmaster_for(current.pid, self.data_dir):
                return self._running_postmaster()  # it was shutting down: start afresh
            pm = current
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"PostgreSQL (pid {pm.pid}) is running on {self.data_dir} but does not "
                    f"accept connections: {error}\n{self._log_excerpt()}"
                )

    def _pm_conninfo(self, pm: PostmasterPid, dbname: str) -> str:
        self._endpoint = (pm.socket_dir or self.socket_dir, pm.port or self._socket_port)
        return self.conninfo(dbname)

    def _attach(self, pm: PostmasterPid) -> None:
        self._endpoint = (pm.socket_dir or self.socket_dir, pm.port or self._socket_port)
        record = self._read_owner()
        if record and record.get("server_pid") == pm.pid and owner_alive(record):
            # Someone owns it (maybe another instance in this very process); keep ownership
            # only if it is this instance re-starting.
            self._owned = self.owned and record.get("token") == self._token
        elif self.adopt_orphans:
            log.warning("adopting PostgreSQL (pid %s) whose owner process is gone", pm.pid)
            self._take_ownership(pm.pid)
        else:
            self._owned = False
        if self._endpoint != (self.socket_dir, self._socket_port):
            log.warning("attached server listens on %s port %s", *self._endpoint)

    def _start_postmaster(self) -> None:
        self._write_config()
        if self.log_file.stat().st_size > MAX_LOG_BYTES:
            self.log_file.replace(self.log_file.with_suffix(".log.1"))
            self.log_file.touch(mode=0o600)
            chown_to(self.log_file, self._user)
        wait = str(int(self.timeout))
        try:
            self._pg_ctl("start", "-l", str(self.log_file), "-w", "-t", wait)
        except BaseException as exc:
            # Includes KeyboardInterrupt/SystemExit while pg_ctl waited: the postmaster is
            # in its own session and would outlive us, so take it down again.
            self._abort_start()
            if isinstance(exc, PgCommandError):
                raise ServerStartError(
                    f"PostgreSQL failed to start on {self.data_dir}: {exc}\n{self._log_excerpt()}"
                ) from None
            raise
        pm = PostmasterPid.read(self.data_dir)
        if pm is None:
            raise ServerStartError(f"postmaster.pid missing after start\n{self._log_excerpt()}")
        self._endpoint = (self.socket_dir, self._socket_port)
        self._take_ownership(pm.pid)

    def _abort_start(self) -> None:
        pm = PostmasterPid.read(self.data_dir)
        if pm is not None and is_postmaster_for(pm.pid, self.data_dir):
            with contextlib.suppress(Exception):
                self._pg_ctl("stop", "-m", "immediate", "-w")

    def _ensure_database(self) -> None:
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME])
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def _pg_ctl(self, *args: str) -> str:
        argv: Sequence[str | Path] = ["pg_ctl", args[0], "-D", self.data_dir, *args[1:]]
        return run_pg(argv, user=self._user, cwd=self.data_dir, timeout=self.timeout + 30)

    def _take_ownership(self, postmaster_pid: int) -> None:
        self._owner_pid = write_owner(self._owner_path, self._token, postmaster_pid)
        self._owned = True

    def _read_owner(self) -> dict[str, Any] | None:
        return read_owner(self._owner_path)

    def _stop_at_exit(self) -> None:
        try:
            self.stop()
        except Exception:  # at exit there is nobody left to handle it
            log.exception("failed to stop PostgreSQL in %s", self.data_dir)

    def _log_excerpt(self) -> str:
        return f"--- last lines of {self.log_file} ---\n{log_tail(self.log_file)}"


def install_signal_handlers(
    server: EmbeddedPostgres,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGHUP),
) -> None:
    """Make SIGTERM/SIGHUP stop `server` cleanly, like Ctrl-C (KeyboardInterrupt) does.

    The handler raises SystemExit instead of stopping the server itself: a handler may run
    in the middle of `start()`, and unwinding lets `with` blocks, `finally` clauses and the
    at-exit hook shut PostgreSQL down from a consistent state. Must be called from the main
    thread.
    """

    def _raise_exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for sig in signals:
        signal.signal(sig, _raise_exit)
    # Also covers servers that were attached or started before this call.
    atexit.register(server._stop_at_exit)
