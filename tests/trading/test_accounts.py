"""Opening accounts, by Python and by the CLI a new user runs first."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal

import psycopg
import pytest

from tradestore.db.errors import ValidationError
from tradestore.trading.accounts import create_account, list_accounts


def test_create_and_list(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO account.users (username, email, password_hash) VALUES ('ann', 'a@x.io', 'h')"
    )
    conn.execute("INSERT INTO market.exchanges (code, name) VALUES ('binance', 'Binance')")
    account_id = create_account(
        conn, "ann", "spot", exchange="binance", base_currency="usdt", initial_capital="1000"
    )
    [account] = list_accounts(conn, "ann")
    assert (account.id, account.exchange, account.base_currency, account.initial_capital) == (
        account_id, "binance", "USDT", Decimal("1000"),
    )  # fmt: skip
    # Seed 004's portfolio view serves it.
    assert conn.execute("SELECT initial_capital FROM account.portfolio").fetchone() == (
        Decimal("1000"),
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"username": "nobody"}, "username"), ({"exchange": "nope"}, "exchange"),
     ({"initial_capital": "-5"}, "initial_capital"), ({"initial_capital": "NaN"}, "initial_capital"),
     ({"base_currency": " "}, "base_currency")],
)  # fmt: skip
def test_bad_input_names_the_field(conn: psycopg.Connection, kwargs: dict, field: str) -> None:
    conn.execute(
        "INSERT INTO account.users (username, email, password_hash) VALUES ('ann', 'a@x.io', 'h')"
    )
    args = {"username": "ann", **kwargs}
    with pytest.raises(ValidationError) as refused:
        create_account(conn, args.pop("username"), "main", **args)
    assert field in refused.value.field
    assert conn.execute("SELECT count(*) FROM account.accounts").fetchone() == (0,)


def test_cli(db: str) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO account.users (username, email, password_hash) VALUES ('ann', 'a@x.io', 'h')"
        )
    env = {**os.environ, "DATABASE_URL": db, "COLUMNS": "200"}
    run = [sys.executable, "-m", "tradestore.cli.main", "accounts"]
    made = subprocess.run(
        [*run, "create", "ann", "--name", "main"], env=env, capture_output=True, text=True
    )
    assert made.returncode == 0 and "opened" in made.stdout, made.stderr
    listed = subprocess.run([*run, "list"], env=env, capture_output=True, text=True)
    assert "ann" in listed.stdout and "main" in listed.stdout
    dup = subprocess.run(
        [*run, "create", "ann", "--name", "main"], env=env, capture_output=True, text=True
    )
    assert dup.returncode == 1 and "Traceback" not in dup.stderr
