"""Revision 0012: upgrade creates roles, grants, policies and the role guard; downgrade
drops policies and triggers and revokes what it granted (the cluster-wide roles stay)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.support.fixtures import create_database, drop_database
from tradestore.db import migrate

ROLES = ("tradestore_readonly", "tradestore_trader", "tradestore_analyst", "tradestore_admin")


@pytest.fixture
def empty_db(pg_conninfo: str) -> Iterator[str]:
    conninfo = create_database(pg_conninfo, "t_security")
    yield conninfo
    drop_database(pg_conninfo, conninfo)


def _state(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    one = lambda q: conn.execute(q).fetchone()[0]  # noqa: E731
    return {
        "roles": one(f"SELECT count(*) FROM pg_roles WHERE rolname IN {ROLES}"),
        "policies": one("SELECT count(*) FROM pg_policies WHERE policyname LIKE 'rls\\_%'"),
        "rls_tables": one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relrowsecurity AND n.nspname IN ('account', 'trade', 'analytics', 'system', 'brain')"
        ),
        "trader_orders": one(
            "SELECT has_any_column_privilege('tradestore_trader', 'trade.orders', 'INSERT')"
        ),
        "readonly_candles": one(
            "SELECT has_table_privilege('tradestore_readonly', 'market.candles', 'SELECT')"
        ),
        "guard": one("SELECT count(*) FROM pg_trigger WHERE tgname = 'tr_users_role_guard'"),
        "act_as": one("SELECT to_regprocedure('system.act_as(bigint, text, bigint)') IS NOT NULL"),
        "invoker": one(
            "SELECT coalesce('security_invoker=true' = ANY (reloptions), false) FROM pg_class "
            "WHERE oid = 'trade.position_valuations'::regclass"
        ),
        "seed_view_invoker": one(
            "SELECT 'security_invoker=true' = ANY (reloptions) FROM pg_class "
            "WHERE oid = 'bithumb.orders'::regclass"
        ),
        "lock_ledger_public": one(
            "SELECT has_function_privilege('tradestore_trader', 'account.lock_ledger(bigint)', 'EXECUTE')"
        ),
    }


def test_downgrade_removes_what_0012_made_and_upgrade_restores_it(empty_db: str) -> None:
    migrate.upgrade(empty_db)
    with psycopg.connect(empty_db) as conn:
        up = _state(conn)
    assert up == {
        "roles": 4,
        "policies": up["policies"],
        "rls_tables": 26,
        "trader_orders": True,
        "readonly_candles": True,
        "guard": 1,
        "act_as": True,
        "invoker": True,
        "seed_view_invoker": True,
        "lock_ledger_public": False,
    }
    assert up["policies"] >= 26 * 3

    migrate.downgrade(empty_db, "0011_seed_views")
    with psycopg.connect(empty_db) as conn:
        down = _state(conn)
    assert down == {
        "roles": 4,  # cluster-wide: other databases may use them
        "policies": 0,
        "rls_tables": 0,
        "trader_orders": False,
        "readonly_candles": False,
        "guard": 0,
        "act_as": False,
        "invoker": False,  # back to how its own file made it
        "seed_view_invoker": True,  # made so by seed_views.sql itself
        "lock_ledger_public": True,
    }

    migrate.upgrade(empty_db)
    with psycopg.connect(empty_db) as conn:
        assert _state(conn) == up
