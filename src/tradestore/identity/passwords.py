"""Password hashing with argon2id (argon2-cffi; RFC 9106 low-memory parameters: 3
passes over 64 MiB, 4 lanes) and the password rules.

Hashes are PHC strings (`$argon2id$v=19$m=65536,t=3,p=4$...`) that carry their own
parameters, so raising the parameters later only re-hashes each password at its next
successful login (`needs_rehash`).

The rules follow NIST SP 800-63B 3.1.1.2: 8 to 128 characters, no composition rules, and
no password that is commonly used or context-specific. Commonly used: one of the 19,640
passwords of data/common-passwords.txt.gz (Royce Williams' list of the 20,000 most common,
lower-cased and deduplicated, as Django ships it; BSD licence beside it). Context-specific:
the username, the email address or its local part, or the service's name, or a password
containing one of them.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from tradestore.db.errors import ValidationError

__all__ = [
    "MAX_LENGTH",
    "MIN_LENGTH",
    "check_password_rules",
    "common_passwords",
    "default_hasher",
    "hash_password",
    "needs_rehash",
    "verify_password",
    "waste_time",
]

# NIST SP 800-63B: at least 8 characters, allow at least 64; the upper bound only keeps a
# request from making the server hash megabytes.
MIN_LENGTH = 8
MAX_LENGTH = 128
# Words a password may not be nor contain (with the username and email of its user).
SERVICE_WORDS = ("tradestore",)
# Shorter context words are refused only as the whole password ("bob" may be in a word).
_CONTAINS_MIN = 4


@lru_cache(maxsize=1)
def default_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4, type=Type.ID)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The blocklist, lower-cased (read once per process)."""
    data = resources.files("tradestore.identity").joinpath("data/common-passwords.txt.gz")
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        return frozenset(line.strip().lower() for line in text if line.strip())


def _context_words(username: str | None, email: str | None) -> list[str]:
    words = [*SERVICE_WORDS]
    if username:
        words.append(username.strip())
    if email and email.strip():
        words.append(email.strip())
        words.append(email.strip().partition("@")[0])
    return [w.casefold() for w in words if w]


def check_password_rules(
    password: str, *, username: str | None = None, email: str | None = None
) -> None:
    """Refuse a password that breaks the rules, naming the rule. The error never repeats
    the password (its value says which kind of value was refused)."""
    if not isinstance(password, str):
        raise ValidationError("password", "must be a string", type(password).__name__)
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise ValidationError(
            "password",
            f"must be {MIN_LENGTH} to {MAX_LENGTH} characters",
            f"{len(password)} characters",
        )
    if not password.strip():
        raise ValidationError(
            "password", "must not be only whitespace", f"{len(password)} characters"
        )
    folded = password.casefold()
    if username and folded == username.strip().casefold():
        raise ValidationError("password", "must differ from the username", "the username")
    for word in _context_words(username, email):
        if folded == word or (len(word) >= _CONTAINS_MIN and word in folded):
            raise ValidationError(
                "password",
                "must not contain the username, the email address or the service's name",
                "a context-specific password",
            )
    if password.strip().lower() in common_passwords():
        raise ValidationError(
            "password", "must not be a commonly used password", "a common password"
        )


def hash_password(password: str, hasher: PasswordHasher | None = None) -> str:
    return (hasher or default_hasher()).hash(password)


def verify_password(
    password_hash: str, password: str, hasher: PasswordHasher | None = None
) -> bool:
    """True when `password` matches; False for a mismatch or an unreadable hash."""
    try:
        return (hasher or default_hasher()).verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str, hasher: PasswordHasher | None = None) -> bool:
    try:
        return (hasher or default_hasher()).check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=4)
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash("tradestore-no-such-user")


def waste_time(password: str, hasher: PasswordHasher | None = None) -> None:
    """Verify against a dummy hash: a login for an unknown user takes as long as one for
    a known user, so timing does not tell which usernames exist."""
    hasher = hasher or default_hasher()
    verify_password(_dummy_hash(hasher), password, hasher)
