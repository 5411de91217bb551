"""Login, authentication, refresh-token rotation with reuse detection, logout and the
login rate limit, against real PostgreSQL and Redis."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher

from tradestore.cache import keys
from tradestore.cache.client import Cache
from tradestore.cache.ratelimit import Limit
from tradestore.db.errors import ValidationError
from tradestore.identity import users
from tradestore.identity.auth import AuthConfig, AuthService
from tradestore.identity.errors import AuthError, RateLimited
from tradestore.identity.rls import Role

# Cheap parameters keep the suite fast; test_default_parameters... uses the real ones.
FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
PASSWORD = "s3cret-enough"


@pytest.fixture
def auth(redis_cache: Cache) -> AuthService:
    return AuthService(redis_cache, AuthConfig(hasher=FAST))


@pytest.fixture
def alice(conn: psycopg.Connection[Any]) -> users.User:
    return users.create_user(conn, "alice", "Alice@Example.com", PASSWORD, hasher=FAST)


def test_login_stores_only_hashes_and_authenticates_from_cache_or_database(
    conn: psycopg.Connection[Any], auth: AuthService, redis_cache: Cache, alice: users.User
) -> None:
    principal, issued = auth.login(conn, "alice", PASSWORD, ip="10.0.0.5", user_agent="pytest")
    assert principal.user_id == alice.id and principal.role is Role.TRADER
    assert issued.access_token.startswith(f"{issued.session_id}.")
    assert issued.access_token not in repr(issued) and issued.refresh_token not in repr(issued)
    span = issued.expires_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23, minutes=59) < span <= dt.timedelta(hours=24)

    row = conn.execute("SELECT s::text FROM account.user_sessions s").fetchone()[0]
    assert issued.access_token not in row and issued.refresh_token not in row
    assert issued.access_token.split(".")[1] not in row
    stored = conn.execute(
        "SELECT session_token_hash, ip_address::text, user_agent FROM account.user_sessions"
    ).fetchone()
    assert bytes(stored[0]) == hashlib.sha256(issued.access_token.encode()).digest()
    assert stored[1:] == ("10.0.0.5/32", "pytest")
    assert conn.execute("SELECT last_login IS NOT NULL FROM account.users").fetchone()[0]

    # session:{id} and user:{id}:active_sessions were written at login.
    assert keys.get_session(redis_cache, issued.session_id).user_id == alice.id
    assert keys.get_active_sessions(redis_cache, alice.id) is None  # set not built: left alone
    assert auth.authenticate(conn, issued.access_token) == principal
    redis_cache.redis.flushall()
    assert auth.authenticate(conn, issued.access_token) == principal  # from PostgreSQL
    assert keys.get_session(redis_cache, issued.session_id) is not None  # and cached again
    # Logging in by email works too (case-insensitive).
    assert auth.login(conn, "alice@example.COM", PASSWORD)[0].user_id == alice.id


def test_wrong_credentials_get_one_generic_answer(
    conn: psycopg.Connection[Any], auth: AuthService, alice: users.User
) -> None:
    messages = set()
    for name, password in [("alice", "wrong-password"), ("nobody", PASSWORD), ("", "")]:
        with pytest.raises(AuthError) as err:
            auth.login(conn, name, password)
        messages.add(str(err.value))
    assert messages == {"invalid username or password"}
    users.set_active(conn, alice.id, False)
    with pytest.raises(AuthError, match="invalid username or password") as err:
        auth.login(conn, "alice", PASSWORD)
    assert err.value.reason == "user disabled"


def test_forged_expired_and_revoked_tokens_are_refused(
    conn: psycopg.Connection[Any], auth: AuthService, redis_cache: Cache, alice: users.User
) -> None:
    _, issued = auth.login(conn, "alice", PASSWORD)
    forged = f"{issued.session_id}.{'A' * 43}"
    with pytest.raises(AuthError):
        auth.authenticate(conn, forged)
    assert auth.authenticate(conn, issued.access_token).session_id == issued.session_id

    # Expired in the database (and gone from the redis_cache): refused.
    conn.execute(
        "UPDATE account.user_sessions SET created_at = now() - interval '2 days', "
        "expires_at = now() - interval '1 second' WHERE id = %s",
        (issued.session_id,),
    )
    redis_cache.redis.flushall()
    with pytest.raises(AuthError):
        auth.authenticate(conn, issued.access_token)

    _, other = auth.login(conn, "alice", PASSWORD)
    assert auth.revoke_session(conn, other.session_id)
    with pytest.raises(AuthError):
        auth.authenticate(conn, other.access_token)
    # Revocation is final, whoever writes the row.
    with pytest.raises(psycopg.errors.CheckViolation, match="cannot be reactivated"):
        conn.execute(
            "UPDATE account.user_sessions SET revoked_at = NULL, is_active = true WHERE id = %s",
            (other.session_id,),
        )


def test_refresh_rotates_both_tokens_and_reuse_revokes_the_session(
    conn: psycopg.Connection[Any], auth: AuthService, redis_cache: Cache, alice: users.User
) -> None:
    _, first = auth.login(conn, "alice", PASSWORD)
    principal, second = auth.refresh(conn, first.refresh_token, ip="10.9.9.9")
    assert second.session_id == first.session_id and principal.user_id == alice.id
    assert second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token
    assert second.refresh_expires_at == first.refresh_expires_at  # rotation does not extend it
    with pytest.raises(AuthError):
        auth.authenticate(conn, first.access_token)  # replaced
    assert auth.authenticate(conn, second.access_token).session_id == second.session_id
    assert conn.execute(
        "SELECT count(*), count(superseded_at) FROM account.session_refresh_tokens"
    ).fetchone() == (2, 1)

    # The old refresh token comes back (it was stolen): the whole session ends.
    with pytest.raises(AuthError) as err:
        auth.refresh(conn, first.refresh_token)
    assert err.value.reason == "refresh token reuse: session revoked"
    assert conn.execute(
        "SELECT revoke_reason, is_active FROM account.user_sessions WHERE id = %s",
        (first.session_id,),
    ).fetchone() == ("refresh_reuse", False)
    with pytest.raises(AuthError):
        auth.authenticate(conn, second.access_token)
    with pytest.raises(AuthError):
        auth.refresh(conn, second.refresh_token)
    with pytest.raises(AuthError):
        auth.refresh(conn, "never-issued-token")


def test_logout_ends_the_session_everywhere(
    conn: psycopg.Connection[Any], auth: AuthService, redis_cache: Cache, alice: users.User
) -> None:
    _, issued = auth.login(conn, "alice", PASSWORD)
    keys.set_active_sessions(redis_cache, alice.id, [issued.session_id])
    assert auth.logout(conn, issued.access_token)
    assert keys.get_session(redis_cache, issued.session_id) is None
    assert keys.get_active_sessions(redis_cache, alice.id) == set()
    with pytest.raises(AuthError):
        auth.authenticate(conn, issued.access_token)
    with pytest.raises(AuthError):
        auth.refresh(conn, issued.refresh_token)
    assert auth.logout(conn, issued.access_token) is False


def test_login_attempts_are_rate_limited_per_username_and_ip(
    conn: psycopg.Connection[Any], redis_cache: Cache, alice: users.User
) -> None:
    auth = AuthService(
        redis_cache,
        AuthConfig(hasher=FAST, login_per_username=Limit(3, 300), login_per_ip=Limit(5, 60)),
    )
    for _ in range(3):
        with pytest.raises(AuthError):
            auth.login(conn, "alice", "guess-guess", ip="10.0.0.7")
    with pytest.raises(RateLimited) as err:
        auth.login(conn, "alice", PASSWORD, ip="10.0.0.7")  # even the right password waits
    assert 1 <= err.value.retry_after <= 300
    assert redis_cache.redis.ttl("rate_limit:login:alice") > 0
    # Another name from the same address runs into the per-IP limit soon after.
    with pytest.raises(AuthError):
        auth.login(conn, "bob", "guess-guess", ip="10.0.0.7")
    with pytest.raises(RateLimited):
        auth.login(conn, "carol", "guess-guess", ip="10.0.0.7")


def test_a_successful_login_clears_the_username_count(
    conn: psycopg.Connection[Any], redis_cache: Cache, alice: users.User
) -> None:
    auth = AuthService(redis_cache, AuthConfig(hasher=FAST, login_per_username=Limit(2, 300)))
    with pytest.raises(AuthError):
        auth.login(conn, "alice", "guess-guess")
    auth.login(conn, "alice", PASSWORD)
    with pytest.raises(AuthError):
        auth.login(conn, "alice", "guess-guess")
    auth.login(conn, "alice", PASSWORD)  # not limited: the count restarted


def test_password_change_ends_sessions_and_old_hashes_are_upgraded(
    conn: psycopg.Connection[Any], redis_cache: Cache, alice: users.User
) -> None:
    # Default (RFC 9106) parameters: alice's cheap hash is upgraded at her next login.
    auth = AuthService(redis_cache)
    _, issued = auth.login(conn, "alice", PASSWORD)
    assert (
        conn.execute("SELECT password_hash FROM account.users")
        .fetchone()[0]
        .startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    )
    assert users.set_password(conn, alice.id, "a-new-password", hasher=FAST) == 1
    auth.forget_sessions(conn, alice.id)
    with pytest.raises(AuthError):
        auth.authenticate(conn, issued.access_token)
    with pytest.raises(ValidationError):
        users.set_password(conn, alice.id, "short")


def test_purge_expired_drops_old_sessions_with_their_refresh_history(
    conn: psycopg.Connection[Any], auth: AuthService, alice: users.User
) -> None:
    _, old = auth.login(conn, "alice", PASSWORD)
    _, live = auth.login(conn, "alice", PASSWORD)
    conn.execute(
        "UPDATE account.user_sessions SET created_at = now() - interval '90 days', "
        "expires_at = now() - interval '89 days', refresh_expires_at = now() - interval '60 days' "
        "WHERE id = %s",
        (old.session_id,),
    )
    assert auth.purge_expired(conn) == 1
    assert conn.execute("SELECT array_agg(id) FROM account.user_sessions").fetchone()[0] == [
        live.session_id
    ]
    assert conn.execute("SELECT count(*) FROM account.session_refresh_tokens").fetchone()[0] == 1


def test_login_failures_are_counted_per_account_across_username_and_email(
    conn: psycopg.Connection[Any], redis_cache: Cache, alice: users.User
) -> None:
    # Alternating the username and the email (in any case) does not get round the count:
    # the per-name limits would each allow 3 more here, the account allows 4 in all.
    auth = AuthService(
        redis_cache,
        AuthConfig(
            hasher=FAST,
            login_per_username=Limit(3, 300),
            login_failures_per_account=Limit(4, 300),
        ),
    )
    for name in ("alice", "alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.com"):
        with pytest.raises(AuthError):
            auth.login(conn, name, "guess-guess")
    with pytest.raises(RateLimited) as err:
        auth.login(conn, "alice@example.com", PASSWORD)  # even the right password waits
    assert 1 <= err.value.retry_after <= 300
    assert redis_cache.redis.ttl(f"rate_limit:login_account:{alice.id}") > 0
    # Another account is not affected, and its success does not clear alice's count.
    users.create_user(conn, "bob", "bob@example.com", PASSWORD, hasher=FAST)
    auth.login(conn, "bob", PASSWORD)
    with pytest.raises(RateLimited):
        auth.login(conn, "alice", PASSWORD)


def test_a_successful_login_clears_the_account_failure_count(
    conn: psycopg.Connection[Any], redis_cache: Cache, alice: users.User
) -> None:
    auth = AuthService(
        redis_cache, AuthConfig(hasher=FAST, login_failures_per_account=Limit(2, 300))
    )
    for name in ("alice", "alice@example.com"):
        with pytest.raises(AuthError):
            auth.login(conn, name, "guess-guess")
        auth.login(conn, "alice", PASSWORD)  # the second failure did not lock: count restarted
    assert redis_cache.redis.get(f"rate_limit:login_account:{alice.id}") is None


def test_creating_a_user_or_setting_a_password_refuses_common_and_contextual_ones(
    conn: psycopg.Connection[Any], alice: users.User
) -> None:
    for bad in ("password", "12345678", "bob-the-trader", "bob@example.com"):
        with pytest.raises(ValidationError) as err:
            users.create_user(conn, "bob-the-trader", "bob@example.com", bad, hasher=FAST)
        assert err.value.field == "password"
    assert users.find_user(conn, "bob-the-trader") is None
    for bad in ("iloveyou", "Alice@Example.com", "alice-secret-99"):
        with pytest.raises(ValidationError) as err:
            users.set_password(conn, alice.id, bad, hasher=FAST)
        assert err.value.field == "password"
