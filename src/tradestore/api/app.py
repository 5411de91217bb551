"""The FastAPI application: `create_app(settings)`.

    /health                    database, Redis and workers
    /webhooks/tradingview      TradingView alerts (seed 001 §5.7)
    /api/v1/...                the REST API (docs/api.md; OpenAPI at /openapi.json, /docs)
    /                          the web dashboard (docs/dashboard.md), files under /static/

The lifespan opens, for the app's lifetime:
  * app.state.pool       a psycopg_pool.AsyncConnectionPool (health, webhooks)
  * app.state.sync_pool  a psycopg_pool.ConnectionPool for the REST API, whose routes are
                         plain functions run in FastAPI's thread pool over the synchronous
                         domain code (trading, identity, cache); each request acts as its
                         user there (tradestore.api.context)
  * app.state.cache      Redis (REDIS_URL, else the embedded server), never failing a
                         request: with Redis down every read falls back to PostgreSQL
  * app.state.auth       the AuthService; app.state.ip_limiter / user_limiter the limits
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from tradestore import __version__
from tradestore.api.config import ApiSettings
from tradestore.api.context import limit_ip
from tradestore.api.errors import install_error_handlers
from tradestore.api.middleware import (
    BodyLimitMiddleware,
    MalformedInputMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
)
from tradestore.api.routes import (
    alerts,
    auth,
    brain,
    brain_search,
    dashboard,
    health,
    kpis,
    market,
    orders,
    portfolio,
    runners,
    strategies,
    webhooks,
)
from tradestore.cache import invalidation
from tradestore.cache.aio import AsyncCache
from tradestore.cache.client import Cache, open_cache
from tradestore.cache.ratelimit import Limit, RateLimiter
from tradestore.config import Settings, get_settings
from tradestore.db.connect import resolve_conninfo, session_conninfo
from tradestore.identity import redact
from tradestore.identity.auth import AuthConfig, AuthService
from tradestore.inbound.config import WebhookSettings, load_webhook_settings
from tradestore.inbound.tradingview import TradingViewIntake
from tradestore.ops import maintenance

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"
# Callers wait this long for a pooled connection before the request fails (503).
POOL_TIMEOUT = 5.0


def _api_router() -> APIRouter:
    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(limit_ip)])
    routes = (
        auth,
        portfolio,
        orders,
        market,
        alerts,
        strategies,
        kpis,
        brain,
        brain_search,
        runners,
    )
    for module in routes:
        api.include_router(module.router)
    api.include_router(webhooks.api_router)
    return api


def create_app(
    settings: Settings | None = None,
    *,
    conninfo: str | None = None,
    webhook_settings: WebhookSettings | None = None,
    api_settings: ApiSettings | None = None,
    cache: Cache | None = None,
    auth_config: AuthConfig | None = None,
) -> FastAPI:
    """Build the app. `conninfo` defaults to DATABASE_URL, else the embedded server
    (started on first use); webhook and API settings default to the environment; `cache`
    defaults to open_cache(settings) (closed at shutdown only when opened here)."""
    settings = settings or get_settings()
    webhook_settings = webhook_settings or load_webhook_settings()
    api_settings = api_settings or ApiSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redact.install()
        if settings.TELEGRAM_BOT_TOKEN is not None:
            redact.register_secret(settings.TELEGRAM_BOT_TOKEN.get_secret_value())
        target = conninfo
        if target is None:
            target, app.state.embedded_server = await asyncio.to_thread(resolve_conninfo, settings)
        dsn = session_conninfo(target, settings, application_name="tradestore-api")
        own_cache = cache is None
        app_cache = cache or await asyncio.to_thread(open_cache, settings)

        async def attach_async(conn: Any) -> None:
            await invalidation.attach_async(conn, app_cache)

        def attach(conn: Any) -> None:
            invalidation.attach(conn, app_cache)

        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=settings.db_pool_max_size,
            kwargs={"autocommit": True},
            timeout=POOL_TIMEOUT,
            name="tradestore-api",
            configure=attach_async,
            open=False,
        )
        sync_pool: ConnectionPool[Any] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=settings.db_pool_max_size,
            kwargs={"autocommit": True},
            timeout=POOL_TIMEOUT,
            name="tradestore-api-sync",
            configure=attach,
            open=False,
        )
        await pool.open(wait=False)
        await asyncio.to_thread(sync_pool.open, False)
        window = api_settings.API_RATE_LIMIT_WINDOW
        app.state.conninfo = target
        app.state.pool = pool
        app.state.sync_pool = sync_pool
        app.state.cache = app_cache
        app.state.aio = AsyncCache(app_cache)
        app.state.auth = AuthService(app_cache, auth_config)
        app.state.ip_limiter = RateLimiter(
            app_cache, Limit(api_settings.API_RATE_LIMIT_PER_IP, window)
        )
        app.state.user_limiter = RateLimiter(
            app_cache, Limit(api_settings.API_RATE_LIMIT_PER_USER, window)
        )
        app.state.tradingview = TradingViewIntake(pool, webhook_settings, app_cache)
        # Judges alerts stored but never judged (sweep_unjudged), then places the orders
        # of accepted alerts cut short; at start, then every minute.
        sweeper = asyncio.create_task(
            app.state.tradingview.sweep_forever(), name="tradingview-sweep"
        )
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await app.state.aio.aclose()
            await pool.close()
            # the async pool's last invalidations are applied before the app is gone (a
            # Redis that stopped answering delays the shutdown 30 s, no more: the cache
            # is rebuilt from PostgreSQL on read)
            with contextlib.suppress(TimeoutError):
                await asyncio.to_thread(invalidation.drain_async)
            await asyncio.to_thread(sync_pool.close)
            if own_cache:
                await asyncio.to_thread(app_cache.close)

    app = FastAPI(
        title="tradestore",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served by the dashboard router from vendored Swagger UI assets
        description="REST API of tradestore. Authenticate with POST /api/v1/auth/login, "
        "then send `Authorization: Bearer <access_token>`. Errors are "
        '`{"error": {"code", "message", "field", "rule", "value"}}`.',
    )
    app.state.settings = settings
    app.state.webhook_settings = webhook_settings
    app.state.api_settings = api_settings
    install_error_handlers(app)
    # Inside the body limit: it reads only bodies that limit has already bounded.
    app.add_middleware(MalformedInputMiddleware)
    # `tradestore db upgrade` pauses writes while it migrates (tradestore.ops.maintenance)
    app.add_middleware(maintenance.refuse_writes)
    app.add_middleware(BodyLimitMiddleware, max_bytes=api_settings.API_MAX_BODY_BYTES)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(_api_router())
    app.include_router(dashboard.router)
    app.mount("/static", dashboard.static_files(), name="static")
    return app
