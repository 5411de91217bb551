"""A one-shot command after a crashed `up`: it attaches to the orphaned embedded server
and leaves it running for the other sessions (only a long-running owner stops it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.db.test_server import read_info, spawn_child, wait_until
from tradestore.db.pgproc import is_postmaster_for
from tradestore.db.server import EmbeddedPostgres


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    leftover = EmbeddedPostgres(path)
    if leftover.status().running:
        leftover.stop(mode="immediate", force=True)


def test_a_one_shot_command_leaves_an_orphaned_server_running(home: Path) -> None:
    crashed_up = spawn_child(home)
    info = read_info(crashed_up)
    assert info["owned"]
    os.kill(crashed_up.pid, signal.SIGKILL)  # the owner dies; its postmaster lives on
    crashed_up.wait(timeout=30)
    postmaster = info["postmaster"]
    data_dir = home.resolve() / "pgdata"
    assert is_postmaster_for(postmaster, data_dir)

    with psycopg.connect(info["conninfo"], autocommit=True) as other_session:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env["TRADESTORE_HOME"] = str(home)
        status = subprocess.run(
            [sys.executable, "-m", "tradestore.cli.main", "db", "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.returncode in (0, 3), status.stderr  # 3: migrations pending
        assert is_postmaster_for(postmaster, data_dir)
        assert other_session.execute("SELECT 1").fetchone() == (1,)

    # The next long-running owner adopts it, and stops it when it ends.
    owner = EmbeddedPostgres(home)
    owner.start()
    assert owner.owned and owner.status().pid == postmaster
    assert owner.stop() is True
    wait_until(lambda: not is_postmaster_for(postmaster, data_dir), "postmaster exit")
