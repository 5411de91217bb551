"""Session and refresh tokens: random, shown to the client once, stored only as SHA-256.

An access token is `<session id>.<43 random characters>` so the session can be found in
Redis by id (session:{id}); the stored hash is still what proves it. A refresh token is
random only. 256 bits of randomness each, from the OS generator (`secrets`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from tradestore.identity.errors import AuthError

__all__ = ["new_access_token", "new_refresh_token", "session_id_of", "token_hash", "tokens_match"]

_RANDOM_BYTES = 32
_MAX_TOKEN_LENGTH = 128


def new_access_token(session_id: int) -> str:
    return f"{session_id}.{secrets.token_urlsafe(_RANDOM_BYTES)}"


def new_refresh_token() -> str:
    return secrets.token_urlsafe(_RANDOM_BYTES)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def tokens_match(stored_hash: bytes | str, token: str) -> bool:
    """Constant-time comparison of a stored hash (bytes, or hex) with a token's hash."""
    expected = bytes.fromhex(stored_hash) if isinstance(stored_hash, str) else bytes(stored_hash)
    return hmac.compare_digest(expected, token_hash(token))


def session_id_of(token: str) -> int:
    """The session id an access token names; AuthError if it is not shaped like one."""
    if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN_LENGTH:
        raise AuthError("malformed token")
    head, sep, tail = token.partition(".")
    if not sep or not head.isdigit() or len(head) > 18 or len(tail) < 32:
        raise AuthError("malformed token")
    return int(head)
