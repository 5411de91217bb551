"""Reconciliation against a CCXT-shaped exchange snapshot."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from tests.trading.desk import Desk
from tradestore.trading import (
    apply_fill,
    asset_balances,
    get_order,
    load_snapshot,
    reconcile,
    submit_order,
    verify,
)


def snapshot_json(desk: Desk, ours: int) -> dict:
    """What CCXT returns: fetch_balance, fetch_open_orders, fetch_my_trades."""
    return {
        "timestamp": 1714000000000,
        "balance": {
            "info": {},
            # 1_000_000 - 2 x 5000 (our order) - 3100.31 (manual buy, fee 0.31) + 1.5 airdrop
            "USDT": {"free": 986901.19, "used": 0, "total": 986901.19},
            "BTC": {"free": 0.2, "used": 0, "total": 0.2},
            "ETH": {"free": 1.0, "used": 0, "total": 1.0},
            "free": {"USDT": 986901.19, "BTC": 0.2, "ETH": 1.0},
            "used": {"USDT": 0, "BTC": 0, "ETH": 0},
            "total": {"USDT": 986901.19, "BTC": 0.2, "ETH": 1.0},
        },
        "open_orders": [
            {
                "id": "X-777",
                "clientOrderId": None,
                "symbol": "ETH/USDT",
                "side": "sell",
                "type": "limit",
                "price": 4000,
                "amount": 1,
                "filled": 0,
                "remaining": 1,
                "status": "open",
            },
        ],
        "trades": [
            {
                "id": "T-1",
                "order": "X-1",
                "symbol": "BTC/USDT",
                "side": "buy",
                "amount": 0.1,
                "price": 50000,
                "cost": 5000,
                "fee": {"cost": 0, "currency": "USDT"},
                "timestamp": 1713990000000,
                "datetime": "2024-04-24T20:20:00.000Z",
            },
            {
                "id": "T-2",
                "order": "X-1",
                "symbol": "BTC/USDT",
                "side": "buy",
                "amount": 0.1,
                "price": 50000,
                "cost": 5000,
                "fee": {"cost": 0, "currency": "USDT"},
                "timestamp": 1713990060000,
                "datetime": "2024-04-24T20:21:00.000Z",
            },
            {
                "id": "T-3",
                "order": "M-9",
                "symbol": "ETH/USDT",
                "side": "buy",
                "amount": 1.0,
                "price": 3100,
                "cost": 3100,
                "fee": {"cost": 0.31, "currency": "USDT"},
                "timestamp": 1713990120000,
                "datetime": "2024-04-24T20:22:00.000Z",
            },
        ],
    }


def test_report_then_apply(desk: Desk, tmp_path: Path) -> None:
    conn, account = desk.conn, desk.account_id
    ours = submit_order(
        conn, account, desk.btc, "BUY", "LIMIT", "0.2", 50000, client_order_id="mine-1"
    )
    conn.execute("UPDATE trade.orders SET exchange_order_id = 'X-1' WHERE id = %s", (ours,))
    apply_fill(conn, ours, "T-1", "0.1", 50000)  # T-2 was missed by our fill feed
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshot_json(desk, ours)))
    snapshot = load_snapshot(path)
    assert snapshot.balances["USDT"] == Decimal("986901.19")  # exact, not a binary float

    counts = [desk.count(t) for t in ("trade.orders", "trade.executions", "account.transactions")]
    report = reconcile(conn, account, snapshot)
    assert [
        desk.count(t) for t in ("trade.orders", "trade.executions", "account.transactions")
    ] == counts
    kinds = sorted((d.kind, d.key) for d in report.differences)
    assert kinds == sorted(
        [
            ("MISSING_FILL", "T-2"),
            ("MISSING_FILL", "T-3"),
            ("UNKNOWN_OPEN_ORDER", "X-777"),
            ("BALANCE_MISMATCH", "BTC"),
            ("BALANCE_MISMATCH", "ETH"),
            ("BALANCE_MISMATCH", "USDT"),
            # Still partly filled in the books, done on the exchange (T-2 completes it).
            ("NOT_OPEN_ON_EXCHANGE", str(ours)),
        ]
    )
    by_key = {d.key: d for d in report.differences}
    assert "order" in (by_key["T-2"].action or "") and "EXTERNAL" in (by_key["T-3"].action or "")
    assert by_key["USDT"].action == "ADJUSTMENT 1.5"  # the airdrop no fill explains
    assert by_key["BTC"].action and "settled by the fills" in by_key["BTC"].action
    assert not report.recorded_executions and not report.adjustments

    rows_before = conn.execute(
        "SELECT id, amount, row_hash FROM account.transactions ORDER BY id"
    ).fetchall()
    applied = reconcile(conn, account, snapshot, apply=True)
    assert len(applied.recorded_executions) == 2 and len(applied.adjustments) == 1
    # Existing ledger rows untouched; new ones appended.
    rows_after = conn.execute(
        "SELECT id, amount, row_hash FROM account.transactions ORDER BY id"
    ).fetchall()
    assert rows_after[: len(rows_before)] == rows_before
    assert get_order(conn, ours).status == "FILLED"
    external = conn.execute(
        "SELECT side, quantity, status, exchange_order_id FROM trade.orders WHERE source = 'EXTERNAL'"
    ).fetchall()
    assert external == [("BUY", 1, "FILLED", "M-9")]
    held = {b.currency: b.total for b in asset_balances(conn, account)}
    assert held == {"USDT": Decimal("986901.19"), "BTC": Decimal("0.2"), "ETH": Decimal("1.0")}
    assert verify(conn).ok

    # Books now match: only the unknown open order remains, and a second apply adds nothing.
    again = reconcile(conn, account, snapshot, apply=True)
    assert [d.kind for d in again.differences] == ["UNKNOWN_OPEN_ORDER"]
    assert desk.count("account.transactions") == len(rows_after)


def test_stale_open_order_and_unknown_symbol(desk: Desk) -> None:
    from tradestore.trading import parse_snapshot

    order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
    snapshot = parse_snapshot(
        {
            "balance": {"total": {"USDT": 1_000_000}},
            "trades": [{"id": "Z", "symbol": "DOGE/USDT", "side": "buy", "amount": 1, "price": 1}],
        }
    )
    report = reconcile(desk.conn, desk.account_id, snapshot)
    assert sorted((d.kind, d.key) for d in report.differences) == [
        ("NOT_OPEN_ON_EXCHANGE", str(order)),
        ("UNKNOWN_SYMBOL", "Z"),
    ]
