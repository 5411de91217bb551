"""Login, token authentication, refresh and logout (seeds 002 and 003 sessions).

    login      username (or email) + password -> an access token (24h) and a refresh
               token (30 days); attempts are rate-limited per IP and per name given, and
               failed attempts are counted per account (whichever name found it)
    authenticate  access token -> Principal (session:{id} in Redis, else PostgreSQL)
    refresh    refresh token -> a new access token and a new refresh token; the old
               refresh token is dead, and presenting it again revokes the session
               (token reuse means it was stolen; the thief and the owner both lose it)
    logout     revokes the session

Tokens exist only as SHA-256 hashes in account.user_sessions (and the refresh-token
history in account.session_refresh_tokens). PostgreSQL decides; Redis holds session:{id}
and user:{id}:active_sessions as a cache, and losing it only costs a database lookup.

The service runs as the application (not as a user): before login there is no user.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import psycopg
from argon2 import PasswordHasher
from psycopg.rows import dict_row

from tradestore.cache import keys
from tradestore.cache.client import Cache
from tradestore.cache.ratelimit import Limit, RateLimiter
from tradestore.identity import passwords, tokens
from tradestore.identity.errors import AuthError, RateLimited, translate_security
from tradestore.identity.rls import Role

__all__ = ["AuthConfig", "AuthService", "Principal", "Tokens"]

log = logging.getLogger(__name__)

_USER_AGENT_MAX = 500


@dataclass(frozen=True)
class AuthConfig:
    access_ttl: dt.timedelta = dt.timedelta(hours=24)  # seed 002: sessions last 24h
    refresh_ttl: dt.timedelta = dt.timedelta(days=30)  # absolute: rotation does not extend it
    login_per_ip: Limit = field(default_factory=lambda: Limit(30, 60))
    login_per_username: Limit = field(default_factory=lambda: Limit(10, 300))
    # Wrong passwords per account, whether the login named its username or its email:
    # past this the account takes no password until the window ends (the window is the
    # backoff; a correct password then clears the count).
    login_failures_per_account: Limit = field(default_factory=lambda: Limit(10, 300))
    hasher: PasswordHasher | None = None


@dataclass(frozen=True)
class Principal:
    """Who a valid access token belongs to. Run their work in
    `rls.as_user(conn, p.user_id, session_id=p.session_id)`, which re-reads the role."""

    user_id: int
    username: str
    role: Role
    session_id: int
    expires_at: dt.datetime


@dataclass(frozen=True)
class Tokens:
    session_id: int
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: dt.datetime
    refresh_expires_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuthService:
    """Sessions against one cache (Redis) and any connection given per call."""

    def __init__(self, cache: Cache, config: AuthConfig | None = None) -> None:
        self.cache = cache
        self.config = config or AuthConfig()
        self._per_ip = RateLimiter(cache, self.config.login_per_ip)
        self._per_username = RateLimiter(cache, self.config.login_per_username)
        self._per_account = RateLimiter(cache, self.config.login_failures_per_account)

    # ----------------------------------------------------------------- login
    def login(
        self,
        conn: psycopg.Connection[Any],
        username: str,
        password: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[Principal, Tokens]:
        """Check the password and open a session. AuthError (generic) for a wrong name or
        password or a disabled user; RateLimited after too many attempts."""
        name = (username or "").strip()
        if not name or len(name) > 255 or not isinstance(password, str) or len(password) > 1024:
            raise AuthError("malformed credentials", "invalid username or password")
        self._throttle(name, ip)

        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT id, username, password_hash, role, is_active FROM account.users "
                "WHERE username = %s OR lower(email) = lower(%s) "
                "ORDER BY (username = %s) DESC LIMIT 1",
                (name, name, name),
            )
            user = cur.fetchone()
        hasher = self.config.hasher
        if user is None:
            passwords.waste_time(password, hasher)
            raise AuthError("unknown user", "invalid username or password")
        account = keys.rate_limit_scope_key("login_account", str(user["id"]))
        # A cost-0 hit reads the count without adding to it: a locked account is refused
        # before its password is checked, so guesses past the limit learn nothing.
        failures = self._per_account.hit(account, cost=0)
        if failures.remaining == 0:
            raise RateLimited("login", max(1, math.ceil(failures.reset_after)))
        if not passwords.verify_password(user["password_hash"], password, hasher):
            self._per_account.hit(account)
            raise AuthError("wrong password", "invalid username or password")
        if not user["is_active"]:
            raise AuthError("user disabled", "invalid username or password")

        self._per_username.reset(keys.rate_limit_scope_key("login", name.casefold()))
        self._per_account.reset(account)
        new_hash = (
            passwords.hash_password(password, hasher)
            if passwords.needs_rehash(user["password_hash"], hasher)
            else None
        )
        principal, issued = self._open_session(conn, user, new_hash, ip, user_agent)
        log.info("user %s logged in (session %s)", user["id"], issued.session_id)
        return principal, issued

    def _throttle(self, name: str, ip: str | None) -> None:
        checks = [self._per_username.hit_subject("login", name.casefold())]
        if ip:
            checks.append(self._per_ip.hit(keys.rate_limit_scope_key("login_ip", ip)))
        refused = [d for d in checks if not d.allowed]
        if refused:
            raise RateLimited("login", max(d.retry_after for d in refused))

    def _open_session(
        self,
        conn: psycopg.Connection[Any],
        user: dict[str, Any],
        new_hash: str | None,
        ip: str | None,
        user_agent: str | None,
    ) -> tuple[Principal, Tokens]:
        now = _now()
        expires = now + self.config.access_ttl
        refresh_expires = now + self.config.refresh_ttl
        refresh_token = tokens.new_refresh_token()
        try:
            with conn.transaction():
                row = conn.execute(
                    "SELECT nextval(pg_get_serial_sequence('account.user_sessions', 'id'))"
                ).fetchone()
                assert row is not None
                session_id = int(row[0])
                access_token = tokens.new_access_token(session_id)
                conn.execute(
                    """INSERT INTO account.user_sessions
                           (id, user_id, session_token_hash, refresh_token_hash, expires_at,
                            refresh_expires_at, created_at, last_seen_at, ip_address, user_agent)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    (
                        session_id,
                        user["id"],
                        tokens.token_hash(access_token),
                        tokens.token_hash(refresh_token),
                        expires,
                        refresh_expires,
                        now,
                        now,
                        ip,
                        (user_agent or "")[:_USER_AGENT_MAX] or None,
                    ),
                )
                conn.execute(
                    "INSERT INTO account.session_refresh_tokens (token_hash, session_id, issued_at) "
                    "VALUES (%s, %s, %s)",
                    (tokens.token_hash(refresh_token), session_id, now),
                )
                if new_hash is not None:
                    conn.execute(
                        "UPDATE account.users SET password_hash = %s, last_login = %s WHERE id = %s",
                        (new_hash, now, user["id"]),
                    )
                else:
                    conn.execute(
                        "UPDATE account.users SET last_login = %s WHERE id = %s", (now, user["id"])
                    )
        except psycopg.Error as exc:
            raise translate_security(exc) from None
        principal = Principal(
            user_id=int(user["id"]),
            username=user["username"],
            role=Role(user["role"]),
            session_id=session_id,
            expires_at=expires,
        )
        self._cache_session(principal, access_token, now)
        keys.add_active_session(self.cache, principal.user_id, session_id)
        return principal, Tokens(session_id, access_token, refresh_token, expires, refresh_expires)

    def _cache_session(self, p: Principal, access_token: str, created_at: dt.datetime) -> None:
        keys.set_session(
            self.cache,
            keys.SessionEntry(
                session_id=p.session_id,
                user_id=p.user_id,
                username=p.username,
                role=p.role.value,
                token_hash=tokens.token_hash(access_token).hex(),
                expires_at=p.expires_at,
                created_at=created_at,
            ),
        )

    # ----------------------------------------------------------------- authenticate
    def authenticate(self, conn: psycopg.Connection[Any], access_token: str) -> Principal:
        """The principal of a live access token; AuthError otherwise."""
        session_id = tokens.session_id_of(access_token)
        entry = keys.get_session(self.cache, session_id)
        principal = self.cached_principal(entry, access_token)
        self.cache.record(principal is not None)
        if principal is not None:
            return principal
        return self.authenticate_in_db(conn, access_token, stale=entry is not None)

    @staticmethod
    def cached_principal(entry: keys.SessionEntry | None, access_token: str) -> Principal | None:
        """The principal of a cached session:{id} entry when `access_token` is its token and
        it has not expired; None means PostgreSQL decides (authenticate_in_db)."""
        if (
            entry is not None
            and tokens.tokens_match(entry.token_hash, access_token)
            and entry.expires_at > _now()
        ):
            return Principal(
                entry.user_id, entry.username, Role(entry.role), entry.session_id, entry.expires_at
            )
        return None

    def authenticate_in_db(
        self, conn: psycopg.Connection[Any], access_token: str, *, stale: bool = False
    ) -> Principal:
        """Authenticate against PostgreSQL and cache the session; `stale`: Redis held an
        entry for the session that did not vouch for this token (dropped on failure)."""
        session_id = tokens.session_id_of(access_token)
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                """UPDATE account.user_sessions s SET last_seen_at = now()
                     FROM account.users u
                    WHERE s.id = %s AND s.session_token_hash = %s AND u.id = s.user_id
                      AND s.is_active AND s.revoked_at IS NULL AND s.expires_at > now()
                      AND u.is_active
                RETURNING s.id, s.user_id, u.username, u.role, s.expires_at, s.created_at""",
                (session_id, tokens.token_hash(access_token)),
            )
            row = cur.fetchone()
        if row is None:
            if stale:
                self.cache.invalidate(keys.session_key(session_id))
            raise AuthError("unknown, expired or revoked session")
        principal = Principal(
            row["user_id"], row["username"], Role(row["role"]), row["id"], row["expires_at"]
        )
        self._cache_session(principal, access_token, row["created_at"])
        return principal

    # ----------------------------------------------------------------- refresh
    def refresh(
        self,
        conn: psycopg.Connection[Any],
        refresh_token: str,
        *,
        ip: str | None = None,
    ) -> tuple[Principal, Tokens]:
        """Rotate: a new access token and refresh token for the session. A refresh token
        that was already used revokes the session (AuthError either way)."""
        if not isinstance(refresh_token, str) or not 0 < len(refresh_token) <= 128:
            raise AuthError("malformed refresh token")
        presented = tokens.token_hash(refresh_token)
        now = _now()
        reused_by: int | None = None
        try:
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                cur.execute(
                    """SELECT t.session_id, t.superseded_at, s.user_id, s.refresh_token_hash,
                              s.refresh_expires_at, s.revoked_at, s.is_active, s.expires_at,
                              u.username, u.role, u.is_active AS user_active
                         FROM account.session_refresh_tokens t
                         JOIN account.user_sessions s ON s.id = t.session_id
                         JOIN account.users u ON u.id = s.user_id
                        WHERE t.token_hash = %s
                          FOR UPDATE OF s""",
                    (presented,),
                )
                row = cur.fetchone()
                if row is None:
                    raise AuthError("unknown refresh token")
                session_id = int(row["session_id"])
                if row["superseded_at"] is not None or row["refresh_token_hash"] != presented:
                    if row["revoked_at"] is None:
                        cur.execute(
                            "UPDATE account.user_sessions SET revoked_at = now(), "
                            "revoke_reason = 'refresh_reuse' WHERE id = %s",
                            (session_id,),
                        )
                    reused_by = int(row["user_id"])
                elif row["revoked_at"] is not None or not row["is_active"]:
                    raise AuthError("refresh of a revoked session")
                elif row["refresh_expires_at"] is None or row["refresh_expires_at"] <= now:
                    raise AuthError("refresh token expired")
                elif not row["user_active"]:
                    raise AuthError("user disabled")
                else:
                    access_token = tokens.new_access_token(session_id)
                    new_refresh = tokens.new_refresh_token()
                    # The access token lives 24h, but never past the session's end.
                    expires = min(now + self.config.access_ttl, row["refresh_expires_at"])
                    cur.execute(
                        "UPDATE account.session_refresh_tokens SET superseded_at = %s "
                        "WHERE token_hash = %s",
                        (now, presented),
                    )
                    cur.execute(
                        "INSERT INTO account.session_refresh_tokens (token_hash, session_id, issued_at) "
                        "VALUES (%s, %s, %s)",
                        (tokens.token_hash(new_refresh), session_id, now),
                    )
                    cur.execute(
                        """UPDATE account.user_sessions
                              SET session_token_hash = %s, refresh_token_hash = %s, expires_at = %s,
                                  refreshed_at = %s, last_seen_at = %s,
                                  ip_address = coalesce(%s::inet, ip_address)
                            WHERE id = %s""",
                        (
                            tokens.token_hash(access_token),
                            tokens.token_hash(new_refresh),
                            expires,
                            now,
                            now,
                            ip,
                            session_id,
                        ),
                    )
        except psycopg.Error as exc:
            raise translate_security(exc) from None
        if reused_by is not None:
            # Committed above: the session stays revoked whatever the caller does next.
            log.warning("refresh token reuse on session %s: session revoked", session_id)
            keys.drop_session(self.cache, session_id, reused_by)
            raise AuthError("refresh token reuse: session revoked")
        principal = Principal(
            int(row["user_id"]), row["username"], Role(row["role"]), session_id, expires
        )
        self._cache_session(principal, access_token, now)
        return principal, Tokens(
            session_id, access_token, new_refresh, expires, row["refresh_expires_at"]
        )

    # ----------------------------------------------------------------- logout, revoke
    def logout(self, conn: psycopg.Connection[Any], access_token: str) -> bool:
        """End the session of this access token. False if it was not live."""
        try:
            session_id = tokens.session_id_of(access_token)
        except AuthError:
            return False
        with conn.transaction():
            row = conn.execute(
                """UPDATE account.user_sessions SET revoked_at = now(), revoke_reason = 'logout'
                    WHERE id = %s AND session_token_hash = %s AND revoked_at IS NULL
                RETURNING user_id""",
                (session_id, tokens.token_hash(access_token)),
            ).fetchone()
        if row is None:
            return False
        keys.drop_session(self.cache, session_id, int(row[0]))
        return True

    def revoke_session(
        self, conn: psycopg.Connection[Any], session_id: int, *, reason: str = "revoked"
    ) -> bool:
        """End one session (a user's "log out that device", an admin's action). Under
        rls.as_user a user can end only their own sessions."""
        with conn.transaction():
            row = conn.execute(
                """UPDATE account.user_sessions SET revoked_at = now(), revoke_reason = %s
                    WHERE id = %s AND revoked_at IS NULL RETURNING user_id""",
                (reason[:30], session_id),
            ).fetchone()
        if row is None:
            return False
        keys.drop_session(self.cache, session_id, int(row[0]))
        return True

    def revoke_user_sessions(
        self, conn: psycopg.Connection[Any], user_id: int, *, reason: str = "revoked"
    ) -> int:
        """End every session of a user; returns how many."""
        with conn.transaction():
            ids = [
                int(r[0])
                for r in conn.execute(
                    """UPDATE account.user_sessions SET revoked_at = now(), revoke_reason = %s
                        WHERE user_id = %s AND revoked_at IS NULL RETURNING id""",
                    (reason[:30], user_id),
                ).fetchall()
            ]
        self.forget_sessions(conn, user_id)
        return len(ids)

    def forget_sessions(self, conn: psycopg.Connection[Any], user_id: int) -> None:
        """Drop a user's cached sessions (after their sessions or role changed in the
        database), so the next request reads PostgreSQL."""
        ids = {
            int(r[0])
            for r in conn.execute(
                "SELECT id FROM account.user_sessions WHERE user_id = %s", (user_id,)
            ).fetchall()
        }
        if ids:
            self.cache.invalidate(*(keys.session_key(i) for i in ids))
        self.cache.invalidate(keys.active_sessions_key(user_id))

    def purge_expired(
        self, conn: psycopg.Connection[Any], *, older_than: dt.timedelta = dt.timedelta(days=30)
    ) -> int:
        """Delete sessions that ended (expired or revoked) more than `older_than` ago,
        with their refresh-token history. Returns how many."""
        with conn.transaction():
            cur = conn.execute(
                """DELETE FROM account.user_sessions
                    WHERE greatest(coalesce(refresh_expires_at, expires_at), expires_at) < now() - %s
                       OR revoked_at < now() - %s""",
                (older_than, older_than),
            )
            return cur.rowcount
