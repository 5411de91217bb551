"""argon2id hashing, the password rules, and token shapes."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from tradestore.db.errors import ValidationError
from tradestore.identity import passwords, tokens
from tradestore.identity.errors import AuthError


def test_hashes_are_argon2id_with_rfc9106_parameters_and_verify() -> None:
    hashed = passwords.hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert passwords.verify_password(hashed, "correct horse battery")
    assert not passwords.verify_password(hashed, "correct horse batterY")
    assert not passwords.verify_password("not a hash", "x")
    assert not passwords.needs_rehash(hashed)
    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    assert passwords.needs_rehash(weaker.hash("correct horse battery"))


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short", "must be 8 to 128 characters"),
        ("x" * 129, "must be 8 to 128 characters"),
        (" " * 10, "must not be only whitespace"),
        ("Alice-Trader", "must differ from the username"),
    ],
)
def test_password_rules_name_the_rule_and_never_echo_the_password(password: str, rule: str) -> None:
    with pytest.raises(ValidationError) as err:
        passwords.check_password_rules(password, username="alice-trader")
    assert err.value.field == "password" and err.value.rule == rule
    assert password.strip() == "" or password not in str(err.value)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("password", "must not be a commonly used password"),
        ("12345678", "must not be a commonly used password"),
        ("Iloveyou1", "must not be a commonly used password"),
        ("QWERTYUIOP", "must not be a commonly used password"),
        (
            "alice-trader-2024",
            "must not contain the username, the email address or the service's name",
        ),
        ("ALICE.SMITH", "must not contain the username, the email address or the service's name"),
        (
            "my-TradeStore-pw",
            "must not contain the username, the email address or the service's name",
        ),
        (
            "alice.smith@example.com",
            "must not contain the username, the email address or the service's name",
        ),
    ],
)
def test_common_and_context_specific_passwords_are_refused(password: str, rule: str) -> None:
    with pytest.raises(ValidationError) as err:
        passwords.check_password_rules(
            password, username="alice-trader", email="Alice.Smith@example.com"
        )
    assert err.value.field == "password" and err.value.rule == rule
    assert err.value.value in ("a common password", "a context-specific password")


def test_the_blocklist_ships_with_the_package_and_good_passwords_pass() -> None:
    common = passwords.common_passwords()
    assert len(common) > 19_000 and {"password", "12345678", "qwerty"} <= common
    for fine in ("s3cret-enough", "correct horse battery", "bob-is-not-in-here"):
        passwords.check_password_rules(fine, username="bob", email="bob@example.com")


def test_access_tokens_carry_the_session_id_and_are_stored_as_sha256() -> None:
    token = tokens.new_access_token(42)
    assert token.startswith("42.") and len(token) == 3 + 43
    assert tokens.session_id_of(token) == 42
    digest = tokens.token_hash(token)
    assert len(digest) == 32 and tokens.tokens_match(digest, token)
    assert tokens.tokens_match(digest.hex(), token)
    assert not tokens.tokens_match(digest, tokens.new_access_token(42))
    assert tokens.new_refresh_token() != tokens.new_refresh_token()


@pytest.mark.parametrize(
    "bad", ["", "abc", "42", "x.yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy", "1." + "a" * 200]
)
def test_malformed_tokens_are_refused(bad: str) -> None:
    with pytest.raises(AuthError):
        tokens.session_id_of(bad)
