"""EmbeddedPostgres against real postgres processes (no mocks).

Waits below are bounded polls for a state, never assertions about durations.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from tradestore.db.pgproc import is_postmaster_for
from tradestore.db.server import (
    EmbeddedPostgres,
    ServerStartError,
    socket_dir_for,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    # Never leak a server, whatever the test did.
    leftover = EmbeddedPostgres(path)
    if leftover.status().running:
        leftover.stop(mode="immediate", force=True)


def spawn_child(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.server_child", str(home), *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # own process group, like a program started from a shell
    )


def read_info(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, f"child exited with {child.wait()} before starting the server"
    return json.loads(line)


def finish(child: subprocess.Popen[str]) -> int:
    """Close the child's stdin (it then stops/detaches and exits) and return its exit code."""
    assert child.stdin is not None
    child.stdin.close()
    return child.wait(timeout=120)


def wait_until(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def kill9_postmaster(server: EmbeddedPostgres, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not is_postmaster_for(pid, server.data_dir), "postmaster death")


def postmasters(data_dir: Path) -> list[int]:
    """Live postmasters of `data_dir`: postgres processes in it whose parent is not one."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "postgres" or not is_postmaster_for(proc.pid, data_dir):
            continue
        parent = proc.parent()
        if parent is None or not is_postmaster_for(parent.pid, data_dir):
            found.append(proc.pid)
    return found


def other_postgres_pid(pg_server: EmbeddedPostgres | None, data_dir: Path) -> int:
    """A live postgres process of another cluster: the session server, or any other."""
    if pg_server is not None and (pid := pg_server.status().pid):
        return pid
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "postgres" and not is_postmaster_for(proc.pid, data_dir):
            return proc.pid
    pytest.skip("no other postgres process on this machine")


def scalar(conninfo: str, query: str) -> Any:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- lifecycle


def test_start_stop_restart_keeps_data(home: Path) -> None:
    server = EmbeddedPostgres(home)
    assert server.status().state == "stopped"

    url = server.start()
    status = server.status()
    assert status.running and status.owned and status.state == "ready"
    assert status.owner_pid == os.getpid()
    assert scalar(url, "SELECT current_database()") == "tradestore"
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")

    assert server.stop() is True
    assert server.status().state == "stopped"
    assert not (server.data_dir / "postmaster.pid").exists()

    assert server.start() == url
    assert server.status().owned
    assert scalar(url, "SELECT v FROM kept") == 42
    assert server.stop() is True


def test_server_settings(home: Path) -> None:
    with EmbeddedPostgres(home) as server, psycopg.connect(server.conninfo()) as conn:
        show = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in (
                "shared_preload_libraries",
                "listen_addresses",
                "max_connections",
                "wal_level",
                "log_min_duration_statement",
                "timezone",
                "server_encoding",
            )
        }
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    assert show == {
        "shared_preload_libraries": "pg_stat_statements",
        "listen_addresses": "",
        "max_connections": "100",
        "wal_level": "replica",
        "log_min_duration_statement": "-1",
        "timezone": "UTC",
        "server_encoding": "UTF8",
    }
    assert server.status().state == "stopped"
    assert EmbeddedPostgres.bin("pg_dump").is_file()


def test_second_instance_attaches_and_leaves_server_running(home: Path) -> None:
    first = EmbeddedPostgres(home)
    url = first.start()
    with EmbeddedPostgres(home) as second:
        assert second.conninfo() == url
        assert not second.owned
        assert second.status().owner_pid == os.getpid()
    assert first.status().running  # leaving `second` did not stop it
    assert scalar(url, "SELECT 1") == 1

    # Neither does a second *process* that attaches and exits.
    child = spawn_child(home)
    info = read_info(child)
    assert info["owned"] is False and info["conninfo"] == url
    assert finish(child) == 0
    assert first.status().running
    assert first.stop() is True


def test_concurrent_starts_make_exactly_one_postmaster(home: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    children = [spawn_child(home, "--go", str(go)) for _ in range(3)]
    go.touch()  # release them at once: they race for initdb and start
    infos = [read_info(c) for c in children]

    assert len({i["postmaster"] for i in infos}) == 1
    assert sum(i["owned"] for i in infos) == 1
    assert postmasters(home.resolve() / "pgdata") == [infos[0]["postmaster"]]

    # Non-owners leave first: the server must survive them.
    owner = next(c for c, i in zip(children, infos, strict=True) if i["owned"])
    for child in children:
        if child is not owner:
            assert finish(child) == 0
    assert EmbeddedPostgres(home).status().running
    assert finish(owner) == 0
    assert EmbeddedPostgres(home).status().state == "stopped"


# --------------------------------------------------------------------------- crash recovery


def test_recovery_after_kill9_of_owner_and_postmaster(home: Path) -> None:
    child = spawn_child(home)
    info = read_info(child)
    with psycopg.connect(info["conninfo"]) as conn:
        conn.execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
    idle = psycopg.connect(info["conninfo"])  # leaves a backend behind the postmaster

    child.kill()
    child.wait()
    server = EmbeddedPostgres(home)
    kill9_postmaster(server, info["postmaster"])
    assert (server.data_dir / "postmaster.pid").exists()
    assert server.status().state == "stale"

    url = server.start()
    assert server.owned
    assert scalar(url, "SELECT v FROM t") == 1  # committed data survived WAL recovery
    assert server.stop() is True
    idle.close()


@pytest.mark.parametrize("reused_by", ["this pytest process", "sleep", "another postgres"])
def test_recovery_when_stale_pid_is_reused(
    home: Path, reused_by: str, pg_server: EmbeddedPostgres | None
) -> None:
    crashed = EmbeddedPostgres(home)
    url = crashed.start()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE t (v int); INSERT INTO t VALUES (7)")
    kill9_postmaster(crashed, crashed.status().pid or 0)

    sleeper = None
    if reused_by == "this pytest process":
        fake_pid = os.getpid()
    elif reused_by == "sleep":
        sleeper = subprocess.Popen(["sleep", "600"])
        fake_pid = sleeper.pid
    else:
        fake_pid = other_postgres_pid(pg_server, crashed.data_dir)
    # Pretend the dead postmaster's pid now belongs to that live process, in the pid file
    # and in the socket lock file: postgres itself would refuse to start over either.
    locks = list(crashed.socket_dir.glob(".s.PGSQL.*.lock"))
    assert locks
    for path in [crashed.data_dir / "postmaster.pid", *locks]:
        lines = path.read_text().splitlines()
        path.write_text("\n".join([str(fake_pid), *lines[1:]]) + "\n")

    try:
        server = EmbeddedPostgres(home)
        assert server.status().state == "stale"
        assert server.start() == url
        assert server.owned
        assert scalar(url, "SELECT v FROM t") == 7
        assert psutil.pid_exists(fake_pid)  # the innocent process was left alone
        assert crashed.stop() is False  # the crashed instance must not stop the new server
        assert server.status().running
        assert server.stop() is True
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()


@pytest.mark.parametrize("adopt", [True, False])
def test_orphaned_server_is_adopted_after_owner_kill9(home: Path, adopt: bool) -> None:
    child = spawn_child(home)
    info = read_info(child)
    child.kill()
    child.wait()

    server = EmbeddedPostgres(home, adopt_orphans=adopt)
    assert server.start() == info["conninfo"]
    assert server.status().pid == info["postmaster"]  # attached, not restarted
    assert server.owned is adopt
    assert server.stop() is adopt
    assert server.status().running is not adopt


@pytest.mark.parametrize(
    ("sig", "exit_code"),
    [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130), (signal.SIGHUP, 129)],
)
def test_signal_to_owner_stops_server(home: Path, sig: signal.Signals, exit_code: int) -> None:
    child = spawn_child(home, "--signals")
    info = read_info(child)
    assert info["owned"]
    os.killpg(child.pid, sig)  # the whole process group, as Ctrl-C in a terminal does
    assert child.wait(timeout=120) == exit_code
    status = EmbeddedPostgres(home).status()
    assert status.state == "stopped"
    assert not psutil.pid_exists(info["postmaster"]) or not is_postmaster_for(
        info["postmaster"], home.resolve() / "pgdata"
    )


# --------------------------------------------------------------------------- config & errors


def test_tcp_port_requires_password(home: Path) -> None:
    port = free_port()
    with EmbeddedPostgres(home, port=port) as server:
        assert scalar(server.conninfo(), "SHOW listen_addresses") == "127.0.0.1"
        assert scalar(server.conninfo(), "SHOW port") == str(port)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/tradestore")


def test_start_failure_reports_log_tail(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = EmbeddedPostgres(home, port=busy.getsockname()[1])
        with pytest.raises(ServerStartError) as err:
            server.start()
    message = str(err.value)
    assert "could not bind" in message or "Address already in use" in message
    assert str(server.log_file) in message
    assert not server.status().running
    assert not server.owned


def test_long_home_puts_socket_under_tmp(tmp_path: Path) -> None:
    home = tmp_path / ("h" * 100)
    sock_dir = socket_dir_for(home.resolve())
    assert sock_dir.parent == Path("/tmp")
    assert socket_dir_for(Path("/short")) == Path("/short/run")
    try:
        with EmbeddedPostgres(home) as server:
            assert server.socket_dir == sock_dir
            assert scalar(server.conninfo(), "SELECT 1") == 1
            assert (sock_dir.stat().st_mode & 0o777) == 0o700
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


# --------------------------------------------------------------------------- extensions


def test_pg_stat_statements_and_vector(module_db: str) -> None:
    with psycopg.connect(module_db, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        # Reading the view fails unless the library is in shared_preload_libraries.
        assert conn.execute("SELECT count(*) >= 0 FROM pg_stat_statements").fetchone() == (True,)
        dist = conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,5]'::vector").fetchone()
        assert dist == (2.0,)
