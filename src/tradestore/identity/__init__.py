"""Identity: users and profiles (identity.users), argon2id passwords, sessions with
refresh-token rotation (identity.auth), encrypted exchange API credentials
(identity.apikeys), log redaction of secrets (identity.redact), and running work as an
application user under row-level security (identity.rls). SQL: identity/sql/schema.sql
and identity/sql/security.sql."""

from tradestore.identity.auth import AuthConfig, AuthService, Principal, Tokens
from tradestore.identity.errors import AuthError, Forbidden, RateLimited
from tradestore.identity.rls import Role, as_role, as_user

__all__ = [
    "AuthConfig",
    "AuthError",
    "AuthService",
    "Forbidden",
    "Principal",
    "RateLimited",
    "Role",
    "Tokens",
    "as_role",
    "as_user",
]
