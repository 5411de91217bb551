"""Users (seeds 002 and 003 merged) and their profiles.

Functions take a connection and run one transaction each. Under `rls.as_user` they act
with the user's rights (a user changes only their own row, and only the columns the
database lets them: never role, is_active, is_verified or the password hash). Changing a
role needs tradestore_admin: `set_role` switches to it for its transaction, so the
connection's login must be allowed to (a superuser, or a member of tradestore_app).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
from argon2 import PasswordHasher
from psycopg import sql
from psycopg.rows import class_row

from tradestore.db.errors import Conflict, NotFound, ValidationError
from tradestore.identity import passwords
from tradestore.identity.errors import translate_security
from tradestore.identity.rls import Role, as_role

__all__ = [
    "PROFILE_FIELDS",
    "SETTINGS_FIELDS",
    "Profile",
    "User",
    "create_user",
    "find_user",
    "get_profile",
    "get_user",
    "list_users",
    "set_active",
    "set_password",
    "set_role",
    "update_profile",
    "update_settings",
]

_USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{3,100}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")

# What a user may change about themselves (mass assignment: anything else is refused).
SETTINGS_FIELDS = frozenset(
    {
        "email",
        "email_notifications",
        "telegram_notifications",
        "max_risk_per_trade",
        "max_total_risk",
        "max_positions",
    }
)
PROFILE_FIELDS = frozenset({"first_name", "last_name", "phone", "address", "preferences"})

_USER_COLUMNS = """
    id, username, email, role, is_active, is_verified, email_notifications,
    telegram_notifications, max_risk_per_trade, max_total_risk, max_positions, last_login,
    created_at, updated_at
"""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    email: str
    role: Role
    is_active: bool
    is_verified: bool
    email_notifications: bool
    telegram_notifications: bool
    max_risk_per_trade: Decimal
    max_total_risk: Decimal
    max_positions: int
    last_login: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))


@dataclass(frozen=True)
class Profile:
    user_id: int
    first_name: str | None
    last_name: str | None
    phone: str | None
    address: str | None
    preferences: dict[str, Any] = field(default_factory=dict)


class _Tx:
    """One transaction, with database refusals translated (field, rule, value)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._tx = conn.transaction()

    def __enter__(self) -> psycopg.Connection[Any]:
        self._tx.__enter__()
        return self.conn

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._tx.__exit__(exc_type, exc, tb)
        if isinstance(exc, psycopg.Error):
            raise translate_security(exc) from None


@contextmanager
def _transaction(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    with conn.transaction():
        yield conn


def _check_username(username: str) -> str:
    if not isinstance(username, str) or not _USERNAME.match(username.strip()):
        raise ValidationError("username", "must be 3 to 100 letters, digits or . _ -", username)
    return username.strip()


def _check_email(email: str) -> str:
    if not isinstance(email, str) or not _EMAIL.match(email.strip()):
        raise ValidationError("email", "must be an email address (name@domain)", email)
    return email.strip()


def create_user(
    conn: psycopg.Connection[Any],
    username: str,
    email: str,
    password: str,
    *,
    role: Role | str = Role.TRADER,
    is_verified: bool = False,
    hasher: PasswordHasher | None = None,
) -> User:
    """Create a user (and an empty profile). Any role but trader needs tradestore_admin,
    which this switches to (see the module docstring)."""
    username = _check_username(username)
    email = _check_email(email)
    role = _role(role)
    passwords.check_password_rules(password, username=username, email=email)
    password_hash = passwords.hash_password(password, hasher)

    def insert(c: psycopg.Connection[Any]) -> User:
        with c.cursor(row_factory=class_row(User)) as cur:
            cur.execute(
                f"""INSERT INTO account.users (username, email, password_hash, role, is_verified)
                    VALUES (%s, %s, %s, %s, %s) RETURNING {_USER_COLUMNS}""",
                (username, email, password_hash, role.value, is_verified),
            )
            user = cur.fetchone()
        assert user is not None
        c.execute("INSERT INTO account.user_profiles (user_id) VALUES (%s)", (user.id,))
        return user

    try:
        with _transaction(conn) if role is Role.TRADER else as_role(conn, Role.ADMIN) as c:
            return insert(c)
    except (psycopg.errors.UniqueViolation, Conflict) as exc:
        taken = "email" if "users_email_key" in str(exc) else "username"
        raise Conflict(f"{taken}: already taken") from None
    except psycopg.Error as exc:
        raise translate_security(exc) from None


def _role(role: object) -> Role:
    try:
        return Role(str(role))
    except ValueError:
        raise ValidationError(
            "role", f"must be one of {', '.join(r.value for r in Role)}", role
        ) from None


def get_user(conn: psycopg.Connection[Any], user_id: int) -> User:
    with conn.cursor(row_factory=class_row(User)) as cur:
        cur.execute(f"SELECT {_USER_COLUMNS} FROM account.users WHERE id = %s", (user_id,))
        user = cur.fetchone()
    if user is None:
        raise NotFound("user", user_id)
    return user


def find_user(conn: psycopg.Connection[Any], name: str) -> User | None:
    """The user with this username, or this email (case-insensitive)."""
    with conn.cursor(row_factory=class_row(User)) as cur:
        cur.execute(
            f"SELECT {_USER_COLUMNS} FROM account.users WHERE username = %s "
            "OR lower(email) = lower(%s) ORDER BY (username = %s) DESC LIMIT 1",
            (name, name, name),
        )
        return cur.fetchone()


def list_users(conn: psycopg.Connection[Any], *, limit: int = 100, offset: int = 0) -> list[User]:
    if not 1 <= limit <= 1000:
        raise ValidationError("limit", "must be 1 to 1000", limit)
    if offset < 0:
        raise ValidationError("offset", "must be >= 0", offset)
    with conn.cursor(row_factory=class_row(User)) as cur:
        cur.execute(
            f"SELECT {_USER_COLUMNS} FROM account.users ORDER BY id LIMIT %s OFFSET %s",
            (limit, offset),
        )
        return cur.fetchall()


def set_password(
    conn: psycopg.Connection[Any],
    user_id: int,
    new_password: str,
    *,
    hasher: PasswordHasher | None = None,
) -> int:
    """Set a new password and end every session of the user (a password change means
    the old one may be known). Returns how many sessions were ended; drop them from the
    cache with tradestore.identity.auth.AuthService.forget_sessions."""
    user = get_user(conn, user_id)
    passwords.check_password_rules(new_password, username=user.username, email=user.email)
    password_hash = passwords.hash_password(new_password, hasher)
    with _Tx(conn) as c:
        c.execute(
            "UPDATE account.users SET password_hash = %s WHERE id = %s", (password_hash, user_id)
        )
        cur = c.execute(
            "UPDATE account.user_sessions SET revoked_at = now(), revoke_reason = 'password_changed' "
            "WHERE user_id = %s AND revoked_at IS NULL",
            (user_id,),
        )
        return cur.rowcount


def set_role(conn: psycopg.Connection[Any], user_id: int, role: Role | str) -> User:
    """Change a user's role, as tradestore_admin."""
    role = _role(role)
    try:
        with as_role(conn, Role.ADMIN) as c:
            cur = c.execute(
                "UPDATE account.users SET role = %s WHERE id = %s", (role.value, user_id)
            )
            if cur.rowcount == 0:
                raise NotFound("user", user_id)
    except psycopg.Error as exc:
        raise translate_security(exc) from None
    return get_user(conn, user_id)


def set_active(conn: psycopg.Connection[Any], user_id: int, active: bool) -> int:
    """Enable or disable a user (as tradestore_admin). Disabling ends their sessions;
    returns how many."""
    try:
        with as_role(conn, Role.ADMIN) as c:
            cur = c.execute(
                "UPDATE account.users SET is_active = %s WHERE id = %s", (active, user_id)
            )
            if cur.rowcount == 0:
                raise NotFound("user", user_id)
            if active:
                return 0
            cur = c.execute(
                "UPDATE account.user_sessions SET revoked_at = now(), revoke_reason = 'revoked' "
                "WHERE user_id = %s AND revoked_at IS NULL",
                (user_id,),
            )
            return cur.rowcount
    except psycopg.Error as exc:
        raise translate_security(exc) from None


def _refuse_unknown(given: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for name in given:
        if name not in allowed:
            raise ValidationError(
                name, f"cannot be set here (allowed: {', '.join(sorted(allowed))})", given[name]
            )


def update_settings(
    conn: psycopg.Connection[Any], user_id: int, changes: Mapping[str, Any]
) -> User:
    """Change a user's own settings. Only SETTINGS_FIELDS are accepted: a request that
    also carries role, is_active or password_hash is refused whole, not partly applied."""
    _refuse_unknown(changes, SETTINGS_FIELDS)
    if not changes:
        return get_user(conn, user_id)
    if "email" in changes:
        changes = {**changes, "email": _check_email(changes["email"])}
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in changes
    )
    with _Tx(conn) as c:
        cur = c.execute(
            sql.SQL("UPDATE account.users SET {} WHERE id = %(id)s").format(assignments),
            {**changes, "id": user_id},
        )
        if cur.rowcount == 0:
            raise NotFound("user", user_id)
    return get_user(conn, user_id)


def get_profile(conn: psycopg.Connection[Any], user_id: int) -> Profile:
    with conn.cursor(row_factory=class_row(Profile)) as cur:
        cur.execute(
            "SELECT user_id, first_name, last_name, phone, address, preferences "
            "FROM account.user_profiles WHERE user_id = %s",
            (user_id,),
        )
        profile = cur.fetchone()
    if profile is None:
        raise NotFound("profile", user_id)
    return profile


def update_profile(
    conn: psycopg.Connection[Any], user_id: int, changes: Mapping[str, Any]
) -> Profile:
    """Change a user's profile (PROFILE_FIELDS only; preferences is a JSON object)."""
    _refuse_unknown(changes, PROFILE_FIELDS)
    if "preferences" in changes and not isinstance(changes["preferences"], dict):
        raise ValidationError("preferences", "must be a JSON object", changes["preferences"])
    values = {
        k: (psycopg.types.json.Jsonb(v) if k == "preferences" else v) for k, v in changes.items()
    }
    columns = ["user_id", *values]
    with _Tx(conn) as c:
        c.execute(
            sql.SQL(
                "INSERT INTO account.user_profiles ({}) VALUES ({}) ON CONFLICT (user_id) DO {}"
            ).format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder(k) for k in columns),
                sql.SQL("UPDATE SET {}").format(
                    sql.SQL(", ").join(
                        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(k), sql.Identifier(k))
                        for k in values
                    )
                )
                if values
                else sql.SQL("NOTHING"),
            ),
            {**values, "user_id": user_id},
        )
    return get_profile(conn, user_id)
