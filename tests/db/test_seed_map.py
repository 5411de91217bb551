"""Every seed table is served under its own name and columns (docs/seed_map.toml)."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.support.seed_parser import SEEDS_DIR, parse_all
from tradestore.db.connect import SEARCH_PATH

SEED_MAP = Path(__file__).resolve().parents[2] / "docs" / "seed_map.toml"


def _entries() -> list[dict]:
    return tomllib.loads(SEED_MAP.read_text(encoding="utf-8"))["table"]


def _columns(conn: psycopg.Connection, relation: str) -> set[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
        "AND a.attnum > 0 AND NOT a.attisdropped",
        (relation,),
    ).fetchall()
    return {r[0] for r in rows}


def test_every_mapped_relation_has_the_seed_columns(module_schema_db: str) -> None:
    missing = []
    with psycopg.connect(module_schema_db) as conn:
        for entry in _entries():
            relation = entry["relation"]
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (relation,)).fetchone()[0]
            if not exists:
                missing.append(
                    f"{entry['seed']} {entry['name']}: relation {relation} does not exist"
                )
                continue
            absent = set(entry["columns"]) - _columns(conn, relation)
            if absent:
                missing.append(
                    f"{entry['seed']} {entry['name']} -> {relation}: missing {sorted(absent)}"
                )
    assert missing == []


def test_seed_004_tables_keep_their_schema_qualified_names() -> None:
    for entry in _entries():
        if entry["seed"] == "004":
            assert entry["relation"] == entry["name"], entry


def test_every_mapped_relation_can_be_queried(module_schema_db: str) -> None:
    # A view can exist yet fail when read (a bad join, a function error); read each one.
    with psycopg.connect(module_schema_db) as conn:
        for entry in _entries():
            columns = ", ".join(f'"{c}"' for c in entry["columns"]) or "*"
            conn.execute(f"SELECT {columns} FROM {entry['relation']} LIMIT 1").fetchall()


@pytest.mark.skipif(not SEEDS_DIR.exists(), reason="seed documents (../shared/seeds) not present")
def test_seed_map_covers_every_table_and_column_the_seeds_create() -> None:
    mapped = {(e["seed"], e["name"]): set(e["columns"]) for e in _entries()}
    parsed = parse_all()
    assert len(parsed) == 48, "the four seeds create or alter 48 tables"
    problems = []
    for table in parsed:
        key = (table.seed, table.name)
        if key not in mapped:
            problems.append(f"{key} has no [[table]] entry")
        elif set(table.columns) - mapped[key]:
            problems.append(f"{key} lacks columns {sorted(set(table.columns) - mapped[key])}")
    assert problems == []


def test_seed_queries_run_against_their_own_names(conn: psycopg.Connection) -> None:
    """Code written against one seed runs with that seed's schema first on the path."""
    conn.execute("INSERT INTO market.exchanges (code, name) VALUES ('bithumb', 'Bithumb')")
    conn.execute(
        "INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency) "
        "VALUES ('BTC/KRW', 'Bitcoin', 'CRYPTO', 'BTC', 'KRW')"
    )
    conn.execute(
        "INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, trading_rules) "
        """VALUES (1, 1, 'BTC_KRW', '{"price_bands": [{"min_price": 0, "tick_size": 1},
                                                       {"min_price": 1000000, "tick_size": 1000}]}')"""
    )
    conn.execute(
        "INSERT INTO account.users (username, email, password_hash) VALUES ('kim', 'kim@x.kr', 'h')"
    )
    conn.execute(
        "INSERT INTO account.accounts (user_id, exchange_id, name, base_currency) VALUES (1, 1, 'main', 'KRW')"
    )
    # Orders are funded and held to the owner's risk limits.
    conn.execute("UPDATE account.users SET max_risk_per_trade = 100, max_total_risk = 100")
    conn.execute("SELECT post_ledger_entry(1, 'DEPOSIT', 'KRW', 1000000000)")
    conn.execute(
        "INSERT INTO trade.orders (account_id, exchange_instrument_id, side, order_type, quantity, price, "
        "exchange_order_id) VALUES (1, 1, 'BUY', 'LIMIT', 0.5, 95001234, 'C0101')"
    )
    # Seed 003 (Bithumb) names and vocabulary.
    conn.execute(f"SET search_path = bithumb, {SEARCH_PATH}")
    row = conn.execute(
        "SELECT bithumb_order_id, symbol, order_type, order_side, price, status, remaining_quantity "
        "FROM orders WHERE user_id = 1"
    ).fetchone()
    assert row == ("C0101", "BTC_KRW", "buy", "bid", Decimal("95001000"), "pending", Decimal("0.5"))
    # Seed 002 (Christmas).
    conn.execute(f"SET search_path = christmas, {SEARCH_PATH}")
    assert conn.execute("SELECT external_id, side, status FROM orders").fetchone() == (
        "C0101",
        "BUY",
        "NEW",
    )
    # Seed 004 (AEGIS) schema-qualified names.
    row = conn.execute(
        "SELECT order_id, limit_price, order_time IS NOT NULL, created_by FROM trade.orders"
    ).fetchone()
    assert row[0] == 1 and row[1] == Decimal("95001000") and row[2] and row[3]
