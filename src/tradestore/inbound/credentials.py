"""Per-user webhook credentials: created, rotated and revoked by their user.

A token looks like `tvwh_<token_id>_<secret>`: token_id (16 hex digits) finds the
credential, the secret is 256 random bits. The token is returned once, when created or
rotated; the database keeps only its SHA-256 (system.webhook_credentials.secret_hash),
compared in constant time. A credential acts for its user only.

Every function takes the acting user's id and touches only that user's credentials; on
a connection acting as the user (tradestore.identity.rls.as_user) row-level security
holds the same line.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from tradestore.db.errors import NotFound, ValidationError

__all__ = [
    "Credential",
    "IssuedToken",
    "create",
    "hash_token",
    "list_credentials",
    "parse_token",
    "revoke",
    "rotate",
    "verify_hash",
]

PREFIX = "tvwh"
_TOKEN = re.compile(r"tvwh_([0-9a-f]{16})_([A-Za-z0-9_-]{40,64})")
# Compared against when the token id is unknown, so an unknown id costs the same.
_DUMMY_HASH = hashlib.sha256(b"no such credential").hexdigest()
_COLUMNS = "id, user_id, token_id, label, created_at, rotated_at, revoked_at, last_used_at"


@dataclass(frozen=True)
class Credential:
    id: int
    user_id: int
    token_id: str
    label: str | None
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class IssuedToken:
    """A credential and its token: show the token once, it is not stored."""

    credential: Credential
    token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_token(token: str) -> str | None:
    """The token id of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def verify_hash(token: str, stored_hash: str | None) -> bool:
    """Constant-time comparison of the token's hash with the stored one."""
    expected = stored_hash if stored_hash is not None else _DUMMY_HASH
    ok = hmac.compare_digest(hash_token(token).encode(), expected.encode())
    return ok and stored_hash is not None


def _new_token() -> tuple[str, str]:
    token_id = secrets.token_hex(8)
    return token_id, f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"


def _label(label: str | None) -> str | None:
    if label is None:
        return None
    if not label.strip() or len(label) > 100:
        raise ValidationError("label", "must be 1 to 100 characters, not blank", label)
    return label.strip()


def create(conn: psycopg.Connection[Any], user_id: int, label: str | None = None) -> IssuedToken:
    """A new credential for `user_id` and its token (shown once)."""
    label = _label(label)
    token_id, token = _new_token()
    with conn.cursor(row_factory=class_row(Credential)) as cur:
        cur.execute(
            "INSERT INTO system.webhook_credentials (user_id, token_id, secret_hash, label) "
            f"VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}",
            (user_id, token_id, hash_token(token), label),
        )
        row = cur.fetchone()
    assert row is not None
    return IssuedToken(row, token)


def rotate(conn: psycopg.Connection[Any], user_id: int, credential_id: int) -> IssuedToken:
    """A new token for the user's live credential; the old token stops working now."""
    # The token id stays (so does the credential); only the secret part changes.
    with conn.cursor(row_factory=class_row(Credential)) as cur:
        # The row lock waits for a webhook request that is storing an alert with the old
        # token (it share-locks the credential), and clock_timestamp() then stamps the
        # rotation after that alert's received_at: the sweep's "rotated after the alert
        # arrived" test is never fooled by a rotation that was still waiting.
        cur.execute(
            f"SELECT {_COLUMNS} FROM system.webhook_credentials "
            "WHERE id = %s AND user_id = %s AND revoked_at IS NULL FOR UPDATE",
            (credential_id, user_id),
        )
        found = cur.fetchone()
        if found is None:
            raise NotFound("webhook credential", credential_id)
        token = f"{PREFIX}_{found.token_id}_{secrets.token_urlsafe(32)}"
        cur.execute(
            "UPDATE system.webhook_credentials SET secret_hash = %s, rotated_at = clock_timestamp() "
            f"WHERE id = %s AND user_id = %s AND revoked_at IS NULL RETURNING {_COLUMNS}",
            (hash_token(token), credential_id, user_id),
        )
        row = cur.fetchone()
    if row is None:
        raise NotFound("webhook credential", credential_id)
    return IssuedToken(row, token)


def revoke(conn: psycopg.Connection[Any], user_id: int, credential_id: int) -> bool:
    """Revoke the user's credential; False when it already was."""
    # Locked like rotate: a request storing an alert with this credential finishes first.
    row = conn.execute(
        "SELECT revoked_at IS NOT NULL FROM system.webhook_credentials "
        "WHERE id = %s AND user_id = %s FOR UPDATE",
        (credential_id, user_id),
    ).fetchone()
    if row is None:
        raise NotFound("webhook credential", credential_id)
    if row[0]:
        return False
    conn.execute(
        "UPDATE system.webhook_credentials SET revoked_at = clock_timestamp() "
        "WHERE id = %s AND user_id = %s AND revoked_at IS NULL",
        (credential_id, user_id),
    )
    return True


def list_credentials(conn: psycopg.Connection[Any], user_id: int) -> list[Credential]:
    """The user's credentials (revoked ones too), oldest first; never a hash."""
    with conn.cursor(row_factory=class_row(Credential)) as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM system.webhook_credentials WHERE user_id = %s ORDER BY id",
            (user_id,),
        )
        return cur.fetchall()
