"""The trading commands as a user runs them (Typer's runner, a real database)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from tests.support.cli import cli_session
from tests.trading.desk import Desk
from tradestore.cli import trading as cli

app = typer.Typer()
for name, sub in (
    ("orders", cli.orders_app),
    ("fills", cli.fills_app),
    ("positions", cli.positions_app),
    ("ledger", cli.ledger_app),
    ("reconcile", cli.reconcile_app),
    ("exchanges", cli.exchanges_app),
    ("instruments", cli.instruments_app),
):
    app.add_typer(sub, name=name)


@pytest.fixture
def run(db: str, desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    with cli_session(db, tmp_path / "home", monkeypatch) as invoke:
        yield invoke


def test_order_fill_position_ledger_flow(run, desk: Desk, tmp_path: Path) -> None:
    acct = str(desk.account_id)
    code, out = run(
        "orders",
        "submit",
        "-a",
        acct,
        "-s",
        "BTC/USDT",
        "--side",
        "buy",
        "-q",
        "0.5",
        "-p",
        "40000.009",
        "--key",
        "k1",
        "--client-id",
        "c-1",
    )
    assert code == 0 and "BUY 0.5 binance:BTCUSDT LIMIT @ 40000 [NEW]" in out, out
    order_id = out.split()[1].rstrip(":")
    assert desk.conn.execute(
        "SELECT source FROM trade.orders WHERE id = %s", (int(order_id),)
    ).fetchone() == ("CLI",)

    feed = tmp_path / "fills.jsonl"
    feed.write_text(
        "\n".join(
            [
                json.dumps(
                    {
                        "order_id": int(order_id),
                        "id": "f1",
                        "amount": 0.2,
                        "price": 40000,
                        "fee": {"cost": 0.8, "currency": "USDT"},
                        "datetime": "2024-06-01T10:00:00Z",
                    }
                ),
                json.dumps(
                    {
                        "clientOrderId": "c-1",
                        "id": "f2",
                        "amount": 0.3,
                        "price": 39990,
                        "timestamp": 1717236060000,
                    }
                ),
                json.dumps(
                    {"order_id": int(order_id), "id": "f3", "amount": 1, "price": 40000}
                ),  # overfill
                "not json",
            ]
        )
        + "\n"
    )
    code, out = run("fills", "import", feed, "-a", acct)
    assert code == 1, out
    assert "2 fill(s) applied, 0 already recorded, 2 refused" in out
    assert "line 3: quantity: overfill" in out and "line 4: line: must be JSON" in out
    code, out = run("fills", "import", feed, "-a", acct)
    assert "0 fill(s) applied, 2 already recorded" in out

    code, out = run("positions", "-a", acct)
    assert code == 0 and "BTCUSDT" in out and "LONG" in out and "39994" in out, out
    code, out = run("ledger", "balances", "-a", acct)
    assert code == 0 and "BTC" in out and "0.5" in out
    code, out = run("ledger", "show", "-a", acct, "-c", "usdt")
    assert code == 0 and "TRADE" in out and "FEE" in out
    code, out = run("orders", "list", "-a", acct)
    assert "FILLED" in out
    code, out = run("ledger", "verify")
    assert code == 0 and "ledger intact" in out

    head = out.split("head ")[1].split()[0]
    code, out = run("ledger", "verify", "--expect-head", head)
    assert code == 0
    code, out = run("ledger", "verify", "--expect-head", "00" * 32)
    assert code == 1 and "not in the chain" in out


def test_errors_name_field_rule_value_without_traceback(run, desk: Desk) -> None:
    code, out = run(
        "orders",
        "submit",
        "-a",
        desk.account_id,
        "-s",
        "BTC/USDT",
        "--side",
        "hold",
        "-q",
        "1",
        "-p",
        "100",
    )
    assert code == 1 and "side: must be one of BUY, SELL (value: hold)" in out
    assert "Traceback" not in out
    code, out = run(
        "orders",
        "submit",
        "-a",
        desk.account_id,
        "-s",
        "BTC/USDT",
        "--side",
        "buy",
        "-q",
        "NaN",
        "-p",
        "100",
    )
    assert code == 1 and "quantity" in out and "NaN" in out
    code, out = run("orders", "cancel", "987654")
    assert code == 1 and "order_id: must name an existing order" in out
    code, out = run("ledger", "withdraw", "-a", desk.account_id, "USDT", "99999999")
    assert code == 1 and "withdrawal exceeds" in out


def test_ledger_verify_reports_tampering(run, desk: Desk) -> None:
    with desk.conn.transaction():
        desk.conn.execute("SET LOCAL session_replication_role = replica")
        desk.conn.execute("UPDATE account.transactions SET amount = 1")
    code, out = run("ledger", "verify", "-a", desk.account_id)
    assert code == 1 and "row altered" in out and "2 problem(s)" in out
    assert "account 1 balances: USDT balance is" in out


def test_reference_data_and_reconcile_commands(run, desk: Desk, tmp_path: Path) -> None:
    markets = tmp_path / "markets.json"
    markets.write_text(
        json.dumps(
            {
                "precisionMode": 2,
                "markets": {
                    "SOL/USDT": {
                        "id": "SOLUSDT",
                        "symbol": "SOL/USDT",
                        "base": "SOL",
                        "quote": "USDT",
                        "type": "spot",
                        "active": True,
                        "precision": {"amount": 2, "price": 3},
                        "limits": {"amount": {"min": 0.01}, "cost": {"min": 5}},
                    }
                },
            }
        )
    )
    code, out = run("exchanges", "import-ccxt", "binance", markets)
    assert code == 0 and "1 created" in out, out
    code, out = run("instruments", "list", "-x", "binance")
    assert "SOLUSDT" in out and '"tick_size": "0.001"' in out
    listing = desk.conn.execute(
        "SELECT id FROM market.exchange_instruments WHERE exchange_symbol = 'SOLUSDT'"
    ).fetchone()[0]
    code, out = run(
        "instruments", "set-rules", listing, '{"tick_size": "0.01", "step_size": "0.1"}'
    )
    assert code == 0
    code, out = run("instruments", "rules", listing)
    assert code == 0 and "-infinity" in out and '"tick_size": "0.01"' in out and "manual" in out

    snapshot = tmp_path / "snap.json"
    snapshot.write_text(
        json.dumps({"balance": {"total": {"USDT": 1000001.5}}, "open_orders": [], "trades": []})
    )
    code, out = run("reconcile", "-f", snapshot, "-a", desk.account_id, "--check")
    assert code == 2 and "BALANCE_MISMATCH" in out and "ADJUSTMENT 1.5" in out
    code, out = run("reconcile", "-f", snapshot, "-a", desk.account_id, "--apply")
    assert code == 0 and "1 adjustment(s)" in out
    code, out = run("reconcile", "-f", snapshot, "-a", desk.account_id, "--check")
    assert code == 0 and "books match the exchange" in out
