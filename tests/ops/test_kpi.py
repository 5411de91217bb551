"""KPI snapshots (seed 001 §5.4): each figure from real orders, fills and positions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg

from tests.trading.desk import build_desk
from tradestore.trading import orders
from tradestore.trading.fills import apply_fill


def test_kpi_snapshot_measures_the_desk(conn: psycopg.Connection) -> None:
    desk = build_desk(conn)
    desk.set_price(desk.btc, "50000")
    a = orders.submit_order(conn, desk.account_id, desk.btc, "BUY", "LIMIT", Decimal("0.1"), Decimal("50000"),
                            idempotency_key="k-a")  # fmt: skip
    b = orders.submit_order(conn, desk.account_id, desk.btc, "BUY", "LIMIT", Decimal("0.1"), Decimal("50000"),
                            idempotency_key="k-b")  # fmt: skip
    for order_id, trade_id, delay in ((a, "t1", 200), (b, "t2", 400)):
        created = conn.execute(
            "SELECT created_at FROM trade.orders WHERE id = %s", (order_id,)
        ).fetchone()[0]
        apply_fill(conn, order_id, trade_id, Decimal("0.1"), Decimal("50000"),
                   executed_at=created + dt.timedelta(milliseconds=delay))  # fmt: skip
    orders.cancel_order(conn, orders.submit_order(conn, desk.account_id, desk.btc, "BUY", "LIMIT",
                                                  Decimal("0.1"), Decimal("40000"), idempotency_key="k-c"))  # fmt: skip
    # Re-submitted after the cancel with the same key: a retry.
    orders.submit_order(conn, desk.account_id, desk.btc, "BUY", "LIMIT", Decimal("0.1"), Decimal("40000"),
                        idempotency_key="k-c")  # fmt: skip

    snap = conn.execute(
        "SELECT order_latency_p50_ms, order_latency_p95_ms, order_failure_rate, order_retry_rate, "
        "position_gross_exposure_usd, open_positions_count FROM system.take_kpi_snapshot()"
    ).fetchone()
    p50, p95, failure, retry, exposure, open_positions = snap
    assert (p50, p95) == (300, 390)  # first-fill latencies 200 ms and 400 ms
    assert failure == Decimal("0") and retry == Decimal("0.25")
    assert exposure == Decimal("10000") and open_positions == 1  # 0.2 BTC at 50,000 USDT
    # Seed 001 §9-D reads it back.
    assert conn.execute(
        "SELECT open_positions_count FROM ops_kpi_snapshots ORDER BY ts DESC LIMIT 1"
    ).fetchone() == (1,)
