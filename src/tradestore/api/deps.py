"""FastAPI dependencies: the database pool and a connection from it.

The pool (app.state.pool) is a psycopg_pool.AsyncConnectionPool opened by the app's
lifespan; its connections are in autocommit mode with tradestore's search_path, so use
`async with conn.transaction():` for work that must be atomic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
from fastapi import Request
from psycopg_pool import AsyncConnectionPool

from tradestore.config import Settings

__all__ = ["get_conn", "get_pool", "get_settings"]


def get_pool(request: Request) -> AsyncConnectionPool[Any]:
    pool: AsyncConnectionPool[Any] = request.app.state.pool
    return pool


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_conn(request: Request) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with request.app.state.pool.connection() as conn:
        yield conn
