"""KPI snapshots (seed 001 §5.4): each figure from real orders, fills and positions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from tests.trading.desk import build_desk
from tradestore.cli.main import app
from tradestore.config import get_settings
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


COLUMNS = (
    "order_latency_p50_ms, order_latency_p95_ms, order_failure_rate, order_retry_rate, "
    "position_gross_exposure_usd, open_positions_count, outbox_backlog, "
    "reconciliation_drift_count, data_lag_seconds"
)


def test_a_second_snapshot_in_one_transaction_replaces_every_figure(
    conn: psycopg.Connection,
) -> None:
    desk = build_desk(conn)
    desk.set_price(desk.btc, "50000")
    with conn.transaction():  # one transaction: both snapshots share now(), so one row
        first = conn.execute(f"SELECT ts, {COLUMNS} FROM system.take_kpi_snapshot()").fetchone()
        assert first[1:] == (None, None, None, None, None, 0, 0, 0, None)  # nothing yet
        order = orders.submit_order(conn, desk.account_id, desk.btc, "BUY", "LIMIT",
                                    Decimal("0.1"), Decimal("50000"), idempotency_key="k")  # fmt: skip
        created = conn.execute(
            "SELECT created_at FROM trade.orders WHERE id = %s", (order,)
        ).fetchone()[0]
        apply_fill(conn, order, "t1", Decimal("0.1"), Decimal("50000"),
                   executed_at=created + dt.timedelta(milliseconds=250))  # fmt: skip
        conn.execute(
            "INSERT INTO system.notification_outbox (chat_id, severity, title, message) "
            "VALUES (1, 'INFO', 't', 'm')"
        )
        conn.execute(
            "SELECT public.post_ledger_entry(%s, 'ADJUSTMENT', 'USDT', 5, "
            "'reconciliation: exchange reports 5, books had 0')",
            (desk.account_id,),
        )
        conn.execute(
            """INSERT INTO market.candles (exchange_instrument_id, timeframe, "time", open, high,
                                           low, close, volume)
               VALUES (%s, '1m', date_trunc('minute', now()) - interval '10 minutes',
                       1, 1, 1, 1, 1)""",
            (desk.eth,),
        )
        expected_lag = conn.execute(
            "SELECT round(extract(epoch FROM "
            "now() - (date_trunc('minute', now()) - interval '10 minutes')))"
        ).fetchone()[0]
        second = conn.execute(f"SELECT ts, {COLUMNS} FROM system.take_kpi_snapshot()").fetchone()
        assert second[0] == first[0]
    stored = conn.execute(
        f"SELECT ts, {COLUMNS} FROM system.ops_kpi_snapshots WHERE ts = %s", (first[0],)
    ).fetchone()
    assert stored == second
    assert second[1:] == (250, 250, Decimal("0"), Decimal("0"), Decimal("5000"), 1, 1, 1,
                          expected_lag)  # fmt: skip
    assert conn.execute("SELECT count(*) FROM system.ops_kpi_snapshots").fetchone()[0] == 1


def _alerts(conn: psycopg.Connection, kpi: str) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT severity, data->>'event' FROM system.alerts "
        "WHERE module = 'kpi' AND data->>'kpi' = %s ORDER BY alert_id",
        (kpi,),
    ).fetchall()


def test_a_breached_threshold_alerts_once_through_the_outbox_and_once_when_cleared(
    conn: psycopg.Connection,
) -> None:
    conn.execute(
        "INSERT INTO system.telegram_chats (chat_id, min_severity) VALUES (777, 'INFO')"
    )  # the system chat: admins' alerts go there
    conn.execute("SELECT system.set_kpi_threshold('outbox_backlog', 3, 1, 'CRITICAL')")
    for _ in range(4):
        conn.execute(
            "INSERT INTO system.notification_outbox (chat_id, severity, title, message) "
            "VALUES (1, 'INFO', 't', 'm')"
        )
    snap = conn.execute("SELECT outbox_backlog FROM system.take_kpi_snapshot()").fetchone()
    assert snap == (4,)
    assert _alerts(conn, "outbox_backlog") == [("CRITICAL", "raised")]
    queued = conn.execute(
        "SELECT severity::text, title FROM system.notification_outbox WHERE chat_id = 777"
    ).fetchall()
    assert queued == [("CRITICAL", "[CRITICAL] kpi")]

    # Still breached (the alert's own message adds to the backlog): no second alert.
    assert conn.execute("SELECT outbox_backlog FROM system.take_kpi_snapshot()").fetchone() == (5,)
    # Between the levels (1 < 2 <= 3): still the same alarm, still no alert.
    conn.execute(
        "UPDATE system.notification_outbox SET status = 'SENT', sent_at = now() "
        "WHERE id IN (SELECT id FROM system.notification_outbox ORDER BY id LIMIT 3)"
    )
    assert conn.execute("SELECT outbox_backlog FROM system.take_kpi_snapshot()").fetchone() == (2,)
    assert _alerts(conn, "outbox_backlog") == [("CRITICAL", "raised")]
    assert conn.execute(
        "SELECT last_value FROM system.ops_alert_state WHERE condition = 'kpi:outbox_backlog'"
    ).fetchone() == (Decimal("2"),)

    conn.execute("UPDATE system.notification_outbox SET status = 'SENT', sent_at = now()")
    assert conn.execute("SELECT outbox_backlog FROM system.take_kpi_snapshot()").fetchone() == (0,)
    assert _alerts(conn, "outbox_backlog") == [("CRITICAL", "raised"), ("LOW", "cleared")]
    assert conn.execute("SELECT count(*) FROM system.ops_alert_state").fetchone() == (0,)


def test_reconciliation_drift_and_data_lag_raise_with_the_built_in_levels(
    conn: psycopg.Connection,
) -> None:
    desk = build_desk(conn)
    conn.execute(
        "SELECT public.post_ledger_entry(%s, 'ADJUSTMENT', 'USDT', 5, "
        "'reconciliation: exchange reports 5, books had 0')",
        (desk.account_id,),
    )
    conn.execute(
        """INSERT INTO market.candles (exchange_instrument_id, timeframe, "time", open, high, low,
                                       close, volume)
           VALUES (%s, '1m', date_trunc('minute', now()) - interval '1 hour', 1, 1, 1, 1, 1)""",
        (desk.eth,),
    )
    drift, lag, expected_lag = conn.execute(
        "SELECT s.reconciliation_drift_count, s.data_lag_seconds, "
        "round(extract(epoch FROM now() - (date_trunc('minute', now()) - interval '1 hour'))) "
        "FROM system.take_kpi_snapshot() s"
    ).fetchone()
    assert drift == 1 and lag == expected_lag and lag >= 3600
    assert _alerts(conn, "reconciliation_drift_count") == [("HIGH", "raised")]
    assert _alerts(conn, "data_lag_seconds") == [("HIGH", "raised")]
    # A disabled alarm clears.
    conn.execute("SELECT system.set_kpi_threshold('data_lag_seconds', 900, 300, 'HIGH', false)")
    conn.execute("SELECT system.take_kpi_snapshot()")
    assert _alerts(conn, "data_lag_seconds") == [("HIGH", "raised"), ("LOW", "cleared")]


def test_thresholds_are_checked_with_errors_naming_the_field(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=r"kpi: must be one of .*data_lag"):
        conn.execute("SELECT system.set_kpi_threshold('latency', 5)")
    with pytest.raises(psycopg.errors.CheckViolation, match=r"clear_at: must be between 0 and"):
        conn.execute("SELECT system.set_kpi_threshold('outbox_backlog', 5, 6)")
    assert conn.execute(
        "SELECT raise_above, clear_at, customized FROM system.kpi_thresholds "
        "WHERE kpi = 'outbox_backlog'"
    ).fetchone() == (Decimal("100"), Decimal("20"), False)


def test_cli_sets_and_lists_thresholds(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "300")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        done = runner.invoke(app, ["ops", "kpi", "thresholds", "set", "data_lag_seconds",
                                   "--above", "600", "--clear-at", "120", "--severity", "critical"])  # fmt: skip
        assert done.exit_code == 0, done.output
        bad = runner.invoke(app, ["ops", "kpi", "thresholds", "set", "nope", "--above", "1"])
        assert bad.exit_code != 0 and "kpi: must be one of" in bad.output
        listed = runner.invoke(app, ["ops", "kpi", "thresholds", "list"])
        assert listed.exit_code == 0
        [line] = [ln for ln in listed.output.splitlines() if "data_lag_seconds" in ln]
        assert "600" in line and "120" in line and "CRITICAL" in line and "True" in line
    finally:
        get_settings.cache_clear()
    with psycopg.connect(db) as conn:
        assert conn.execute(
            "SELECT raise_above, clear_at, severity FROM system.ops_kpi_thresholds"
        ).fetchall() == [(Decimal("600"), Decimal("120"), "CRITICAL")]
