"""Who is asking, and a database transaction that runs as them.

Every /api/v1 route except login and refresh depends on `current_user`: it reads the
bearer token, authenticates it (session:{id} in Redis, else PostgreSQL), counts the
request against the user's rate limit and returns a `UserContext`. Routes then do

    with ctx.db() as conn:          # a pooled connection inside rls.as_user(...)
        ...                         # row-level security applies to every statement

so each request runs under the user's identity (system.act_as re-reads the role and
checks the session is live in the same transaction: a revocation or a role change made
in SQL applies at once, whatever Redis holds). The transaction commits when the block
ends; the pool's connections are attached to the cache (cache.invalidation), so the keys
the commit made stale are dropped before the block returns.

The routes are plain `def` functions: FastAPI runs them in its thread pool, and they use
the synchronous domain code (trading, identity, cache) unchanged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import Request, Response
from psycopg_pool import ConnectionPool

from tradestore.api.errors import ApiError
from tradestore.cache.client import Cache
from tradestore.cache.ratelimit import Decision, RateLimiter
from tradestore.identity import rls
from tradestore.identity.auth import AuthService, Principal
from tradestore.identity.errors import AuthError, Forbidden
from tradestore.identity.rls import Role
from tradestore.ops.context import user_id_var

__all__ = [
    "UserContext",
    "bearer_token",
    "client_ip",
    "current_user",
    "limit_ip",
    "require_role",
]


def client_ip(request: Request) -> str:
    """The caller's address (uvicorn resolves X-Forwarded-For from trusted proxies).
    Anything that is not an IP address (a test client, a unix socket) counts as 0.0.0.0."""
    host = request.client.host if request.client else ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "0.0.0.0"


def _apply(response: Response, decision: Decision) -> None:
    for name, value in decision.headers().items():
        response.headers[name] = value


def _refuse(what: str, decision: Decision) -> ApiError:
    return ApiError(
        429,
        f"{what}: too many requests, retry after {decision.retry_after}s",
        field=what,
        rule=f"at most {decision.limit} requests per window",
        headers=decision.headers(),
    )


def limit_ip(request: Request, response: Response) -> None:
    """Dependency of every /api/v1 route: the per-address limit (rate_limit:{ip})."""
    limiter: RateLimiter = request.app.state.ip_limiter
    decision = limiter.hit_ip(client_ip(request))
    _apply(response, decision)
    if not decision.allowed:
        raise _refuse("client address", decision)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("no bearer token", "authentication required")
    return token.strip()


@dataclass(frozen=True)
class UserContext:
    principal: Principal
    pool: ConnectionPool[Any]
    cache: Cache
    auth: AuthService

    @property
    def user_id(self) -> int:
        return self.principal.user_id

    @contextmanager
    def db(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction acting as the user (row-level security applies)."""
        p = self.principal
        with (
            self.pool.connection() as conn,
            rls.as_user(conn, p.user_id, session_id=p.session_id) as acting,
        ):
            yield acting

    @contextmanager
    def app_db(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection as the application (autocommit): for checks the user's role may
        not run itself, always after the user's own transaction proved the object is
        theirs."""
        with self.pool.connection() as conn:
            yield conn


def current_user(request: Request, response: Response) -> UserContext:
    """Dependency: the authenticated user of the request (401 otherwise), counted
    against the per-user limit (429 with Retry-After when over it)."""
    state = request.app.state
    token = bearer_token(request)
    with state.sync_pool.connection() as conn:
        principal = state.auth.authenticate(conn, token)
    decision = state.user_limiter.hit_user(principal.user_id)
    _apply(response, decision)
    if not decision.allowed:
        raise _refuse("user", decision)
    user_id_var.set(str(principal.user_id))
    request.state.user_id = principal.user_id
    return UserContext(principal, state.sync_pool, state.cache, state.auth)


def require_role(ctx: UserContext, *roles: Role) -> None:
    """403 unless the user's role is one of `roles` (the database checks again)."""
    if ctx.principal.role not in roles:
        raise Forbidden(
            "role", f"must be one of {', '.join(r.value for r in roles)}", ctx.principal.role.value
        )
