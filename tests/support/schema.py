"""Migrated-database fixtures: the full schema with every available Plus module, built
once per session as a template and cloned (CREATE DATABASE ... TEMPLATE) per test."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.support.fixtures import create_database, drop_database
from tradestore.db import migrate

ALL_AVAILABLE_MODULES = [m for m in migrate.MODULES if m != "timeseries"]


@pytest.fixture(scope="session")
def schema_template(pg_conninfo: str) -> Iterator[str]:
    """Name of a template database at core@head with every available module enabled."""
    template = create_database(pg_conninfo, "tpl_schema")
    migrate.upgrade(template)
    migrate.enable_modules(template, ALL_AVAILABLE_MODULES)
    yield str(conninfo_to_dict(template)["dbname"])
    drop_database(pg_conninfo, template)


@pytest.fixture
def db(pg_conninfo: str, schema_template: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, fully migrated database for one test (conninfo, superuser)."""
    conninfo = create_database(pg_conninfo, "t_" + request.node.name[:30], template=schema_template)
    yield conninfo
    drop_database(pg_conninfo, conninfo)


@pytest.fixture(scope="module")
def module_schema_db(
    pg_conninfo: str, schema_template: str, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fully migrated database shared by the tests of one module."""
    prefix = "m_" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    conninfo = create_database(pg_conninfo, prefix, template=schema_template)
    yield conninfo
    drop_database(pg_conninfo, conninfo)


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh migrated database, with the app's session
    settings (search_path, statement timeout)."""
    from tradestore.db.connect import connect

    with connect(db, autocommit=True) as c:
        yield c
