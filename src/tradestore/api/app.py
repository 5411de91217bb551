"""The FastAPI application: `create_app(settings)`.

Routers live in tradestore.api.routes (health, webhooks; the REST API and the dashboard
are added the same way). The lifespan opens one psycopg AsyncConnectionPool for the app
(app.state.pool, see tradestore.api.deps) and closes it on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from tradestore import __version__
from tradestore.api.middleware import RequestIdMiddleware
from tradestore.api.routes import health, webhooks
from tradestore.config import Settings, get_settings
from tradestore.db.connect import resolve_conninfo, session_conninfo
from tradestore.inbound.config import WebhookSettings, load_webhook_settings
from tradestore.inbound.tradingview import TradingViewIntake

__all__ = ["create_app"]

# Callers wait this long for a pooled connection before the request fails.
POOL_TIMEOUT = 5.0


def create_app(
    settings: Settings | None = None,
    *,
    conninfo: str | None = None,
    webhook_settings: WebhookSettings | None = None,
) -> FastAPI:
    """Build the app. `conninfo` defaults to DATABASE_URL, else the embedded server
    (started on first use); webhook settings default to the environment."""
    settings = settings or get_settings()
    webhook_settings = webhook_settings or load_webhook_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        target = conninfo
        if target is None:
            target, app.state.embedded_server = await asyncio.to_thread(resolve_conninfo, settings)
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            session_conninfo(target, settings, application_name="tradestore-api"),
            min_size=1,
            max_size=settings.db_pool_max_size,
            kwargs={"autocommit": True},
            timeout=POOL_TIMEOUT,
            name="tradestore-api",
            open=False,
        )
        await pool.open(wait=False)
        app.state.conninfo = target
        app.state.pool = pool
        app.state.tradingview = TradingViewIntake(pool, webhook_settings)
        sweeper = asyncio.create_task(
            app.state.tradingview.sweep_forever(), name="tradingview-sweep"
        )
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await pool.close()

    app = FastAPI(title="tradestore", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.webhook_settings = webhook_settings
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(webhooks.router)
    return app
