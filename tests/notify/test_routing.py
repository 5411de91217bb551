"""Routing by min_severity, enqueue from SQL and Python, system alerts (seed 004)."""

from __future__ import annotations

import psycopg
import pytest

from tests.notify.conftest import scalar
from tradestore.db.errors import ValidationError
from tradestore.notify import alerts, outbox


def _user(conn: psycopg.Connection, name: str) -> int:
    return scalar(
        conn,
        "INSERT INTO account.users (username, email, password_hash) "
        "VALUES (%s, %s, 'x') RETURNING id",
        name,
        f"{name}@example.com",
    )


def _queued(conn: psycopg.Connection) -> list[tuple[int, str]]:
    return conn.execute(
        "SELECT chat_id, severity::text FROM system.notification_outbox ORDER BY chat_id, id"
    ).fetchall()


@pytest.fixture
def chats(conn: psycopg.Connection) -> None:
    outbox.add_chat(conn, 1, "INFO", "everything")
    outbox.add_chat(conn, 2, "WARN", "warnings")
    outbox.add_chat(conn, 3, "CRITICAL", "pager")
    outbox.add_chat(conn, 4, "INFO", "muted", enabled=False)


@pytest.mark.parametrize(
    ("sev", "chat_ids"),
    [("INFO", [1]), ("WARN", [1, 2]), ("CRITICAL", [1, 2, 3])],
)
def test_route_reaches_chats_whose_min_severity_is_at_most_the_severity(
    conn: psycopg.Connection, chats: None, sev: str, chat_ids: list[int]
) -> None:
    assert outbox.route(conn, sev, "title", "body") == len(chat_ids)
    assert [c for c, _ in _queued(conn)] == chat_ids


def test_route_with_dedupe_key_queues_once_per_chat(conn: psycopg.Connection, chats: None) -> None:
    assert outbox.route(conn, "WARN", "t", "m", dedupe_key="disk-full") == 2
    assert outbox.route(conn, "WARN", "t", "m", dedupe_key="disk-full") == 0
    assert conn.execute(
        "SELECT dedupe_key FROM system.notification_outbox ORDER BY chat_id"
    ).fetchall() == [("disk-full@1",), ("disk-full@2",)]


def test_user_messages_reach_only_that_users_chats_and_system_ones_only_operators(
    conn: psycopg.Connection,
) -> None:
    alice, bob = _user(conn, "alice"), _user(conn, "bob")
    root = _user(conn, "root")
    conn.execute("UPDATE account.users SET role = 'admin' WHERE id = %s", (root,))
    outbox.add_chat(conn, 10, "INFO", user_id=alice)
    outbox.add_chat(conn, 20, "INFO", user_id=bob)
    outbox.add_chat(conn, 30, "INFO")  # an operator's chat (bound to no user)
    outbox.add_chat(conn, 40, "INFO", user_id=root)  # an admin's chat
    outbox.route(conn, "INFO", "t", "for alice", user_id=alice)
    outbox.route(conn, "INFO", "t", "system")
    rows = conn.execute(
        "SELECT chat_id, message FROM system.notification_outbox ORDER BY id"
    ).fetchall()
    assert sorted(rows) == sorted([(10, "for alice"), (30, "system"), (40, "system")])


def test_an_alert_about_a_users_object_goes_only_to_that_users_chat(
    conn: psycopg.Connection,
) -> None:
    alice, bob = _user(conn, "alice"), _user(conn, "bob")
    outbox.add_chat(conn, 10, "INFO", user_id=alice)
    outbox.add_chat(conn, 20, "INFO", user_id=bob)
    outbox.add_chat(conn, 30, "INFO")
    alerts.raise_alert(conn, "HIGH", "alice's order 7 failed", module="inbound", user_id=alice)
    assert [c for c, _ in _queued(conn)] == [10]


def test_enqueue_from_python_and_sql_share_the_dedupe_key(conn: psycopg.Connection) -> None:
    first = outbox.enqueue(conn, 5, "WARN", "t", "m", dedupe_key="k")
    assert first > 0
    assert scalar(conn, "SELECT enqueue_notification(5, 'WARN', 't', 'm', 'k')") == 0
    assert outbox.enqueue(conn, 5, "warn", "t", "m", dedupe_key="k") == 0


def test_bad_input_names_field_rule_and_value(conn: psycopg.Connection) -> None:
    with pytest.raises(ValidationError) as bad_sev:
        outbox.route(conn, "LOUD", "t", "m")
    assert (bad_sev.value.field, bad_sev.value.value) == ("severity", "LOUD")
    with pytest.raises(ValidationError) as blank:
        outbox.route(conn, "INFO", " ", "m")
    assert (blank.value.field, blank.value.rule) == ("title", "must not be blank")
    with pytest.raises(ValidationError) as long_key:
        outbox.route(conn, "INFO", "t", "m", dedupe_key="k" * 99)
    assert long_key.value.field == "dedupe_key"
    with pytest.raises(ValidationError) as bad_alert:
        alerts.raise_alert(conn, "SEVERE", "x")
    assert (bad_alert.value.field, bad_alert.value.value) == ("severity", "SEVERE")


@pytest.mark.parametrize(
    ("sev004", "routed_as", "chat_ids"),
    [
        ("CRITICAL", "CRITICAL", [1, 2, 3]),
        ("HIGH", "WARN", [1, 2]),
        ("MEDIUM", "WARN", [1, 2]),
        ("LOW", "INFO", [1]),
    ],
)
def test_raising_an_alert_queues_by_the_severity_mapping(
    conn: psycopg.Connection, chats: None, sev004: str, routed_as: str, chat_ids: list[int]
) -> None:
    alert_id = alerts.raise_alert(
        conn, sev004, "disk almost full", module="ops", data={"disk": "/"}
    )
    assert _queued(conn) == [(c, routed_as) for c in chat_ids]
    title, message, key = conn.execute(
        "SELECT title, message, dedupe_key FROM system.notification_outbox LIMIT 1"
    ).fetchone()
    assert title == f"[{sev004}] ops"
    assert message.startswith("disk almost full") and '"disk": "/"' in message
    assert key == f"alert:{alert_id}@{chat_ids[0]}"


def test_a_plain_insert_into_alerts_routes_too(conn: psycopg.Connection, chats: None) -> None:
    # Seed 004's own INSERT, with no tradestore function involved.
    conn.execute(
        "INSERT INTO system.alerts (alert_type, severity, module, message) "
        "VALUES ('ERROR', 'CRITICAL', 'trade', 'order rejected')"
    )
    assert [c for c, _ in _queued(conn)] == [1, 2, 3]


def test_alerts_with_one_dedupe_key_notify_once_but_are_all_recorded(
    conn: psycopg.Connection, chats: None
) -> None:
    for _ in range(3):
        alerts.raise_alert(conn, "CRITICAL", "exchange down", module="feed", dedupe_key="feed-down")
    assert scalar(conn, "SELECT count(*) FROM system.alerts") == 3
    assert scalar(conn, "SELECT count(*) FROM system.notification_outbox") == 3  # once per chat


def test_001_severity_names_are_accepted(conn: psycopg.Connection) -> None:
    a = alerts.raise_alert(conn, "WARN", "x")
    b = alerts.raise_alert(conn, "info", "y")
    assert conn.execute(
        "SELECT severity, alert_type FROM system.alerts WHERE alert_id IN (%s, %s) "
        "ORDER BY alert_id",
        (a, b),
    ).fetchall() == [("MEDIUM", "WARNING"), ("LOW", "INFO")]


def test_acknowledge(conn: psycopg.Connection) -> None:
    alert_id = alerts.raise_alert(conn, "HIGH", "look at me")
    assert [a.alert_id for a in alerts.open_alerts(conn)] == [alert_id]
    assert alerts.acknowledge(conn, alert_id, by="alice") is True
    assert alerts.acknowledge(conn, alert_id) is False
    ack = conn.execute(
        "SELECT is_acknowledged, acknowledged_by, acknowledged_at IS NOT NULL FROM system.alerts"
    ).fetchone()
    assert ack == (True, "alice", True)
    assert alerts.open_alerts(conn) == []
    with pytest.raises(ValidationError) as missing:
        alerts.acknowledge(conn, 999)
    assert (missing.value.field, missing.value.value) == ("alert_id", "999")


def test_seed_004_acknowledge_update_stamps_the_time(conn: psycopg.Connection) -> None:
    alert_id = alerts.raise_alert(conn, "LOW", "fyi")
    conn.execute("UPDATE system.alerts SET is_acknowledged = true WHERE alert_id = %s", (alert_id,))
    assert scalar(conn, "SELECT acknowledged_at IS NOT NULL FROM system.alerts") is True
    conn.execute(
        "UPDATE system.alerts SET is_acknowledged = false WHERE alert_id = %s", (alert_id,)
    )
    assert scalar(conn, "SELECT acknowledged_at IS NULL FROM system.alerts") is True


def test_update_chat_and_list(conn: psycopg.Connection) -> None:
    outbox.add_chat(conn, 77, "WARN")
    chat = outbox.update_chat(conn, 77, min_severity="CRITICAL", enabled=False)
    assert (chat.min_severity, chat.enabled) == ("CRITICAL", False)
    assert [c.chat_id for c in outbox.list_chats(conn)] == [77]
    with pytest.raises(ValidationError):
        outbox.update_chat(conn, 78, enabled=True)


def test_retry_failed_puts_rows_back(conn: psycopg.Connection) -> None:
    outbox_id = outbox.enqueue(conn, 5, "WARN", "t", "m")
    conn.execute(
        "UPDATE system.notification_outbox SET status = 'FAILED', fail_count = 5 WHERE id = %s",
        (outbox_id,),
    )
    assert outbox.retry_failed(conn) == 1
    assert conn.execute("SELECT status, fail_count FROM system.notification_outbox").fetchone() == (
        "PENDING",
        0,
    )
    stats = outbox.outbox_stats(conn)
    assert (stats.pending, stats.failed) == (1, 0)


def test_backoff_schedule_and_failed_after_five(conn: psycopg.Connection) -> None:
    """Seed 001 §6: 1m, 2m, 5m, 15m between attempts; the fifth failure is final."""
    outbox.add_chat(conn, 3, "CRITICAL")
    outbox_id = outbox.enqueue(conn, 99, "WARN", "t", "m")
    waits = []
    for attempt in range(1, 6):
        conn.execute(
            "SELECT system.record_notification_results('w', %s::jsonb)",
            (f'[{{"id": {outbox_id}, "outcome": "retry", "error": "HTTP 502 #{attempt}"}}]',),
        )
        status, fails, wait = conn.execute(
            "SELECT status, fail_count, round(extract(epoch FROM send_after - now()))::int "
            "FROM system.notification_outbox WHERE id = %s",
            (outbox_id,),
        ).fetchone()
        assert fails == attempt
        waits.append(wait if status == "PENDING" else status)
    assert waits == [60, 120, 300, 900, "FAILED"]
    # The CRITICAL self-alert (seed §6), which queues a notification of its own.
    module, severity, data = conn.execute(
        "SELECT module, severity, data FROM system.alerts"
    ).fetchone()
    assert (module, severity) == ("notify", "CRITICAL")
    assert data["outbox_id"] == outbox_id and data["last_error"] == "HTTP 502 #5"
    assert scalar(conn, "SELECT count(*) FROM system.notification_outbox WHERE chat_id = 3") == 1


def test_unknown_outcome_is_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as bad:
        conn.execute(
            """SELECT system.record_notification_results('w', '[{"id": 1, "outcome": "meh"}]')"""
        )
    assert bad.value.diag.column_name == "outcome"


def test_only_the_outbox_wakes_workers(conn: psycopg.Connection) -> None:
    """NOTIFY takes a global lock at commit, so the triggers that send it are few and known:
    the outbox's (the workers' wake-up, the only sender on tradestore_outbox), the
    runners' bar trigger on candles, which sends only for a series an enabled runner trades
    (candle ingest already notifies for the cache, docs/cache.md, so it adds no lock), and
    the order router's wake-up, sent only for an order routed to an exchange."""
    senders = conn.execute(
        """
        SELECT DISTINCT n.nspname || '.' || c.relname, p.proname,
               p.prosrc ILIKE '%%tradestore_outbox%%'
          FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
          JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT t.tgisinternal AND p.prosrc ILIKE '%%pg_notify%%'
        """
    ).fetchall()
    assert sorted(senders) == [
        ("market.candles", "candles_notify_runners", False),
        ("system.notification_outbox", "trg_outbox_wake_workers", True),
        ("trade.orders", "trg_orders_route_cancel", False),
        ("trade.orders", "trg_orders_route_enqueue", False),
    ]
