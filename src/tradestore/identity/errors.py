"""Errors of authentication and authorization, and the translation of the database's
refusals (privileges, row-level security, the role guard) into them."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from tradestore.db.errors import TradestoreError, translate

__all__ = ["AuthError", "Forbidden", "RateLimited", "translate_security"]


class AuthError(TradestoreError):
    """Not authenticated: bad credentials, or a token that is unknown, expired or revoked.
    The message is deliberately generic (it must not tell which); `reason` is for logs."""

    def __init__(self, reason: str, message: str = "invalid or expired credentials") -> None:
        self.reason = reason
        super().__init__(message)


class Forbidden(TradestoreError, PermissionError):
    """Authenticated but not allowed: names the field, the rule and the value."""

    def __init__(self, field: str, rule: str, value: object) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(f"{field}: {rule} (value: {value!r})")

    def as_dict(self) -> dict[str, object]:
        return {
            "field": self.field,
            "rule": self.rule,
            "value": str(self.value),
            "message": str(self),
        }


class RateLimited(TradestoreError):
    """Too many attempts; retry after `retry_after` seconds."""

    def __init__(self, what: str, retry_after: int) -> None:
        self.what = what
        self.retry_after = retry_after
        super().__init__(f"{what}: too many attempts, retry after {retry_after}s")


def translate_security(exc: psycopg.Error) -> Exception:
    """Map privilege and row-level-security refusals to Forbidden, refused identities to
    AuthError, and everything else as tradestore.db.errors.translate does."""
    diag = exc.diag
    if isinstance(exc, pg_errors.InvalidAuthorizationSpecification):
        return AuthError(diag.message_primary or "refused")
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        if diag.column_name:  # raised by our own guards with field/rule/value
            return Forbidden(
                diag.column_name, diag.constraint_name or "not allowed", diag.message_detail
            )
        message = diag.message_primary or "permission denied"
        if "row-level security" in message:
            return Forbidden("row", "row-level security: not yours", diag.table_name or message)
        return Forbidden("privilege", "the role may not do this", message)
    return translate(exc)
