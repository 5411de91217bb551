"""The webhook's serving path: few database round trips per request, and a credential
checked and used for storing an alert in one transaction (a rotation or revocation is
wholly before or wholly after an alert)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from benchmarks.roundtrips import RoundTrips
from fastapi.testclient import TestClient

from tests.inbound.conftest import alert, make_client, post
from tests.notify.conftest import wait_until
from tradestore.identity.rls import as_user
from tradestore.inbound import credentials
from tradestore.inbound.config import load_webhook_settings
from tradestore.inbound.sweep import sweep_unjudged
from tradestore.ops import maintenance


@pytest.fixture
def token(conn: psycopg.Connection, market: None) -> str:
    with as_user(conn, 1) as c:
        return credentials.create(c, 1, "tv").token


@pytest.fixture
def client(db: str, token: str, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(db, tmp_path, TRADINGVIEW_WEBHOOK_SECRET=None) as c:
        yield c


def _pg_round_trips(client: TestClient, body: dict[str, Any]) -> tuple[int, int]:
    """(status, PostgreSQL round trips) of one request, the order placed after the reply
    included (TestClient runs the background task before it returns)."""
    with RoundTrips() as rt:
        status = post(client, body).status_code
    return status, rt.take()[0]


def test_each_kind_of_request_takes_few_round_trips(
    client: TestClient, token: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The app trusts "no maintenance window" for RECHECK_SECONDS after a check; at 0 every
    # write request makes the check, so the counts below do not depend on the clock.
    monkeypatch.setattr(maintenance, "RECHECK_SECONDS", 0.0)
    post(client, alert(secret=token, idempotency_key="warm"))  # pool connections made
    # A valid alert with a secret: the app's maintenance check, then one transaction (BEGIN;
    # the store statement, which checks the token and looks up what the alert names; the
    # verdict; COMMIT: one commit before the reply); then the order in one statement.
    assert _pg_round_trips(client, alert(secret=token, idempotency_key="k1")) == (202, 6)
    assert _pg_round_trips(client, alert(secret=token, idempotency_key="k1")) == (200, 5)
    assert _pg_round_trips(client, alert(secret=token, idempotency_key="k1", comment="x")) == (
        409,
        5,
    )
    # an alert that cannot be accepted is stored, then judged: the check, the credential,
    # the store, the verdict
    assert _pg_round_trips(client, alert(secret=token, side="hold")) == (422, 4)
    # a valid alert with a dead token goes the transaction's way
    assert _pg_round_trips(client, alert(secret="tvwh_0123456789abcdef_" + "x" * 43)) == (401, 5)
    assert _pg_round_trips(client, alert(secret="nothing like a token")) == (401, 3)
    # what the fewer round trips record is still complete
    orders = conn.execute("SELECT idempotency_key FROM trade.orders ORDER BY id").fetchall()
    assert orders == [("warm",), ("k1",)]
    rows = conn.execute(
        "SELECT disposition, parsed, order_id IS NOT NULL, processed_at IS NOT NULL "
        "FROM system.inbound_alerts ORDER BY id"
    ).fetchall()
    assert rows == [
        ("ACCEPTED", True, True, True),
        ("ACCEPTED", True, True, True),
        ("DUPLICATE", False, False, True),
        ("CONFLICT", False, False, True),
        ("INVALID", False, False, True),
        ("REJECTED", False, False, True),
        ("REJECTED", False, False, True),
    ]
    assert conn.execute(
        "SELECT processed FROM system.inbound_dedupe_keys WHERE idempotency_key = 'k1'"
    ).fetchone() == (True,)
    alerts = conn.execute(
        "SELECT severity, alert_type, user_id FROM system.alerts "
        "WHERE module = 'inbound' ORDER BY alert_id"
    ).fetchall()
    assert alerts == [
        ("LOW", "TRADE_SIGNAL", 1),
        ("LOW", "TRADE_SIGNAL", 1),
        ("HIGH", "WARNING", 1),
    ]
    used = conn.execute("SELECT last_used_at FROM system.webhook_credentials").fetchone()
    assert used is not None and used[0] is not None
    # a write within RECHECK_SECONDS of a check that found no window skips the check
    monkeypatch.setattr(maintenance, "RECHECK_SECONDS", 3600.0)
    assert _pg_round_trips(client, alert(secret="nothing like a token")) == (401, 3)
    assert _pg_round_trips(client, alert(secret="nothing like a token")) == (401, 2)


def test_a_rotation_under_way_decides_before_the_alert_is_stored(
    db: str, client: TestClient, token: str, conn: psycopg.Connection
) -> None:
    # A rotation holds the credential (not committed yet) while an alert with the old
    # token arrives: the alert's store waits for it, then finds the token dead.
    rotating = psycopg.connect(db)
    try:
        # (the owner's own connection, holding its transaction open)
        credentials.rotate(rotating, 1, credentials.list_credentials(rotating, 1)[0].id)
        answer: dict[str, Any] = {}
        sender = threading.Thread(target=lambda: answer.update(r=post(client, alert(secret=token))))
        sender.start()
        wait_until(
            lambda: (
                not sender.is_alive()
                or conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%%INSERT INTO system.inbound_alerts%%'"
                ).fetchone()[0]
            ),
            what="the alert's store waiting for the rotation",
        )
        assert sender.is_alive(), f"stored without waiting: {answer['r'].json()}"
        rotating.commit()
        sender.join(30)
    finally:
        rotating.close()
    assert answer["r"].status_code == 401
    row = conn.execute("SELECT user_id, credential_id, disposition FROM system.inbound_alerts")
    assert row.fetchall() == [(None, None, "REJECTED")]
    assert conn.execute("SELECT count(*) FROM trade.orders").fetchone() == (0,)


def test_a_rotation_that_waited_is_stamped_after_the_alert(
    db: str, token: str, conn: psycopg.Connection
) -> None:
    # The rotation's transaction began before the alert was stored and committed after
    # it: the alert came with a token that is now dead, so the sweep must not act on it.
    cred = conn.execute("SELECT id FROM system.webhook_credentials").fetchone()[0]
    rotating = psycopg.connect(db)
    try:
        rotating.execute("SELECT now()")  # its transaction (and now()) starts here
        alert_id = conn.execute(
            "INSERT INTO system.inbound_alerts (payload, raw_body, user_id, credential_id, "
            "received_at) VALUES (%s::jsonb, '\\x7b7d', 1, %s, clock_timestamp()) RETURNING id",
            ('{"idempotency_key": "late"}', cred),
        ).fetchone()[0]
        credentials.rotate(rotating, 1, cred)
        rotating.commit()
    finally:
        rotating.close()

    async def sweep() -> dict[str, int]:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as c:
            return await sweep_unjudged(c, load_webhook_settings(None), min_age_seconds=0)

    assert asyncio.run(sweep()) == {"REJECTED": 1}
    error = conn.execute(
        "SELECT error FROM system.inbound_alerts WHERE id = %s", (alert_id,)
    ).fetchone()[0]
    assert error.startswith("secret: the webhook credential was rotated after the alert arrived")


def test_a_request_the_transaction_cannot_store_is_stored_on_its_own(
    client: TestClient, token: str, conn: psycopg.Connection
) -> None:
    # A valid alert with a live token whose JSON jsonb refuses (\u0000): the one-transaction
    # store fails and rolls back; the request is then stored on its own, raw body kept.
    body = alert(secret=token, idempotency_key="nul", comment="a\u0000b")
    response = post(client, body)
    assert response.status_code == 400
    row = conn.execute(
        "SELECT disposition, strpos(convert_from(raw_body, 'UTF8'), %s) > 0 "
        "FROM system.inbound_alerts",
        ("\\u0000",),
    ).fetchall()
    assert row == [("INVALID", True)]
    assert conn.execute("SELECT count(*) FROM trade.orders").fetchone() == (0,)
