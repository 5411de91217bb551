"""Disk fill (rate limit per source address, capped stored bodies), retention of the
alert box, the sweep of alerts stored but never judged, and who hears about an alert."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg
import pytest

from tests.inbound.conftest import SECRET, alert, make_client, post
from tradestore.db.connect import connect
from tradestore.identity.rls import as_user
from tradestore.inbound.config import load_webhook_settings
from tradestore.inbound.sweep import sweep_unjudged
from tradestore.inbound.tradingview import payload_hash
from tradestore.notify import outbox
from tradestore.ops.supervise import DATABASE_START_HOOKS, run_start_hooks
from tradestore.ops.up import sweep_inbound_alerts


def test_many_large_posts_from_one_address_are_refused_and_storage_is_bounded(
    db: str, market: None, conn: psycopg.Connection, tmp_path: Path
) -> None:
    big = json.dumps(alert(secret="wrong", comment="x" * 15000)).encode()
    assert len(big) > 15000
    with make_client(
        db, tmp_path, WEBHOOK_RATE_LIMIT_PER_IP=5, WEBHOOK_STORED_BODY_BYTES=1024
    ) as client:
        codes = [post(client, big).status_code for _ in range(12)]
        oversized = post(client, b"{" + b" " * 20000 + b"}")
    assert codes == [401] * 5 + [429] * 7 and oversized.status_code == 429
    rows, raw_bytes, payload_bytes, cut = conn.execute(
        "SELECT count(*), sum(octet_length(raw_body)), sum(octet_length(payload::text)), "
        "bool_and(raw_truncated) FROM system.inbound_alerts"
    ).fetchone()
    assert rows == 5 and cut is True
    assert raw_bytes <= 5 * 1024 and payload_bytes <= 5 * (1024 + 200)


def test_oversized_body_keeps_only_the_stored_cap(
    db: str, market: None, conn: psycopg.Connection, tmp_path: Path
) -> None:
    with make_client(db, tmp_path, WEBHOOK_STORED_BODY_BYTES=512) as client:
        response = post(client, json.dumps(alert(comment="y" * 20000)).encode())
    assert response.status_code == 413
    raw, cut = conn.execute(
        "SELECT raw_body, raw_truncated FROM system.inbound_alerts WHERE id = %s",
        (response.json()["alert_id"],),
    ).fetchone()
    assert len(bytes(raw)) <= 512 and cut is True and SECRET.encode() not in bytes(raw)


def test_retention_deletes_old_finished_alerts_only(client, conn: psycopg.Connection) -> None:
    ids = [post(client, alert(secret="nope")).json()["alert_id"] for _ in range(2)]
    waiting = conn.execute(
        "INSERT INTO system.inbound_alerts (payload, raw_body) VALUES ('{}', '') RETURNING id"
    ).fetchone()[0]
    conn.execute(
        "UPDATE system.inbound_alerts SET received_at = now() - interval '40 days' WHERE id = ANY(%s)",
        ([ids[0], waiting],),
    )
    assert conn.execute("SELECT system.apply_inbound_retention()").fetchone() == (1,)
    left = {r[0] for r in conn.execute("SELECT id FROM system.inbound_alerts").fetchall()}
    assert left == {ids[1], waiting}
    conn.execute(
        "INSERT INTO system.system_configuration (key, value) "
        "VALUES ('inbound_alerts.retention', '\"1 hour\"')"
    )
    conn.execute("UPDATE system.inbound_alerts SET received_at = now() - interval '2 hours'")
    assert conn.execute("SELECT system.apply_inbound_retention()").fetchone() == (1,)


def _stored(conn: psycopg.Connection, body: dict, *, user: int | None, age: str) -> int:
    return conn.execute(
        "INSERT INTO system.inbound_alerts (payload, raw_body, user_id, received_at) "
        "VALUES (%s::jsonb, %s, %s, now() - %s::interval) RETURNING id",
        (json.dumps(body), json.dumps(body).encode(), user, age),
    ).fetchone()[0]


def test_sweep_judges_recent_unjudged_alerts_and_closes_the_rest(
    db: str, market: None, conn: psycopg.Connection
) -> None:
    # As if the database died between storing and judging.
    fresh = _stored(conn, alert(secret="[redacted]"), user=1, age="1 minute")
    replay = _stored(conn, alert(secret="[redacted]"), user=1, age="50 seconds")
    stale = _stored(conn, alert(secret="[redacted]", idempotency_key="old"), user=1, age="1 hour")
    stranger = _stored(conn, alert(secret="[redacted]"), user=None, age="1 minute")
    young = _stored(conn, alert(secret="[redacted]", idempotency_key="y"), user=1, age="0 s")

    async def sweep() -> dict[str, int]:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as c:
            return await sweep_unjudged(c, load_webhook_settings(None))

    assert asyncio.run(sweep()) == {"ACCEPTED": 1, "DUPLICATE": 1, "EXPIRED": 1, "REJECTED": 1}
    states = dict(conn.execute("SELECT id, disposition FROM system.inbound_alerts").fetchall())
    assert states == {
        fresh: "ACCEPTED",
        replay: "DUPLICATE",
        stale: "EXPIRED",
        stranger: "REJECTED",
        young: "RECEIVED",  # may still be judged by the request that stored it
    }
    assert conn.execute("SELECT count(*), min(idempotency_key) FROM trade.orders").fetchone() == (
        1,
        "tv-1",
    )
    assert conn.execute(
        "SELECT payload_hash FROM system.inbound_dedupe_keys WHERE user_id = 1"
    ).fetchone() == (payload_hash(alert(secret="[redacted]")),)
    # a second sweep finds nothing more to do
    assert asyncio.run(sweep()) == {}


def test_up_sweeps_unjudged_alerts_whenever_the_database_comes_back(
    db: str, market: None, conn: psycopg.Connection
) -> None:
    # `up` runs its database start hooks at start and after every restart of PostgreSQL.
    assert sweep_inbound_alerts in DATABASE_START_HOOKS
    left = _stored(conn, alert(secret="[redacted]"), user=1, age="1 minute")
    run_start_hooks(db)
    state = conn.execute("SELECT disposition FROM system.inbound_alerts WHERE id = %s", (left,))
    assert state.fetchone() == ("ACCEPTED",)
    assert conn.execute("SELECT count(*) FROM trade.orders").fetchone() == (1,)


def test_webhook_outcome_alerts_belong_to_the_owner(
    client, conn: psycopg.Connection, db: str
) -> None:
    conn.execute(
        "INSERT INTO account.users (username, email, password_hash, role) "
        "VALUES ('rita', 'rita@example.com', 'x', 'readonly')"
    )
    outbox.add_chat(conn, 100, "INFO", user_id=1)
    outbox.add_chat(conn, 200, "INFO", user_id=2)
    outbox.add_chat(conn, 300, "INFO")  # operators
    post(client, alert())  # placed: LOW TRADE_SIGNAL alert
    post(client, alert(quantity="0.02"))  # conflict: HIGH alert
    post(client, alert(quantity="0.00001", idempotency_key="tv-2"))  # refused: HIGH alert
    owners = conn.execute("SELECT DISTINCT user_id FROM system.alerts").fetchall()
    assert owners == [(1,)]
    with connect(db, autocommit=True) as c, as_user(c, 2) as rita:
        assert rita.execute("SELECT count(*) FROM system.alerts").fetchone() == (0,)
    with connect(db, autocommit=True) as c, as_user(c, 1) as alice:
        assert alice.execute("SELECT count(*) FROM system.alerts").fetchone() == (3,)
    assert {r[0] for r in conn.execute("SELECT chat_id FROM system.notification_outbox")} == {100}


def test_system_alerts_are_for_admins_only(conn: psycopg.Connection, db: str) -> None:
    conn.execute(
        "INSERT INTO account.users (username, email, password_hash, role) VALUES "
        "('rita', 'rita@example.com', 'x', 'readonly'), ('root', 'root@example.com', 'x', 'admin')"
    )
    conn.execute("SELECT public.raise_alert('CRITICAL', 'disk almost full', 'ops')")
    with connect(db, autocommit=True) as c:
        with as_user(c, 1) as rita:
            assert rita.execute("SELECT count(*) FROM system.alerts").fetchone() == (0,)
        with as_user(c, 2) as root:
            assert root.execute("SELECT count(*) FROM system.alerts").fetchone() == (1,)


@pytest.fixture
def client(db: str, market: None, tmp_path: Path):
    with make_client(db, tmp_path) as c:
        yield c


def test_the_daily_retention_job_prunes_the_alert_box(
    client, conn: psycopg.Connection, db: str
) -> None:
    from tradestore.config import load_settings
    from tradestore.ops.scheduler import _apply_retention

    old = post(client, alert(secret="nope")).json()["alert_id"]
    conn.execute(
        "UPDATE system.inbound_alerts SET received_at = now() - interval '31 days' WHERE id = %s",
        (old,),
    )
    detail = _apply_retention(db, load_settings(None, DATABASE_URL=db))
    assert detail["inbound_alerts_deleted"] == 1
    assert conn.execute("SELECT count(*) FROM system.inbound_alerts").fetchone() == (0,)
