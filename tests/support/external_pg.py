"""A separate, password-protected PostgreSQL on 127.0.0.1 for CI's "external server" run.

    export DATABASE_URL=$(python -m tests.support.external_pg start \\
        --dir /tmp/extpg --port 55432 --user ci --password s3cret)
    pytest
    python -m tests.support.external_pg stop --dir /tmp/extpg

Unlike the embedded server there is no trust auth and no unix socket: every connection
goes over TCP with SCRAM, which is what a managed PostgreSQL looks like.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg

from tradestore.db.pgproc import (
    PostmasterPid,
    chown_to,
    is_postmaster_for,
    make_traversable,
    pg_os_user,
    run_pg,
)

DB_NAME = "tradestore"

_PG_HBA = """\
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  scram-sha-256
host    all       all   127.0.0.1/32   scram-sha-256
"""


def database_url(user: str, password: str, port: int, dbname: str = DB_NAME) -> str:
    return (
        f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/{dbname}"
    )


def _running(data: Path) -> bool:
    pm = PostmasterPid.read(data)
    return pm is not None and is_postmaster_for(pm.pid, data)


def start(directory: Path, port: int, user: str, password: str, timeout: int = 60) -> str:
    """Initialize (first time), start (if not running) and return the DATABASE_URL."""
    directory = directory.resolve()
    data, logfile = directory / "pgdata", directory / "postgres.log"
    os_user = pg_os_user()
    directory.mkdir(parents=True, exist_ok=True)
    if os_user is not None:
        make_traversable(directory)
    if not (data / "PG_VERSION").exists():
        data.mkdir(mode=0o700, exist_ok=True)
        chown_to(data, os_user)
        pwfile = directory / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        chown_to(pwfile, os_user)
        try:
            run_pg(
                ["initdb", "-D", data, "-U", user, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"],
                user=os_user, cwd=data,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        (data / "pg_hba.conf").write_text(_PG_HBA)
        with (data / "postgresql.conf").open("a") as fh:
            fh.write("\ninclude_if_exists = 'external.conf'\n")
    if not _running(data):
        conf = data / "external.conf"
        conf.write_text(
            "listen_addresses = '127.0.0.1'\n"
            f"port = {port}\n"
            "unix_socket_directories = ''\n"
            "shared_preload_libraries = 'pg_stat_statements'\n"
            "password_encryption = 'scram-sha-256'\n"
            "max_connections = 200\n"
            "timezone = 'UTC'\n"
        )
        chown_to(conf, os_user)
        logfile.touch()
        chown_to(logfile, os_user)
        (data / "postmaster.pid").unlink(missing_ok=True)  # stale, since not running
        run_pg(
            ["pg_ctl", "start", "-D", data, "-l", logfile, "-w", "-t", str(timeout)],
            user=os_user, cwd=data, timeout=timeout + 30,
        )  # fmt: skip
    url = database_url(user, password, port, "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    return database_url(user, password, port)


def stop(directory: Path, timeout: int = 60) -> bool:
    data = directory.resolve() / "pgdata"
    if not _running(data):
        return False
    run_pg(
        ["pg_ctl", "stop", "-D", data, "-m", "fast", "-w", "-t", str(timeout)],
        user=pg_os_user(), cwd=data, timeout=timeout + 30,
    )  # fmt: skip
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.external_pg")
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start the server and print its DATABASE_URL")
    p_start.add_argument("--dir", type=Path, required=True)
    p_start.add_argument("--port", type=int, required=True)
    p_start.add_argument("--user", required=True)
    p_start.add_argument("--password", required=True)
    p_stop = sub.add_parser("stop", help="stop the server")
    p_stop.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "start":
        print(start(args.dir, args.port, args.user, args.password))
    else:
        stopped = stop(args.dir)
        print("stopped" if stopped else "not running", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
