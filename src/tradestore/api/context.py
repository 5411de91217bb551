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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from fastapi import Request, Response
from psycopg_pool import ConnectionPool
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from tradestore.api.errors import ApiError
from tradestore.cache import keys
from tradestore.cache.aio import AsyncCache
from tradestore.cache.client import Cache
from tradestore.cache.ratelimit import Decision, RateLimiter
from tradestore.db.errors import TradestoreError
from tradestore.identity import rls, tokens
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
    "prefetch",
    "require_role",
]

F = TypeVar("F", bound=Callable[..., Any])
_PREFETCH = "__tradestore_prefetch__"


def prefetch(template: str | Callable[[Request], str | None]) -> Callable[[F], F]:
    """Mark a route whose first read is one Redis key: a key of the authenticated user (a
    template with {user_id} and {role}, e.g. keys.PORTFOLIO_KEY_TEMPLATE), or a key the
    request names (a function of the request; None: none). `limit_ip`'s one Redis round
    trip reads it too, when the token matched its session, and the route gets it from
    `UserContext.get` (only for the very key it asks for)."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, _PREFETCH, template)
        return endpoint

    return mark


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


async def limit_ip(request: Request, response: Response) -> None:
    """Dependency of every /api/v1 route: the per-address limit (rate_limit:{ip}).

    One Redis round trip on the event loop (cache.aio.AsyncCache.prelude): a request with
    an access token also gets its session entry and, when the token is that session's,
    the owner's per-user count back, kept for `current_user`."""
    state = request.app.state
    ip_limiter: RateLimiter = state.ip_limiter
    user_limiter: RateLimiter = state.user_limiter
    ip_key = keys.rate_limit_key(client_ip(request))
    session_id = _session_of(request)
    found = await state.aio.prelude(
        ip_key,
        ip_limiter.limit.window * 1000,
        None if session_id is None else keys.session_key(session_id),
        "" if session_id is None else tokens.token_hash(bearer_token(request)).hex(),
        user_limiter.limit.window * 1000,
        keys.RATE_LIMIT_USER_PREFIX,
        "" if session_id is None else _prefetch_key(request),
    )
    if found is None:
        decision = ip_limiter.hit_locally(ip_key)
    else:
        decision = ip_limiter.decided(*found.ip)
        request.state.prelude = (session_id, found)
    _apply(response, decision)
    if not decision.allowed:
        raise _refuse("client address", decision)


def _prefetch_key(request: Request) -> str:
    wanted = getattr(request.scope.get("endpoint"), _PREFETCH, None)
    if callable(wanted):
        try:
            wanted = wanted(request)
        except TradestoreError:
            return ""  # not a key: the route itself says what is wrong
    return wanted or ""


def _session_of(request: Request) -> int | None:
    """The session id the request's bearer token names, if it carries a well-formed one."""
    try:
        return tokens.session_id_of(bearer_token(request))
    except AuthError:
        return None


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
    aio: AsyncCache
    # (key, value) the request's prelude read for a `prefetch` route; value None: a miss
    prefetch: tuple[str, str | None] | None = None

    @property
    def user_id(self) -> int:
        return self.principal.user_id

    async def get(self, key: str) -> str | None:
        """GET `key`, answered from the prelude's read when it read this very key."""
        if self.prefetch is not None and self.prefetch[0] == key:
            return self.prefetch[1]
        return await self.aio.get(key)

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


async def current_user(request: Request, response: Response) -> UserContext:
    """Dependency: the authenticated user of the request (401 otherwise), counted
    against the per-user limit (429 with Retry-After when over it).

    A session cached in Redis (read by limit_ip's round trip) is checked here without a
    database connection; otherwise PostgreSQL decides in a worker thread and caches it."""
    state = request.app.state
    token = bearer_token(request)
    session_id = tokens.session_id_of(token)
    principal: Principal | None = None
    decision: Decision | None = None
    entry: keys.SessionEntry | None = None
    prefetched: tuple[str, str | None] | None = None
    seen = getattr(request.state, "prelude", None)
    if seen is not None and seen[0] == session_id and seen[1].session is not None:
        entry = _session_entry(seen[1].session)
        principal = AuthService.cached_principal(entry, token)
        if principal is not None and seen[1].user is not None:
            decision = state.user_limiter.decided(*seen[1].user)
            prefetched = seen[1].prefetched
    state.cache.record(principal is not None)
    if principal is None:
        principal = await run_in_threadpool(_authenticate_in_db, state, token, entry is not None)
    if decision is None:
        decision = await _hit_user(state, principal.user_id)
    _apply(response, decision)
    if not decision.allowed:
        raise _refuse("user", decision)
    user_id_var.set(str(principal.user_id))
    request.state.user_id = principal.user_id
    return UserContext(principal, state.sync_pool, state.cache, state.auth, state.aio, prefetched)


def _session_entry(raw: str) -> keys.SessionEntry | None:
    try:
        return keys.SessionEntry.model_validate_json(raw)
    except ValidationError:
        return None  # unreadable: PostgreSQL decides and rewrites it


def _authenticate_in_db(state: Any, token: str, stale: bool) -> Principal:
    with state.sync_pool.connection() as conn:
        principal: Principal = state.auth.authenticate_in_db(conn, token, stale=stale)
        return principal


async def _hit_user(state: Any, user_id: int) -> Decision:
    limiter: RateLimiter = state.user_limiter
    key = keys.rate_limit_user_key(user_id)
    found = await state.aio.prelude(key, limiter.limit.window * 1000)
    return limiter.hit_locally(key) if found is None else limiter.decided(*found.ip)


def require_role(ctx: UserContext, *roles: Role) -> None:
    """403 unless the user's role is one of `roles` (the database checks again)."""
    if ctx.principal.role not in roles:
        raise Forbidden(
            "role", f"must be one of {', '.join(r.value for r in roles)}", ctx.principal.role.value
        )
