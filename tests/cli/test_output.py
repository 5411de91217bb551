"""What the CLI prints: normalized decimals (full with --exact), tables that fit 80
columns (every column with --wide), and refusals in words, never a constraint name."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.strategy.market import SPOT_RULES, listing, user
from tests.support.cli import cli_session
from tradestore.cli.common import fmt_decimal


@pytest.fixture
def run(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    with cli_session(db, tmp_path / "home", monkeypatch, columns=80) as invoke:
        yield invoke


@pytest.mark.parametrize(
    ("value", "shown", "exact"),
    [
        ("34998.28620394173093401885", "34998.29", "34998.28620394173093401885"),
        ("1.08345231", "1.083452", "1.08345231"),
        ("0.0000123456789", "0.00001234568", "0.0000123456789"),
        ("100.50", "100.5", "100.5"),
        ("1E+3", "1000", "1000"),
        ("0E-10", "0", "0"),
    ],
)
def test_decimals_print_normalized_or_exact(value: str, shown: str, exact: str) -> None:
    assert fmt_decimal(Decimal(value)) == shown
    assert fmt_decimal(Decimal(value), exact=True) == exact


def _user(db: str, name: str = "ana") -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        user(conn, name)


def test_strategy_tables_fit_80_columns_and_wide_shows_all(run, db: str) -> None:
    _user(db)
    code, out = run("strategies", "create", "a-long-strategy-name", "-i", "sma_crossover",
                    "-p", "fast=5", "-p", "slow=20", "--user", "ana")  # fmt: skip
    assert code == 0, out
    code, out = run("strategies", "list")
    assert code == 0, out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "backtesting" not in out and "SL %" in out
    code, out = run("--wide", "strategies", "list")
    assert code == 0, out
    assert "backtesting" in out and "a-long-strategy-name" in out
    assert max(len(line) for line in out.splitlines()) > 80


def test_refusals_name_the_rule_not_the_constraint(run, db: str) -> None:
    code, out = run("exchanges", "add", "nyse", "New York", "--kind", "STOCK")
    assert code == 1
    assert "kind" in out and "CRYPTO, EQUITY, FUTURES, FX, OTHER" in out and "STOCK" in out
    assert "exchanges_kind_check" not in out
    _user(db)
    args = ("strategies", "create", "golden", "-i", "sma_crossover", "--user", "ana")
    assert run(*args)[0] == 0
    code, out = run(*args)
    assert code == 1 and "a strategy named 'golden' already exists" in out
    assert "strategies_user_name_key" not in out and "duplicate key" not in out


def test_readme_account_takes_orders_and_accounts_update_and_close(run, db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        user(conn, "alice")
    assert run("exchanges", "add", "binance", "Binance")[0] == 0
    with psycopg.connect(db, autocommit=True) as conn:
        listing(conn, "BTC/USDT", SPOT_RULES)
    # Without an exchange the account says it takes no orders, and update gives it one.
    code, out = run("accounts", "create", "alice", "--name", "bare")
    assert code == 0 and "no exchange" in out and "accounts update 1 --exchange" in out
    order = ("orders", "submit", "-a", "1", "-s", "BTC/USDT", "--side", "buy", "-q", "0.01",
             "-p", "30000")  # fmt: skip
    code, out = run(*order)
    assert code == 1 and "must name an account with an exchange" in out
    code, out = run("accounts", "update", "1", "--exchange", "binance", "--name", "main")
    assert code == 0, out
    # An order holds its funds when placed (and is held to the risk limits): deposit first.
    assert run("ledger", "deposit", "USDT", "20000", "-a", "1")[0] == 0
    code, out = run(*order)
    assert code == 0 and "order 1" in out, out
    # The README's example: an account made at an exchange, with a deposit, takes orders.
    code, out = run("accounts", "create", "alice", "--name", "second", "--exchange", "binance")
    assert code == 0 and "no exchange" not in out
    assert run("ledger", "deposit", "USDT", "20000", "-a", "2")[0] == 0
    code, out = run(*order[:2], "-a", "2", *order[4:])
    assert code == 0, out
    # An account with an order cannot move exchange; one with open orders cannot close.
    assert run("exchanges", "add", "kraken", "Kraken")[0] == 0
    code, out = run("accounts", "update", "1", "--exchange", "kraken")
    assert code == 1 and "can change only while the account has no orders" in out
    code, out = run("accounts", "close", "1")
    assert code == 1 and "open order" in out
    assert run("orders", "cancel", "1")[0] == 0
    code, out = run("accounts", "close", "1")
    assert code == 0 and "account 1 closed" in out
    code, out = run("accounts", "list")
    assert code == 0 and "main" in out
    code, out = run(*order)
    assert code == 1 and "must name an active account" in out
