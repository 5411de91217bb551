"""Seed 001 §10: the worker's role may read the outbox and update its delivery columns,
and nothing else."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors

from tests.notify.conftest import scalar
from tradestore.notify import outbox


@pytest.fixture
def notifier(db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("SET ROLE tradestore_notifier")
        yield c


def test_role_is_nologin_and_not_privileged(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
        "FROM pg_roles WHERE rolname = 'tradestore_notifier'"
    ).fetchone()
    assert row == (False, False, False, False, False)


def test_notifier_can_claim_send_and_heartbeat(
    conn: psycopg.Connection, notifier: psycopg.Connection
) -> None:
    outbox.add_chat(conn, 5, "INFO")
    first = outbox.enqueue(conn, 5, "WARN", "t", "m")
    second = outbox.enqueue(conn, 6, "WARN", "t", "m")
    # The seed's own claim query works as the role ...
    with notifier.transaction():
        rows = notifier.execute(
            "SELECT id FROM system.notification_outbox WHERE status = 'PENDING' "
            "ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 10"
        ).fetchall()
    assert [r[0] for r in rows] == [first, second]
    # ... and so do the worker's functions, including the failure path whose CRITICAL
    # self-alert the role could not write itself.
    claimed = notifier.execute("SELECT id FROM system.claim_notifications('w', 10)").fetchall()
    assert len(claimed) == 2
    notifier.execute(
        "SELECT system.record_notification_results('w', %s::jsonb)",
        (
            f'[{{"id": {first}, "outcome": "sent"}}, {{"id": {second}, "outcome": "failed", '
            f'"error": "HTTP 403: bot was blocked"}}]',
        ),
    )
    notifier.execute("SELECT system.worker_heartbeat('w', 'notify')")
    assert conn.execute(
        "SELECT status FROM system.notification_outbox ORDER BY id LIMIT 2"
    ).fetchall() == [("SENT",), ("FAILED",)]
    assert scalar(conn, "SELECT count(*) FROM system.alerts WHERE module = 'notify'") == 1
    assert scalar(conn, "SELECT count(*) FROM system.worker_heartbeats") == 1


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO system.notification_outbox (chat_id, severity, title, message) VALUES (1, 'INFO', 't', 'm')",
        "DELETE FROM system.notification_outbox",
        "UPDATE system.notification_outbox SET message = 'changed'",
        "UPDATE system.notification_outbox SET chat_id = 666",
        "SELECT * FROM system.telegram_chats",
        "SELECT * FROM system.alerts",
        "INSERT INTO system.alerts (message) VALUES ('x')",
        "SELECT * FROM system.worker_heartbeats",
        "SELECT * FROM trade.orders",
        "SELECT * FROM account.users",
        "SELECT enqueue_notification(1, 'INFO', 't', 'm')",
    ],
)
def test_notifier_is_refused_everything_else(notifier: psycopg.Connection, statement: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        notifier.execute(statement)
