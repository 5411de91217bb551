"""Shared PostgreSQL fixtures; imported by tests/conftest.py.

`pg_conninfo` points at DATABASE_URL when set (CI's external-server run), otherwise at an
embedded server in a fresh TRADESTORE_HOME for the test session.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tradestore.config import Settings, load_settings
from tradestore.db.server import EmbeddedPostgres

__all__ = [
    "create_database",
    "drop_database",
    "external_database_url",
    "module_db",
    "pg_conninfo",
    "pg_server",
    "settings",
    "temporary_database",
]


def external_database_url() -> str | None:
    """DATABASE_URL from the environment, normalized like the app does (or None)."""
    if not os.environ.get("DATABASE_URL"):
        return None
    return load_settings(None).DATABASE_URL


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres | None]:
    """The session's embedded server, or None when testing against DATABASE_URL."""
    if external_database_url():
        yield None
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("tradestore-home"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_conninfo(pg_server: EmbeddedPostgres | None) -> str:
    """Superuser conninfo of the `tradestore` database of the server under test."""
    if pg_server is None:
        url = external_database_url()
        assert url is not None
        return url
    return pg_server.conninfo()


def _db_name(prefix: str) -> str:
    clean = re.sub(r"[^a-z0-9_]", "_", prefix.lower())
    return f"{clean[:40]}_{uuid.uuid4().hex[:8]}"


def create_database(conninfo: str, prefix: str = "t", template: str = "template0") -> str:
    """Create an empty database (from template0: no leftovers) and return its conninfo."""
    name = _db_name(prefix)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return make_conninfo(conninfo, dbname=name)


def drop_database(conninfo: str, db_conninfo: str) -> None:
    """Drop the database `db_conninfo` points at, kicking out leftover sessions."""
    name = psycopg.conninfo.conninfo_to_dict(db_conninfo)["dbname"]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )


@contextlib.contextmanager
def temporary_database(conninfo: str, prefix: str = "t") -> Iterator[str]:
    db = create_database(conninfo, prefix)
    try:
        yield db
    finally:
        drop_database(conninfo, db)


@pytest.fixture(scope="module")
def module_db(pg_conninfo: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A throwaway database for the current test module (conninfo)."""
    prefix = "t_" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with temporary_database(pg_conninfo, prefix) as db:
        yield db


@pytest.fixture
def settings(pg_conninfo: str, tmp_path: Path) -> Settings:
    """Fresh Settings (no .env) pointing at the server under test."""
    return load_settings(None, DATABASE_URL=pg_conninfo, TRADESTORE_HOME=tmp_path / "home")
