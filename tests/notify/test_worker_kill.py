"""Reliability: kill -9 a worker in the middle of a batch; after a restart every message
is sent and none is stuck (the dead worker's lease runs out and is taken over)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.notify.botapi import BotApiServer, Reply
from tests.notify.conftest import TOKEN, scalar, wait_until


def _spawn(db: str, botapi: BotApiServer, cwd: Path, worker_id: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": db,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE": botapi.base_url,
        "NOTIFY_LEASE_SECONDS": "2",
        "NOTIFY_BATCH_SIZE": "30",
        "NOTIFY_CHAT_RATE": "0",
        "NOTIFY_GROUP_RATE": "0",
        "NOTIFY_GLOBAL_RATE": "0",
        "NOTIFY_HTTP_TIMEOUT": "60",
        "NOTIFY_FLUSH_SECONDS": "0.2",
        "NOTIFY_POLL_SECONDS": "1",
        "NOTIFY_WORKER_ID": worker_id,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tradestore.notify.worker"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_kill_9_mid_batch_then_restart_sends_everything(
    db: str, conn: psycopg.Connection, botapi: BotApiServer, tmp_path: Path
) -> None:
    botapi.delay = 0.05
    # The first message to chat 1 hangs, so the batch is surely in flight when we kill.
    botapi.script(1, Reply.slow(30))
    with conn.cursor() as cur:
        cur.executemany(
            "SELECT enqueue_notification(%s, 'WARN', %s, 'm')",
            [(1 + i % 6, f"msg-{i}") for i in range(60)],
        )

    first = _spawn(db, botapi, tmp_path, "victim")
    try:
        wait_until(lambda: len(botapi.delivered()) >= 5, what="the first deliveries")
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL

    # The victim's claims are left behind: PENDING rows claimed by a worker that is gone.
    stuck = scalar(
        conn,
        "SELECT count(*) FROM system.notification_outbox "
        "WHERE status = 'PENDING' AND claimed_by = 'victim'",
    )
    assert stuck >= 1

    second = _spawn(db, botapi, tmp_path, "rescuer")
    try:
        wait_until(
            lambda: (
                scalar(
                    conn, "SELECT count(*) FROM system.notification_outbox WHERE status = 'SENT'"
                )
                == 60
            ),
            timeout=60,
            what="all 60 SENT",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0

    assert (
        scalar(
            conn,
            "SELECT count(*) FROM system.notification_outbox WHERE status <> 'SENT' "
            "OR (claimed_by IS NULL)",
        )
        == 0
    )
    assert (
        scalar(conn, "SELECT count(*) FROM system.notification_outbox WHERE claimed_by = 'rescuer'")
        >= stuck
    )
    delivered = {r.text.split("\n")[0] for r in botapi.delivered()}
    assert delivered == {f"⚠️ msg-{i}" for i in range(60)}  # at least once each
    assert (
        scalar(conn, "SELECT state FROM system.worker_heartbeats WHERE worker_id = 'rescuer'")
        == "stopped"
    )
