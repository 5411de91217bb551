"""Exchange API credentials (seed 001 api_keys), encrypted at rest (identity.secretbox).

Listing shows only a hint (`****ab12`); the plaintext leaves this module only through
`decrypt`, for the trading engine, as pydantic SecretStr values that print as `**********`.
Every value stored, rotated or decrypted is registered with the log redactor, so it
cannot appear in a log line. Under `rls.as_user` a user stores, rotates, lists and
removes only their own keys, and cannot read any ciphertext (no column privilege).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row
from pydantic import SecretStr

from tradestore.db.errors import Conflict, NotFound, ValidationError
from tradestore.identity import redact
from tradestore.identity.errors import translate_security
from tradestore.identity.secretbox import SecretBox

__all__ = [
    "ApiKeyInfo",
    "ExchangeCredentials",
    "decrypt",
    "list_keys",
    "reencrypt_all",
    "remove",
    "rotate",
    "store",
]

_LABEL_MAX = 100
_VALUE_MAX = 512
_INFO = """
    SELECT k.id, k.user_id, k.exchange_id, x.code AS exchange, k.label, k.key_hint,
           k.permissions, k.is_active, k.created_at, k.updated_at, k.last_used_at
      FROM account.api_keys k JOIN market.exchanges x ON x.id = k.exchange_id
"""


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: never the key or the secret."""

    id: int
    user_id: int
    exchange_id: int
    exchange: str
    label: str
    key_hint: str
    permissions: list[str]
    is_active: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    last_used_at: dt.datetime | None

    @property
    def masked_key(self) -> str:
        return f"****{self.key_hint}"


@dataclass(frozen=True)
class ExchangeCredentials:
    key_id: int
    user_id: int
    exchange: str
    api_key: SecretStr
    api_secret: SecretStr


@contextmanager
def _tx(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    try:
        with conn.transaction():
            yield conn
    except psycopg.errors.UniqueViolation:
        raise Conflict(
            "label: this user already has a key with this label on this exchange"
        ) from None
    except psycopg.Error as exc:
        raise translate_security(exc) from None


def _context(user_id: int, exchange_id: int, field: str) -> str:
    return f"api_keys:{user_id}:{exchange_id}:{field}"


def _check_value(field: str, value: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string", type(value).__name__)
    value = value.strip()
    if not 8 <= len(value) <= _VALUE_MAX:
        # The value itself is never echoed, only its length.
        raise ValidationError(
            field, f"must be 8 to {_VALUE_MAX} characters", f"{len(value)} characters"
        )
    return value


def _check_permissions(permissions: Sequence[str]) -> list[str]:
    allowed = {"read", "trade", "withdraw"}
    values = [p.strip().lower() for p in permissions]
    bad = [p for p in values if p not in allowed]
    if bad or not values:
        raise ValidationError(
            "permissions", "must be some of read, trade, withdraw", ",".join(permissions)
        )
    return sorted(set(values))


def _exchange_id(conn: psycopg.Connection[Any], exchange: str) -> int:
    row = conn.execute(
        "SELECT id FROM market.exchanges WHERE code = %s", (exchange.strip().lower(),)
    ).fetchone()
    if row is None:
        raise ValidationError(
            "exchange", "must name a known exchange (market.exchanges.code)", exchange
        )
    return int(row[0])


def _info(conn: psycopg.Connection[Any], key_id: int) -> ApiKeyInfo:
    with conn.cursor(row_factory=class_row(ApiKeyInfo)) as cur:
        cur.execute(_INFO + " WHERE k.id = %s", (key_id,))
        info = cur.fetchone()
    if info is None:
        raise NotFound("api key", key_id)
    return info


def store(
    conn: psycopg.Connection[Any],
    box: SecretBox,
    user_id: int,
    exchange: str,
    api_key: str,
    api_secret: str,
    *,
    label: str = "default",
    permissions: Sequence[str] = ("read",),
) -> ApiKeyInfo:
    """Encrypt and store a user's credentials for an exchange."""
    api_key = _check_value("api_key", api_key)
    api_secret = _check_value("api_secret", api_secret)
    redact.register_secret(api_key)
    redact.register_secret(api_secret)
    label = (label or "").strip()
    if not 1 <= len(label) <= _LABEL_MAX:
        raise ValidationError("label", f"must be 1 to {_LABEL_MAX} characters", label)
    perms = _check_permissions(permissions)
    with _tx(conn) as c:
        exchange_id = _exchange_id(c, exchange)
        row = c.execute(
            """INSERT INTO account.api_keys (user_id, exchange_id, label, api_key_ciphertext,
                                             api_secret_ciphertext, key_hint, permissions)
               VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                user_id,
                exchange_id,
                label,
                box.encrypt(api_key, _context(user_id, exchange_id, "api_key")),
                box.encrypt(api_secret, _context(user_id, exchange_id, "api_secret")),
                api_key[-4:],
                perms,
            ),
        ).fetchone()
        assert row is not None
        return _info(c, int(row[0]))


def rotate(
    conn: psycopg.Connection[Any], box: SecretBox, key_id: int, api_key: str, api_secret: str
) -> ApiKeyInfo:
    """Replace a key's credentials (the exchange issued new ones)."""
    api_key = _check_value("api_key", api_key)
    api_secret = _check_value("api_secret", api_secret)
    redact.register_secret(api_key)
    redact.register_secret(api_secret)
    with _tx(conn) as c:
        row = c.execute(
            "SELECT user_id, exchange_id FROM account.api_keys WHERE id = %s FOR UPDATE",
            (key_id,),
        ).fetchone()
        if row is None:
            raise NotFound("api key", key_id)
        user_id, exchange_id = int(row[0]), int(row[1])
        c.execute(
            """UPDATE account.api_keys
                  SET api_key_ciphertext = %s, api_secret_ciphertext = %s, key_hint = %s
                WHERE id = %s""",
            (
                box.encrypt(api_key, _context(user_id, exchange_id, "api_key")),
                box.encrypt(api_secret, _context(user_id, exchange_id, "api_secret")),
                api_key[-4:],
                key_id,
            ),
        )
        return _info(c, key_id)


def decrypt(
    conn: psycopg.Connection[Any], box: SecretBox, key_id: int, *, touch: bool = True
) -> ExchangeCredentials:
    """The plaintext credentials, for the trading engine (service role or admin; users
    cannot read ciphertexts). With touch, last_used_at is stamped."""
    with _tx(conn) as c, c.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """SELECT k.user_id, k.exchange_id, x.code AS exchange, k.api_key_ciphertext,
                      k.api_secret_ciphertext, k.is_active
                 FROM account.api_keys k JOIN market.exchanges x ON x.id = k.exchange_id
                WHERE k.id = %s""",
            (key_id,),
        )
        row = cur.fetchone()
        if row is None:
            raise NotFound("api key", key_id)
        if not row["is_active"]:
            raise ValidationError("api_key", "is disabled", key_id)
        if touch:
            cur.execute("UPDATE account.api_keys SET last_used_at = now() WHERE id = %s", (key_id,))
    user_id, exchange_id = int(row["user_id"]), int(row["exchange_id"])
    api_key = box.decrypt(row["api_key_ciphertext"], _context(user_id, exchange_id, "api_key"))
    api_secret = box.decrypt(
        row["api_secret_ciphertext"], _context(user_id, exchange_id, "api_secret")
    )
    redact.register_secret(api_key)
    redact.register_secret(api_secret)
    return ExchangeCredentials(
        key_id=key_id,
        user_id=user_id,
        exchange=row["exchange"],
        api_key=SecretStr(api_key),
        api_secret=SecretStr(api_secret),
    )


def list_keys(conn: psycopg.Connection[Any], user_id: int | None = None) -> list[ApiKeyInfo]:
    """Keys (of one user, or every key the connection may see), without secrets."""
    with conn.cursor(row_factory=class_row(ApiKeyInfo)) as cur:
        if user_id is None:
            cur.execute(_INFO + " ORDER BY k.id")
        else:
            cur.execute(_INFO + " WHERE k.user_id = %s ORDER BY k.id", (user_id,))
        return cur.fetchall()


def remove(conn: psycopg.Connection[Any], key_id: int) -> None:
    with _tx(conn) as c:
        cur = c.execute("DELETE FROM account.api_keys WHERE id = %s", (key_id,))
        if cur.rowcount == 0:
            raise NotFound("api key", key_id)


def reencrypt_all(conn: psycopg.Connection[Any], old: SecretBox, new: SecretBox) -> int:
    """Re-encrypt every key from `old` to `new` (rotation of TRADESTORE_SECRET_KEY), in one
    transaction; keys already under `new` are left alone. Returns how many changed."""
    changed = 0
    with _tx(conn) as c, c.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, user_id, exchange_id, api_key_ciphertext, api_secret_ciphertext "
            "FROM account.api_keys ORDER BY id FOR UPDATE"
        )
        for row in cur.fetchall():
            if new.encrypted_by_me(row["api_key_ciphertext"]):
                continue
            values = []
            for field in ("api_key", "api_secret"):
                context = _context(row["user_id"], row["exchange_id"], field)
                plain = old.decrypt(row[f"{field}_ciphertext"], context)
                redact.register_secret(plain)
                values.append(new.encrypt(plain, context))
            c.execute(
                "UPDATE account.api_keys SET api_key_ciphertext = %s, api_secret_ciphertext = %s "
                "WHERE id = %s",
                (*values, row["id"]),
            )
            changed += 1
    return changed
