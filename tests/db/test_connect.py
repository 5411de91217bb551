from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tradestore.config import Settings, load_settings
from tradestore.db.connect import (
    SEARCH_PATH,
    connect,
    make_pool,
    resolve_conninfo,
    session_conninfo,
)


def show(conn: psycopg.Connection, name: str) -> str:
    row = conn.execute(f"SHOW {name}").fetchone()
    assert row is not None
    return str(row[0])


def test_session_conninfo_puts_settings_in_options() -> None:
    s = load_settings(None, DB_STATEMENT_TIMEOUT="5s")
    url = "postgresql://u@h/db?options=-c%20work_mem%3D8MB"
    params = conninfo_to_dict(session_conninfo(url, s))
    assert params["application_name"] == "tradestore"
    assert params["options"] == (
        r"-c search_path=trade,\ account,\ market,\ brain,\ analytics,\ system,\ public"
        " -c statement_timeout=5000 -c work_mem=8MB"
    )


def test_pool_applies_session_settings(pg_conninfo: str, settings: Settings) -> None:
    s = settings.model_copy(update={"DB_STATEMENT_TIMEOUT": 1234, "DB_POOL_SIZE": 2})
    with make_pool(pg_conninfo, s) as pool:
        assert (pool.min_size, pool.max_size) == (1, 2 + 20)
        with pool.connection() as conn:
            assert show(conn, "search_path") == SEARCH_PATH
            assert show(conn, "statement_timeout") == "1234ms"
            assert show(conn, "application_name") == "tradestore"
            # Options are session defaults: RESET keeps them.
            conn.execute("SET search_path = public; RESET search_path")
            assert show(conn, "search_path") == SEARCH_PATH


def test_statement_timeout_is_enforced(pg_conninfo: str, settings: Settings) -> None:
    s = settings.model_copy(update={"DB_STATEMENT_TIMEOUT": 50})
    with connect(pg_conninfo, s) as conn:
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        conn.rollback()
        assert show(conn, "search_path") == SEARCH_PATH


def test_connect_application_name(pg_conninfo: str, settings: Settings) -> None:
    with connect(pg_conninfo, settings, application_name="tradestore-test") as conn:
        assert show(conn, "application_name") == "tradestore-test"
        assert show(conn, "statement_timeout") == "30s"


def test_resolve_prefers_database_url(pg_conninfo: str, settings: Settings) -> None:
    assert resolve_conninfo(settings) == (settings.DATABASE_URL, None)


def test_resolve_starts_embedded(tmp_path: Path) -> None:
    s = load_settings(None, DATABASE_URL=None, TRADESTORE_HOME=tmp_path / "home")
    s = s.model_copy(update={"DATABASE_URL": None})  # ignore a CI-provided DATABASE_URL
    url, server = resolve_conninfo(s)
    assert server is not None and server.owned
    try:
        with connect(url, s) as conn:
            assert show(conn, "search_path") == SEARCH_PATH
    finally:
        assert server.stop() is True
