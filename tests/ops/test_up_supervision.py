"""`tradestore up` keeps its embedded PostgreSQL alive: a SIGKILLed postmaster is started
again, /health recovers by itself, the start hooks run and an alert is raised; SIGTERM
ends `up` with a line saying why. Real processes; waits are bounded polls for a state."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tradestore.cache.server import EmbeddedRedis
from tradestore.db.pgproc import PostmasterPid, is_postmaster_for
from tradestore.db.server import EmbeddedPostgres

# `up`, with a start hook that appends a line per call (the hook point other parts use).
RUNNER = """
import sys
from pathlib import Path
from tradestore.ops import supervise
marks = Path(sys.argv[1])
supervise.DATABASE_START_HOOKS.append(lambda conninfo: marks.open("a").write("start\\n"))
from tradestore.cli.main import app
app(["up"])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, what: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    leftover = EmbeddedPostgres(path)
    if leftover.status().running:
        leftover.stop(mode="immediate", force=True)
    redis = EmbeddedRedis(path)
    if redis.is_running():
        redis.start()
        redis._take_ownership(redis._running_pid() or 0)
        redis.stop()


def test_up_restarts_a_killed_postgres_and_says_why_it_stopped(home: Path, tmp_path: Path) -> None:
    port = free_port()
    marks = tmp_path / "hook-calls"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"TRADESTORE_HOME": str(home), "API_PORT": str(port), "API_HOST": "127.0.0.1"}
    env.pop("TELEGRAM_BOT_TOKEN", None)
    log = (tmp_path / "up.log").open("w+")
    up = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(marks)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: health(port) == 200, "/health ok after start")
        assert marks.read_text().splitlines() == ["start"]
        data_dir = home.resolve() / "pgdata"
        first = PostmasterPid.read(data_dir)
        assert first is not None

        os.kill(first.pid, signal.SIGKILL)  # red team: the database dies under `up`
        wait_for(lambda: not is_postmaster_for(first.pid, data_dir), "postmaster death")

        def restarted() -> bool:
            pm = PostmasterPid.read(data_dir)
            return pm is not None and pm.pid != first.pid and is_postmaster_for(pm.pid, data_dir)

        wait_for(restarted, "a new postmaster")
        wait_for(lambda: health(port) == 200, "/health ok after the restart")
        assert up.poll() is None  # `up` itself kept running
        wait_for(lambda: marks.read_text().splitlines() == ["start", "start"], "hook rerun")
        conninfo = EmbeddedPostgres(home).conninfo()

        def restart_alerts() -> list[tuple[Any, ...]]:
            with psycopg.connect(conninfo) as conn:
                return conn.execute(
                    "SELECT severity, module, message FROM system.alerts "
                    "WHERE data->>'event' = 'database_restarted'"
                ).fetchall()

        alerts = wait_for(restart_alerts, "the restart alert", timeout=30)
        assert len(alerts) == 1 and alerts[0][1] == "ops"
        assert "restarted" in alerts[0][2]

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=120) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    log.seek(0)
    output = log.read()
    assert "stopped: received SIGTERM; embedded PostgreSQL stopped" in output, output
    assert not EmbeddedPostgres(home).status().running
    # every request wrote its access line (log redaction keeps uvicorn's formatter working)
    assert '"GET /health HTTP/1.1" 200' in output, output
    assert "Exception in callback" not in output and "TypeError" not in output, output
