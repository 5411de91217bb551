"""Fixtures of the API tests: a seeded database (tests/api/world.py), real Redis, and a
TestClient over the whole app with cheap password hashing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.api.world import FAST, PASSWORD, World, build_world
from tests.support.redis_fixtures import own_redis, redis_cache, redis_server  # noqa: F401
from tradestore.api.app import create_app
from tradestore.api.config import ApiSettings
from tradestore.cache.client import Cache
from tradestore.config import load_settings
from tradestore.identity.auth import AuthConfig
from tradestore.inbound.config import load_webhook_settings


@pytest.fixture
def world(conn: psycopg.Connection[Any]) -> World:
    return build_world(conn)


def make_client(
    db: str, tmp_path: Path, cache: Cache, api_settings: ApiSettings | None = None
) -> TestClient:
    settings = load_settings(None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path, DB_POOL_SIZE=2)
    app = create_app(
        settings,
        conninfo=db,
        webhook_settings=load_webhook_settings(None),
        api_settings=api_settings or ApiSettings(_env_file=None),  # type: ignore[call-arg]
        cache=cache,
        auth_config=AuthConfig(hasher=FAST),
    )
    return TestClient(app, client=("127.0.0.1", 50000))


@pytest.fixture
def client(
    db: str,
    tmp_path: Path,
    redis_cache: Cache,  # noqa: F811  (the fixture imported above)
    world: World,
) -> Iterator[TestClient]:
    with make_client(db, tmp_path, redis_cache) as c:
        yield c


def login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
def as_user(client: TestClient) -> Callable[[str], dict[str, str]]:
    """as_user('alice') -> the Authorization header of a fresh login."""

    def headers(username: str) -> dict[str, str]:
        return bearer(login(client, username))

    return headers
