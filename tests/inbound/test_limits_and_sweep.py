"""Disk fill (rate limit per source address, capped stored bodies), retention of the
alert box, the sweep of alerts stored but never judged, and who hears about an alert."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.inbound.conftest import SECRET, alert, make_client, post
from tradestore.db.connect import connect
from tradestore.db.errors import ValidationError
from tradestore.identity.rls import as_user
from tradestore.inbound import credentials
from tradestore.inbound.config import load_webhook_settings
from tradestore.inbound.sweep import stored_facts, sweep_unjudged
from tradestore.inbound.tradingview import Owner, Reply, judge, payload_hash
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

    # These alerts came with the legacy shared secret (no credential), still set for alice.
    def sweep() -> dict[str, int]:
        return asyncio.run(_sweep(db, LEGACY))

    assert sweep() == {"ACCEPTED": 1, "DUPLICATE": 1, "EXPIRED": 1, "REJECTED": 1}
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
    assert sweep() == {}


LEGACY = {"TRADINGVIEW_WEBHOOK_SECRET": SECRET, "TRADINGVIEW_WEBHOOK_USER": "alice"}


async def _sweep(db: str, webhook: dict[str, Any]) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as c:
        return await sweep_unjudged(c, load_webhook_settings(None, **webhook))


def _credential(conn: psycopg.Connection, user_id: int) -> int:
    with as_user(conn, user_id) as c:
        return credentials.create(c, user_id).credential.id


def _owned(conn: psycopg.Connection, key: str, user: int, credential: int | None) -> int:
    alert_id = _stored(conn, alert(secret="[redacted]", idempotency_key=key), user=user,
                       age="1 minute")  # fmt: skip
    conn.execute(
        "UPDATE system.inbound_alerts SET credential_id = %s WHERE id = %s", (credential, alert_id)
    )
    return alert_id


def _verdicts(conn: psycopg.Connection) -> dict[int, tuple[str, str | None]]:
    rows = conn.execute("SELECT id, disposition, error FROM system.inbound_alerts").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_sweep_does_not_act_on_alerts_whose_credential_died_after_they_arrived(
    db: str, market: None, conn: psycopg.Connection
) -> None:
    conn.execute(
        "INSERT INTO account.users (username, email, password_hash) VALUES "
        "('bob', 'bob@example.com', 'x');"
        "INSERT INTO account.accounts (user_id, exchange_id, name, base_currency) "
        "VALUES (2, 1, 'main', 'USDT');"
    )
    live, revoked, rotated, rotated_before = (_credential(conn, 1) for _ in range(4))
    bobs = _credential(conn, 2)
    ok = _owned(conn, "live", 1, live)
    gone = _owned(conn, "revoked", 1, revoked)
    turned = _owned(conn, "rotated", 1, rotated)
    earlier = _owned(conn, "rotated-before", 1, rotated_before)
    demoted = _owned(conn, "demoted", 2, bobs)
    legacy = _owned(conn, "legacy", 1, None)
    # after the alerts arrived (a minute ago): one credential revoked, one rotated; one
    # was rotated before its alert arrived (the alert came with the new token)
    conn.execute(
        "UPDATE system.webhook_credentials SET revoked_at = now() WHERE id = %s", (revoked,)
    )
    conn.execute(
        "UPDATE system.webhook_credentials SET rotated_at = now() WHERE id = %s", (rotated,)
    )
    conn.execute(
        "UPDATE system.webhook_credentials SET rotated_at = now() - interval '2 minutes' "
        "WHERE id = %s",
        (rotated_before,),
    )
    conn.execute("UPDATE account.users SET role = 'readonly' WHERE id = 2")

    # the legacy secret is no longer set: its alert does not act either
    assert asyncio.run(_sweep(db, {"TRADINGVIEW_WEBHOOK_SECRET": None})) == {
        "ACCEPTED": 2,
        "REJECTED": 4,
    }
    verdicts = _verdicts(conn)
    assert verdicts[ok] == ("ACCEPTED", None) and verdicts[earlier] == ("ACCEPTED", None)
    assert verdicts[gone][0] == verdicts[turned][0] == verdicts[demoted][0] == "REJECTED"
    assert verdicts[gone][1].startswith("secret: the webhook credential was revoked")
    assert verdicts[turned][1].startswith("secret: the webhook credential was rotated after")
    assert verdicts[demoted][1].startswith("secret: the credential's owner is no longer")
    assert verdicts[legacy][0] == "REJECTED"
    assert verdicts[legacy][1].startswith("secret: the legacy TRADINGVIEW_WEBHOOK_SECRET")
    orders = conn.execute("SELECT idempotency_key FROM trade.orders ORDER BY id").fetchall()
    assert orders == [("live",), ("rotated-before",)]
    # only the accepted alerts' keys were used: the rejected ones can still be sent again
    keys = {r[0] for r in conn.execute("SELECT idempotency_key FROM system.inbound_dedupe_keys")}
    assert keys == {"live", "rotated-before"}


def test_sweep_asks_again_when_judging_a_credential_revoked_meanwhile(
    db: str, market: None, conn: psycopg.Connection
) -> None:
    # The credential is revoked after the sweep function handed the alert over for
    # re-judging and before the verdict: the verdict's own check stops it.
    cred = _credential(conn, 1)
    alert_id = _owned(conn, "k", 1, cred)
    assert conn.execute("SELECT * FROM system.sweep_unjudged_inbound()").fetchall() == [
        (alert_id, "REJUDGE")
    ]
    conn.execute("UPDATE system.webhook_credentials SET revoked_at = now() WHERE id = %s", (cred,))

    async def rejudge() -> Reply:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as c:
            facts = await stored_facts(c, alert_id)
            assert facts is not None and facts.owner == Owner(1, cred)
            return await judge(c, alert_id, facts, load_webhook_settings(None),
                               recheck_owner=True)  # fmt: skip

    reply = asyncio.run(rejudge())
    assert reply.status == 401 and reply.process_alert_id is None
    assert _verdicts(conn)[alert_id][0] == "REJECTED"
    assert conn.execute("SELECT count(*) FROM trade.orders").fetchone() == (0,)


def test_revocation_is_final_in_the_database(db: str, conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO account.users (username, email, password_hash) VALUES "
        "('alice', 'alice@example.com', 'x')"
    )
    with as_user(conn, 1) as c:
        cred = credentials.create(c, 1)
        assert credentials.revoke(c, 1, cred.credential.id) is True
    for change in ("revoked_at = NULL", "secret_hash = repeat('a', 64)"):
        # neither the owner (in psql) nor an admin can bring it back
        with (
            pytest.raises(ValidationError, match="revoked_at: a revoked webhook credential"),
            as_user(conn, 1) as c,
        ):
            c.execute(f"UPDATE system.webhook_credentials SET {change}")
        with pytest.raises(psycopg.errors.CheckViolation, match="stays revoked"):
            conn.execute(f"UPDATE system.webhook_credentials SET {change}")
    with as_user(conn, 1) as c:
        c.execute("UPDATE system.webhook_credentials SET label = 'old'")  # the rest may change


def test_up_sweeps_unjudged_alerts_whenever_the_database_comes_back(
    db: str, market: None, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `up` runs its database start hooks at start and after every restart of PostgreSQL.
    assert sweep_inbound_alerts in DATABASE_START_HOOKS
    # The alert came with the legacy shared secret, still set for alice.
    monkeypatch.setenv("TRADINGVIEW_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TRADINGVIEW_WEBHOOK_USER", "alice")
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
