"""Exchange API credentials: AES-GCM at rest, bound to their row, masked everywhere they
are shown (listings, seed 003's bithumb.users view, logs), readable only by the engine."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest

from tradestore.db.errors import Conflict, NotFound, ValidationError
from tradestore.identity import apikeys, redact
from tradestore.identity.errors import Forbidden
from tradestore.identity.rls import as_user
from tradestore.identity.secretbox import SecretBox, SecretError

KEY = "bithumb-key-ABCDEFGH-1234"
SECRET = "bithumb-secret-zyxwvut-98765"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox("k" * 16 + "tradestore-test-master-key")


@pytest.fixture
def world(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    conn.execute(
        """INSERT INTO market.exchanges (code, name) VALUES ('bithumb', 'Bithumb'), ('binance', 'Binance');
           INSERT INTO account.users (username, email, password_hash)
           VALUES ('alice', 'a@example.com', 'x'), ('bob', 'b@example.com', 'x');"""
    )
    return conn


def test_store_encrypts_and_decrypt_returns_masked_secrets(world: Any, box: SecretBox) -> None:
    info = apikeys.store(world, box, 1, "bithumb", KEY, SECRET, permissions=["trade", "read"])
    assert info.masked_key == "****1234" and info.permissions == ["read", "trade"]
    assert not hasattr(info, "api_key") and KEY not in repr(info)

    raw = world.execute(
        "SELECT api_key_ciphertext, api_secret_ciphertext FROM account.api_keys"
    ).fetchone()
    assert KEY.encode() not in bytes(raw[0]) and SECRET.encode() not in bytes(raw[1])

    creds = apikeys.decrypt(world, box, info.id)
    assert creds.api_key.get_secret_value() == KEY
    assert creds.api_secret.get_secret_value() == SECRET
    assert KEY not in repr(creds) and SECRET not in str(creds)
    assert apikeys.list_keys(world, 1)[0].last_used_at is not None

    # 003's columns through the seed view: readable, masked.
    row = world.execute(
        "SELECT bithumb_api_key, bithumb_secret_key FROM bithumb.users WHERE id = 1"
    ).fetchone()
    assert row == ("****1234", "********")


def test_a_ciphertext_only_opens_in_its_own_row_and_under_its_own_key(
    world: Any, box: SecretBox
) -> None:
    mine = apikeys.store(world, box, 1, "bithumb", KEY, SECRET)
    theirs = apikeys.store(world, box, 2, "bithumb", "other-key-00000000", "other-secret-0000")
    # Copy alice's ciphertext into bob's row: it does not decrypt there.
    world.execute(
        "UPDATE account.api_keys SET api_secret_ciphertext = "
        "(SELECT api_secret_ciphertext FROM account.api_keys WHERE id = %s) WHERE id = %s",
        (mine.id, theirs.id),
    )
    with pytest.raises(SecretError, match="altered or moved"):
        apikeys.decrypt(world, box, theirs.id)
    with pytest.raises(SecretError, match="different TRADESTORE_SECRET_KEY"):
        apikeys.decrypt(world, SecretBox("another-master-key-of-enough-length!"), mine.id)


def test_rotate_remove_and_reencrypt_under_a_new_master_key(world: Any, box: SecretBox) -> None:
    info = apikeys.store(world, box, 1, "bithumb", KEY, SECRET)
    rotated = apikeys.rotate(world, box, info.id, "new-key-ABCDEFGH-5678", "new-secret-12345678")
    assert rotated.key_hint == "5678"
    assert (
        apikeys.decrypt(world, box, info.id).api_secret.get_secret_value() == "new-secret-12345678"
    )

    apikeys.store(world, box, 2, "binance", "bob-key-0000000011", "bob-secret-000000011")
    new_box = SecretBox("the-next-master-key-after-rotation-2024")
    assert apikeys.reencrypt_all(world, box, new_box) == 2
    assert apikeys.reencrypt_all(world, box, new_box) == 0  # already done
    assert apikeys.decrypt(world, new_box, info.id).api_key.get_secret_value().endswith("5678")

    apikeys.remove(world, info.id)
    with pytest.raises(NotFound):
        apikeys.remove(world, info.id)


def test_bad_input_is_refused_without_echoing_secrets(world: Any, box: SecretBox) -> None:
    with pytest.raises(ValidationError) as err:
        apikeys.store(world, box, 1, "bithumb", "short", SECRET)
    assert err.value.field == "api_key" and "short" not in str(err.value)
    with pytest.raises(ValidationError, match="exchange"):
        apikeys.store(world, box, 1, "nowhere", KEY, SECRET)
    with pytest.raises(ValidationError, match="permissions"):
        apikeys.store(world, box, 1, "bithumb", KEY, SECRET, permissions=["root"])
    apikeys.store(world, box, 1, "bithumb", KEY, SECRET)
    with pytest.raises(Conflict):
        apikeys.store(world, box, 1, "bithumb", KEY, SECRET)
    with pytest.raises(ValidationError, match="TRADESTORE_SECRET_KEY"):
        SecretBox("too-short")


def test_users_manage_only_their_own_keys_and_never_read_ciphertexts(
    world: Any, box: SecretBox
) -> None:
    bobs = apikeys.store(world, box, 2, "bithumb", "bob-key-0000000011", "bob-secret-000000011")
    with as_user(world, 1) as c:
        mine = apikeys.store(c, box, 1, "bithumb", KEY, SECRET)
        assert [k.id for k in apikeys.list_keys(c)] == [mine.id]
    with pytest.raises(Forbidden), as_user(world, 1) as c:
        apikeys.store(c, box, 2, "binance", KEY, SECRET)  # for bob: row-level security
    with pytest.raises(Forbidden), as_user(world, 1) as c:
        apikeys.decrypt(c, box, mine.id)  # no column privilege on ciphertexts
    with pytest.raises(NotFound), as_user(world, 1) as c:
        apikeys.remove(c, bobs.id)
    with pytest.raises(NotFound), as_user(world, 1) as c:
        apikeys.rotate(c, box, bobs.id, KEY, SECRET)
    assert apikeys.decrypt(world, box, bobs.id).api_key.get_secret_value() == "bob-key-0000000011"


def test_credentials_never_reach_a_log_line(
    world: Any, box: SecretBox, caplog: pytest.LogCaptureFixture
) -> None:
    info = apikeys.store(world, box, 1, "bithumb", KEY, SECRET)
    creds = apikeys.decrypt(world, box, info.id)
    log = logging.getLogger("tradestore.test")
    redact.install()
    try:
        _log_secrets(log, creds.api_key.get_secret_value(), caplog)
    finally:
        redact.uninstall()
    text = caplog.text
    for secret in (KEY, SECRET, "unregistered-value-1", "x-y-z-123456", "eyJhbGciOiJIUzI1NiJ9"):
        assert secret not in text
    assert text.count(redact.REDACTED) >= 5


def test_the_filter_redacts_what_passes_a_handler(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(redact.SecretsFilter())
    with caplog.at_level(logging.INFO):
        logging.getLogger("tradestore.test").info("login with password=%s", "hunter2hunter2")
    assert "hunter2hunter2" not in caplog.text and redact.REDACTED in caplog.text


def _log_secrets(log: logging.Logger, key: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        log.info("calling exchange with %s / %s", key, SECRET)
        log.info("payload %s", {"api_key": "unregistered-value-1", "secret": "x-y-z-123456"})
        log.info("Authorization: Bearer %s", "eyJhbGciOiJIUzI1NiJ9.payload.sig")
        try:
            raise RuntimeError(f"exchange refused key {KEY}")
        except RuntimeError:
            log.exception("request failed")
