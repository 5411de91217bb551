"""The REST endpoints for webhook credentials (/api/v1/webhooks/credentials): a user
creates, lists, rotates and revokes their own, and the token they get is what the
TradingView webhook accepts. Another user's credential looks exactly like none."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from tests.api.world import World
from tradestore.inbound import credentials

URL = "/api/v1/webhooks/credentials"


def _alert(token: str, key: str) -> dict[str, Any]:
    return {
        "secret": token,
        "idempotency_key": key,
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "account": "main",
        "side": "buy",
        "order_type": "limit",
        "quantity": "0.01",
        "price": "40000",
    }


def _webhook(client: TestClient, token: str, key: str) -> int:
    return client.post("/webhooks/tradingview", json=_alert(token, key)).status_code


def test_trader_creates_lists_rotates_and_revokes(
    client: TestClient,
    as_user: Callable[[str], dict[str, str]],
    conn: psycopg.Connection,
    world: World,
) -> None:
    alice = as_user("alice")
    made = client.post(URL, json={"label": "tv main"}, headers=alice)
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    cred = made.json()["credential"]
    assert token.startswith(f"tvwh_{cred['token_id']}_") and cred["label"] == "tv main"
    assert cred["revoked_at"] is None and cred["rotated_at"] is None
    # only the hash is stored
    assert conn.execute(
        "SELECT secret_hash FROM system.webhook_credentials WHERE id = %s", (cred["id"],)
    ).fetchone() == (credentials.hash_token(token),)

    # the token is shown once: the list has the credential, never a token or a hash
    listed = client.get(URL, headers=alice)
    assert listed.status_code == 200
    assert [c["id"] for c in listed.json()] == [cred["id"]]
    assert token not in listed.text and token.rsplit("_", 1)[1] not in listed.text
    assert "secret_hash" not in listed.text and "token" not in listed.json()[0]

    assert _webhook(client, token, "k-1") == 202
    assert client.get(URL, headers=alice).json()[0]["last_used_at"] is not None

    rotated = client.post(f"{URL}/{cred['id']}/rotate", headers=alice)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["token"]
    assert new != token and rotated.json()["credential"]["rotated_at"] is not None
    assert rotated.json()["credential"]["id"] == cred["id"]
    assert new not in client.get(URL, headers=alice).text
    # the old token stops working at once, the new one works
    assert _webhook(client, token, "k-2") == 401
    assert _webhook(client, new, "k-3") == 202

    revoked = client.delete(f"{URL}/{cred['id']}", headers=alice)
    assert revoked.status_code == 200 and revoked.json() == {"id": cred["id"], "revoked": True}
    assert _webhook(client, new, "k-4") == 401
    # revoking again says so; a revoked credential cannot be rotated back to life
    again = client.delete(f"{URL}/{cred['id']}", headers=alice)
    assert again.json() == {"id": cred["id"], "revoked": False}
    assert client.post(f"{URL}/{cred['id']}/rotate", headers=alice).status_code == 404
    assert _webhook(client, new, "k-5") == 401
    # the revoked credential stays in the list, marked
    [kept] = client.get(URL, headers=alice).json()
    assert kept["revoked_at"] is not None
    orders = conn.execute(
        "SELECT idempotency_key FROM trade.orders WHERE source = 'WEBHOOK' ORDER BY id"
    ).fetchall()
    assert orders == [("k-1",), ("k-3",)]


def test_another_users_credential_looks_like_none(
    client: TestClient,
    as_user: Callable[[str], dict[str, str]],
    conn: psycopg.Connection,
    world: World,
) -> None:
    alice, bob = as_user("alice"), as_user("bob")
    made = client.post(URL, json={"label": "alice's"}, headers=alice).json()
    cred_id, token = made["credential"]["id"], made["token"]
    missing = cred_id + 1000

    assert client.get(URL, headers=bob).json() == []
    for method, path in (("POST", "/{}/rotate"), ("DELETE", "/{}")):
        theirs = client.request(method, URL + path.format(cred_id), headers=bob)
        nothing = client.request(method, URL + path.format(missing), headers=bob)
        assert theirs.status_code == nothing.status_code == 404, theirs.text
        # the same answer as for an id that does not exist, but for the id itself
        body, none = theirs.json()["error"], nothing.json()["error"]
        assert {**body, "value": None} == {**none, "value": None}
        assert "alice" not in theirs.text and "label" not in theirs.text

    # alice's credential is untouched: same hash, live, and it still works
    row = conn.execute(
        "SELECT secret_hash, rotated_at, revoked_at FROM system.webhook_credentials WHERE id = %s",
        (cred_id,),
    ).fetchone()
    assert row == (credentials.hash_token(token), None, None)
    assert _webhook(client, token, "k-1") == 202


def test_readonly_user_cannot_create_or_rotate(
    client: TestClient,
    as_user: Callable[[str], dict[str, str]],
    conn: psycopg.Connection,
    world: World,
) -> None:
    rita = as_user("rita")
    refused = client.post(URL, json={"label": "mine"}, headers=rita)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["field"] == "role"
    assert conn.execute("SELECT count(*) FROM system.webhook_credentials").fetchone() == (0,)
    assert client.get(URL, headers=rita).json() == []


def test_demoted_user_can_still_revoke_their_credential(
    client: TestClient,
    as_user: Callable[[str], dict[str, str]],
    conn: psycopg.Connection,
    world: World,
) -> None:
    # A trader made readonly keeps their (inert) credentials; revoking one must still
    # work, or it would come back to life with a later promotion.
    made = client.post(URL, headers=as_user("bob")).json()
    conn.execute("UPDATE account.users SET role = 'readonly' WHERE id = %s", (world.bob.user_id,))
    bob = as_user("bob")
    assert client.post(f"{URL}/{made['credential']['id']}/rotate", headers=bob).status_code == 403
    revoked = client.delete(f"{URL}/{made['credential']['id']}", headers=bob)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked"] is True
    conn.execute("UPDATE account.users SET role = 'trader' WHERE id = %s", (world.bob.user_id,))
    assert _webhook(client, made["token"], "k-1") == 401


def test_label_is_checked(
    client: TestClient, as_user: Callable[[str], dict[str, str]], world: World
) -> None:
    alice = as_user("alice")
    blank = client.post(URL, json={"label": "   "}, headers=alice)
    assert blank.status_code == 422 and blank.json()["error"]["field"] == "label"
    long = client.post(URL, json={"label": "x" * 101}, headers=alice)
    assert long.status_code == 422
    assert client.post(URL, headers=alice).json()["credential"]["label"] is None
