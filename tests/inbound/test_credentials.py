"""Per-user webhook credentials: one user's credential acts for that user only, and no
answer discloses another user's objects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.inbound.conftest import alert, make_client, post
from tradestore.cli import webhooks as webhooks_cli
from tradestore.config import get_settings
from tradestore.identity.rls import as_user
from tradestore.inbound import credentials

ALICE, BOB = 1, 2


@pytest.fixture
def two_users(conn: psycopg.Connection, market: None) -> dict[str, str]:
    """alice (id 1, account 1 'main') from the listing; bob (id 2, account 'main' too)."""
    conn.execute(
        "INSERT INTO account.users (username, email, password_hash) VALUES ('bob', 'bob@example.com', 'x');"
        "INSERT INTO account.accounts (user_id, exchange_id, name, base_currency) VALUES (2, 1, 'main', 'USDT');"
        "INSERT INTO account.accounts (user_id, exchange_id, name, base_currency) VALUES (1, 1, 'alice-only', 'USDT');"
        # bob's orders are funded and held to his (wide) risk limits, as alice's are.
        "UPDATE account.users SET max_risk_per_trade = 100, max_total_risk = 100, max_positions = 1000 WHERE id = 2;"
        "SELECT post_ledger_entry(2, 'DEPOSIT', 'USDT', 10000000);"
    )
    with as_user(conn, ALICE) as c:
        a = credentials.create(c, ALICE, "tv alice").token
    with as_user(conn, BOB) as c:
        b = credentials.create(c, BOB, "tv bob").token
    return {"alice": a, "bob": b}


@pytest.fixture
def client(db: str, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(db, tmp_path, TRADINGVIEW_WEBHOOK_SECRET=None) as c:
        yield c


def _orders(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT a.user_id, o.account_id, o.idempotency_key FROM trade.orders o "
        "JOIN account.accounts a ON a.id = o.account_id ORDER BY o.id"
    ).fetchall()


def _scrub(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "alert_id"}


def test_token_is_stored_only_as_its_hash(conn: psycopg.Connection, two_users: dict) -> None:
    token = two_users["alice"]
    assert token.startswith("tvwh_")
    row = conn.execute(
        "SELECT secret_hash, token_id FROM system.webhook_credentials WHERE user_id = 1"
    ).fetchone()
    assert row[0] == credentials.hash_token(token) and token not in json.dumps(row)


def test_credential_places_orders_for_its_owner_only(
    client: TestClient, conn: psycopg.Connection, two_users: dict
) -> None:
    # bob names "main": his own account 'main', never alice's of the same name
    response = post(client, alert(secret=two_users["bob"], strategy=None))
    assert response.status_code == 202, response.text
    assert _orders(conn) == [(BOB, 2, "tv-1")]
    row = conn.execute(
        "SELECT user_id, credential_id IS NOT NULL FROM system.inbound_alerts WHERE id = %s",
        (response.json()["alert_id"],),
    ).fetchone()
    assert row == (BOB, True)


@pytest.mark.parametrize("account", [1, "1", "alice-only"])
def test_another_users_account_looks_like_no_account(
    client: TestClient, conn: psycopg.Connection, two_users: dict, account: Any
) -> None:
    theirs = post(client, alert(secret=two_users["bob"], account=account, strategy=None))
    nothing = post(
        client,
        alert(secret=two_users["bob"], account=999 if isinstance(account, int) else "zzz",
              strategy=None, idempotency_key="tv-2"),
    )  # fmt: skip
    assert theirs.status_code == nothing.status_code == 422
    # only the caller's own input comes back: nothing about the account or its user
    assert theirs.json()["errors"] == [
        {"field": "account", "rule": "must name one of your accounts", "value": account}
    ]
    assert [{**e, "value": None} for e in nothing.json()["errors"]] == [
        {**e, "value": None} for e in theirs.json()["errors"]
    ]
    assert _orders(conn) == []
    # alice's strategy is not bob's either
    strategy = post(client, alert(secret=two_users["bob"], idempotency_key="tv-3"))
    assert strategy.json()["errors"][0]["rule"] == "must name one of your strategies"


def test_same_idempotency_key_from_two_users_both_succeed(
    client: TestClient, conn: psycopg.Connection, two_users: dict
) -> None:
    first = post(client, alert(secret=two_users["alice"]))
    # the same key with a different payload: for bob it is a new key, not alice's conflict
    second = post(client, alert(secret=two_users["bob"], strategy=None, quantity="0.02"))
    assert (first.status_code, second.status_code) == (202, 202), second.text
    assert "original" not in second.json()
    assert sorted(_orders(conn)) == [(ALICE, 1, "tv-1"), (BOB, 2, "tv-1")]
    # each user's replay is a duplicate of their own alert only
    again = post(client, alert(secret=two_users["bob"], strategy=None, quantity="0.02"))
    assert again.status_code == 200
    assert again.json()["original"]["alert_id"] == second.json()["alert_id"]


def test_revoked_and_rotated_tokens_stop_working(
    client: TestClient, conn: psycopg.Connection, two_users: dict
) -> None:
    with as_user(conn, ALICE) as c:
        [cred] = credentials.list_credentials(c, ALICE)
        new = credentials.rotate(c, ALICE, cred.id).token
    assert post(client, alert(secret=two_users["alice"])).status_code == 401
    assert post(client, alert(secret=new, idempotency_key="tv-2")).status_code == 202
    with as_user(conn, BOB) as c:
        # bob cannot see, rotate or revoke alice's credential
        assert credentials.list_credentials(c, ALICE) == []
        with pytest.raises(Exception, match="not found"):
            credentials.revoke(c, BOB, cred.id)
    with as_user(conn, ALICE) as c:
        assert credentials.revoke(c, ALICE, cred.id) is True
    assert post(client, alert(secret=new, idempotency_key="tv-3")).status_code == 401


def test_credential_of_a_readonly_user_never_acts(
    client: TestClient, conn: psycopg.Connection, two_users: dict
) -> None:
    conn.execute("UPDATE account.users SET role = 'readonly' WHERE id = %s", (BOB,))
    response = post(client, alert(secret=two_users["bob"], strategy=None))
    assert response.status_code == 401 and _orders(conn) == []


def test_escaped_secret_key_is_accepted_and_redacted(
    client: TestClient, conn: psycopg.Connection, two_users: dict
) -> None:
    token = two_users["alice"]
    body = json.dumps(alert(secret="PLACEHOLDER")).replace('"secret"', '"\\u0073ecret"')
    body = body.replace("PLACEHOLDER", token).encode()
    assert b'"\\u0073ecret"' in body
    response = post(client, body)
    assert response.status_code == 202, response.text
    raw, payload = conn.execute(
        "SELECT raw_body, payload::text FROM system.inbound_alerts WHERE id = %s",
        (response.json()["alert_id"],),
    ).fetchone()
    assert token.encode() not in bytes(raw) and token not in payload
    assert b'"\\u0073ecret": "[redacted]"' in bytes(raw)
    # and a body that is not JSON at all still loses it
    garbled = post(client, b'{"\\u0073ecret": "' + token.encode() + b'", oops')
    raw = conn.execute(
        "SELECT raw_body FROM system.inbound_alerts WHERE id = %s", (garbled.json()["alert_id"],)
    ).fetchone()[0]
    assert garbled.status_code == 400 and token.encode() not in bytes(raw)


def test_cli_creates_lists_rotates_and_revokes(
    db: str, conn: psycopg.Connection, two_users: dict, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    cli = typer.Typer()
    cli.add_typer(webhooks_cli.app, name="webhooks")
    runner = CliRunner()
    try:
        made = runner.invoke(cli, ["webhooks", "create", "--user", "bob", "--label", "second"])
        assert made.exit_code == 0, made.output
        token = made.output.strip().splitlines()[-1]
        assert conn.execute(
            "SELECT count(*) FROM system.webhook_credentials WHERE user_id = 2 AND secret_hash = %s",
            (credentials.hash_token(token),),
        ).fetchone() == (1,)
        cred_id = conn.execute(
            "SELECT id FROM system.webhook_credentials WHERE label = 'second'"
        ).fetchone()[0]
        listed = runner.invoke(cli, ["webhooks", "list", "--user", "bob"])
        assert "second" in listed.output and token not in listed.output
        # alice cannot touch bob's credential
        theirs = runner.invoke(cli, ["webhooks", "revoke", str(cred_id), "--user", "alice"])
        assert theirs.exit_code == 1 and "not found" in theirs.output
        rotated = runner.invoke(cli, ["webhooks", "rotate", str(cred_id), "--user", "bob"])
        assert rotated.exit_code == 0 and rotated.output.strip().splitlines()[-1] != token
        gone = runner.invoke(cli, ["webhooks", "revoke", str(cred_id), "--user", "bob"])
        assert gone.exit_code == 0 and "revoked" in gone.output
        assert conn.execute(
            "SELECT revoked_at IS NOT NULL FROM system.webhook_credentials WHERE id = %s",
            (cred_id,),
        ).fetchone() == (True,)
    finally:
        get_settings.cache_clear()
