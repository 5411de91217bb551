"""The outbox worker against a real Bot API server on loopback."""

from __future__ import annotations

import itertools
import time
from typing import Any

import psycopg
import pytest

from tests.notify.botapi import BotApiServer, Reply
from tests.notify.conftest import running_worker, scalar, wait_until
from tradestore.config import Settings
from tradestore.db.errors import ValidationError
from tradestore.notify import outbox
from tradestore.notify.config import NotifySettings
from tradestore.notify.telegram import format_message
from tradestore.notify.worker import NotifyWorker


def _status(conn: psycopg.Connection, outbox_id: int) -> tuple[Any, ...]:
    return conn.execute(
        "SELECT status, fail_count, sent_at IS NOT NULL, claimed_by IS NOT NULL AND status = 'PENDING', "
        "last_error, parts_sent FROM system.notification_outbox WHERE id = %s",
        (outbox_id,),
    ).fetchone()


def _settled(conn: psycopg.Connection, outbox_id: int, *, fail_count: int = 0) -> bool:
    status, fails, _, claimed, _, _ = _status(conn, outbox_id)
    return status != "PENDING" or (fails >= fail_count > 0 and not claimed)


def test_success_marks_sent_with_sent_at(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    outbox_id = outbox.enqueue(conn, 42, "WARN", "Disk", "90% full")
    with running_worker(db, app_settings, options):
        wait_until(lambda: _status(conn, outbox_id)[0] == "SENT", what="SENT")
    status, fails, has_sent_at, *_ = _status(conn, outbox_id)
    assert (status, fails, has_sent_at) == ("SENT", 0, True)
    [got] = botapi.delivered(42)
    assert got.text == format_message("WARN", "Disk", "90% full")
    assert got.token == botapi.token


def test_400_fails_for_good_and_raises_a_critical_self_alert(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    botapi.script(404404, Reply.bad_request("Bad Request: chat not found"))
    outbox_id = outbox.enqueue(conn, 404404, "WARN", "t", "m")
    with running_worker(db, app_settings, options):
        wait_until(lambda: _status(conn, outbox_id)[0] == "FAILED", what="FAILED")
    status, fails, _, _, error, _ = _status(conn, outbox_id)
    assert (status, fails) == ("FAILED", 1)
    assert "chat not found" in error
    severity, module, data = conn.execute(
        "SELECT severity, module, data FROM system.alerts"
    ).fetchone()
    assert (severity, module, data["outbox_id"]) == ("CRITICAL", "notify", outbox_id)


def test_5xx_is_retried_with_the_first_backoff(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    botapi.script(7, Reply.server_error(502))
    outbox_id = outbox.enqueue(conn, 7, "WARN", "t", "m")
    with running_worker(db, app_settings, options):
        wait_until(lambda: _settled(conn, outbox_id, fail_count=1), what="a recorded failure")
    status, fails, _, claimed, error, _ = _status(conn, outbox_id)
    assert (status, fails, claimed) == ("PENDING", 1, False)
    assert error.startswith("HTTP 502")
    wait = scalar(
        conn, "SELECT extract(epoch FROM send_after - now()) FROM system.notification_outbox"
    )
    assert 50 < wait <= 60


def test_timeout_counts_as_a_failure(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    botapi.script(8, Reply.slow(3.0))
    outbox_id = outbox.enqueue(conn, 8, "WARN", "t", "m")
    with running_worker(db, app_settings, options.model_copy(update={"NOTIFY_HTTP_TIMEOUT": 0.3})):
        wait_until(lambda: _settled(conn, outbox_id, fail_count=1), what="a recorded timeout")
    status, fails, _, _, error, _ = _status(conn, outbox_id)
    assert (status, fails) == ("PENDING", 1)
    assert error.startswith("timeout")


def test_fifth_failure_is_final(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    botapi.script(9, Reply.server_error(500))
    outbox_id = outbox.enqueue(conn, 9, "WARN", "t", "m")
    conn.execute("UPDATE system.notification_outbox SET fail_count = 4 WHERE id = %s", (outbox_id,))
    with running_worker(db, app_settings, options):
        wait_until(lambda: _status(conn, outbox_id)[0] == "FAILED", what="FAILED")
    assert _status(conn, outbox_id)[:2] == ("FAILED", 5)
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM system.alerts WHERE severity = 'CRITICAL' AND module = 'notify'",
        )
        == 1
    )


def test_429_retry_after_is_obeyed_without_counting_a_failure(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    botapi.script(11, Reply.too_many(1))
    first = outbox.enqueue(conn, 11, "WARN", "first", "m")
    second = outbox.enqueue(conn, 11, "WARN", "second", "m")
    with running_worker(db, app_settings, options):
        wait_until(lambda: _status(conn, second)[0] == "SENT", what="both SENT")
    assert _status(conn, first)[:2] == ("SENT", 0)
    assert _status(conn, second)[:2] == ("SENT", 0)
    calls = [r for r in botapi.received if r.chat_id == 11]
    assert [r.status for r in calls] == [429, 200, 200]
    # Nothing went to the chat before retry_after (1 s) had passed; the order is kept.
    assert calls[1].at - calls[0].at >= 0.9
    assert [r.text.split("\n")[0] for r in calls[1:]] == ["⚠️ first", "⚠️ second"]


def test_long_message_goes_out_in_parts_and_a_retry_resumes_after_the_sent_ones(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    body = "\n".join(f"row {i:04d} " + "·" * 60 for i in range(150))  # ~10k characters
    botapi.script(12, Reply.ok(), Reply.server_error(503))
    outbox_id = outbox.enqueue(conn, 12, "INFO", "report", body)
    with running_worker(db, app_settings, options):
        wait_until(lambda: _settled(conn, outbox_id, fail_count=1), what="the failed part")
        assert _status(conn, outbox_id)[5] == 1  # one part delivered
        conn.execute(
            "UPDATE system.notification_outbox SET send_after = now() WHERE id = %s", (outbox_id,)
        )
        conn.execute("NOTIFY tradestore_outbox")
        wait_until(lambda: _status(conn, outbox_id)[0] == "SENT", what="SENT")
    delivered = [r.text for r in botapi.delivered(12)]
    assert len(delivered) == 3
    assert all(len(t) <= 4096 for t in delivered)
    assert "".join(delivered) == format_message("INFO", "report", body)


def test_notify_wakes_an_idle_worker(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    # With an hour-long poll only LISTEN/NOTIFY can bring the second message out.
    with running_worker(db, app_settings, options.model_copy(update={"NOTIFY_POLL_SECONDS": 3600})):
        outbox.enqueue(conn, 13, "WARN", "one", "m")
        wait_until(lambda: len(botapi.delivered(13)) == 1, what="first message")
        time.sleep(0.3)  # let the worker go idle
        outbox.enqueue(conn, 13, "WARN", "two", "m")
        wait_until(lambda: len(botapi.delivered(13)) == 2, timeout=20, what="second message")


def test_several_workers_side_by_side_send_each_message_once(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "SELECT enqueue_notification(%s, 'WARN', %s, 'm')",
            [(100 + i % 12, f"msg-{i}") for i in range(240)],
        )
    opts = options.model_copy(update={"NOTIFY_BATCH_SIZE": 10})
    with (
        running_worker(db, app_settings, opts, "w-a"),
        running_worker(db, app_settings, opts, "w-b"),
    ):
        wait_until(
            lambda: (
                scalar(
                    conn, "SELECT count(*) FROM system.notification_outbox WHERE status = 'SENT'"
                )
                == 240
            ),
            what="all SENT",
        )
    titles = sorted(r.text.split("\n")[0] for r in botapi.delivered())
    assert titles == sorted(f"⚠️ msg-{i}" for i in range(240))  # each exactly once
    # each chat's messages arrived in the order they were queued
    for chat in range(100, 112):
        got = [int(r.text.split("\n")[0].split("-")[1]) for r in botapi.delivered(chat)]
        assert got == sorted(got)


def test_expired_claim_of_a_dead_worker_is_taken_over_and_a_live_one_is_not(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    stale = outbox.enqueue(conn, 21, "WARN", "stale", "m")
    live = outbox.enqueue(conn, 22, "WARN", "live", "m")
    free = outbox.enqueue(conn, 23, "WARN", "free", "m")
    conn.execute(
        "UPDATE system.notification_outbox SET claimed_by = 'dead', claimed_at = now() - interval '1 hour' "
        "WHERE id = %s",
        (stale,),
    )
    conn.execute(
        "UPDATE system.notification_outbox SET claimed_by = 'busy', claimed_at = now() + interval '1 hour' "
        "WHERE id = %s",
        (live,),
    )
    with running_worker(db, app_settings, options):
        wait_until(
            lambda: _status(conn, stale)[0] == "SENT" and _status(conn, free)[0] == "SENT",
            what="stale and free SENT",
        )
    assert _status(conn, live)[0] == "PENDING"
    assert {r.chat_id for r in botapi.delivered()} == {21, 23}


def test_per_chat_rate_limit_spaces_messages(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    for i in range(4):
        outbox.enqueue(conn, 31, "WARN", f"m{i}", "x")
    with running_worker(db, app_settings, options.model_copy(update={"NOTIFY_CHAT_RATE": 5.0})):
        wait_until(lambda: len(botapi.delivered(31)) == 4, what="4 messages")
    times = [r.at for r in botapi.delivered(31)]
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(times))  # 5/s = 0.2 s apart


def test_heartbeat_is_recorded_and_marked_stopped(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    with running_worker(db, app_settings, options, "hb-worker"):
        wait_until(
            lambda: (
                scalar(
                    conn, "SELECT state FROM system.worker_heartbeats WHERE worker_id = 'hb-worker'"
                )
                == "running"
            ),
            what="heartbeat",
        )
    kind, state, info = conn.execute(
        "SELECT kind, state, info FROM system.worker_heartbeats WHERE worker_id = 'hb-worker'"
    ).fetchone()
    assert (kind, state) == ("notify", "stopped")
    assert "sent" in info and "pid" in info


def test_worker_refuses_to_start_without_a_token(
    db: str, options: NotifySettings, tmp_path: Any
) -> None:
    from tradestore.config import load_settings

    with pytest.raises(ValidationError) as missing:
        NotifyWorker(db, load_settings(None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path), options)
    assert missing.value.field == "TELEGRAM_BOT_TOKEN"


def test_worker_reconnects_after_losing_the_database(
    db: str,
    conn: psycopg.Connection,
    botapi: BotApiServer,
    app_settings: Settings,
    options: NotifySettings,
) -> None:
    with running_worker(db, app_settings, options, "phoenix") as out:
        outbox.enqueue(conn, 41, "WARN", "before", "m")
        wait_until(lambda: len(botapi.delivered(41)) == 1, what="first message")
        killed = scalar(
            conn,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'tradestore-notify'",
        )
        assert killed == 2  # the worker's connection and its LISTEN connection
        outbox.enqueue(conn, 41, "WARN", "after", "m")
        wait_until(lambda: len(botapi.delivered(41)) == 2, what="message after the reconnect")
    assert out["stats"].reconnects >= 1
