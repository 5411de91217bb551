"""Symbol events module: splits, dividends, renames, delistings and rule changes, each
applied once and audited, on real PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.trading.desk import Desk, build_desk
from tradestore.db.errors import ValidationError
from tradestore.market import events

UTC = dt.UTC
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def desk(conn: psycopg.Connection[Any]) -> Desk:
    return build_desk(conn)


def spot_fill(desk: Desk, side: str, qty: str, price: str, at: dt.datetime, tid: str) -> None:
    desk.conn.execute(
        "SELECT trade.record_external_fill(%s, %s, %s, %s, %s, %s, 0, NULL, %s, NULL)",
        (desk.account_id, desk.btc, side, tid, Decimal(qty), Decimal(price), at),
    )


def position(desk: Desk) -> tuple[Decimal, Decimal, Decimal]:
    return desk.conn.execute(
        "SELECT quantity, avg_entry_price, realized_pnl FROM trade.positions "
        "WHERE account_id = %s AND exchange_instrument_id = %s",
        (desk.account_id, desk.btc),
    ).fetchone()


def test_split_scales_positions_cancels_orders_adjusts_prices_once(desk: Desk) -> None:
    conn = desk.conn
    spot_fill(desk, "BUY", "3", "300", T0, "B1")
    conn.execute(
        'INSERT INTO market.candles (exchange_instrument_id, timeframe, "time", open, high, low, close, volume) '
        "VALUES (%s, '1m', now() - interval '1 day', 300, 310, 290, 305, 10)",
        (desk.btc,),
    )
    order = conn.execute(
        "SELECT submit_order(%s, %s, 'SELL', 'LIMIT', 1, 400)", (desk.account_id, desk.btc)
    ).fetchone()[0]
    kind, split = events.add_event(conn, desk.btc, "split", dt.datetime.now(UTC), {"ratio": "3"})
    assert kind == "CORPORATE_ACTION"
    app = events.apply_event(conn, kind, split)
    assert position(desk) == (Decimal(9), Decimal(100), Decimal(0))
    assert (
        conn.execute("SELECT status FROM trade.orders WHERE id = %s", (order,)).fetchone()[0]
        == "CANCELED"
    )
    adjusted = conn.execute(
        "SELECT open, close, volume, split_factor FROM market.candles_split_adjusted WHERE exchange_instrument_id = %s",
        (desk.btc,),
    ).fetchone()
    raw = conn.execute(
        "SELECT open, close FROM market.candles WHERE exchange_instrument_id = %s", (desk.btc,)
    ).fetchone()
    assert adjusted[0] == 100 and adjusted[2] == 30 and adjusted[3] == 3
    assert raw == (Decimal(300), Decimal(305))  # stored rows stay as recorded
    # Twice changes nothing and returns the same application.
    assert events.apply_event(conn, kind, split) == app
    assert position(desk) == (Decimal(9), Decimal(100), Decimal(0))
    audit = conn.execute(
        "SELECT event_type, applied_by, result FROM market.symbol_event_applications WHERE id = %s",
        (app,),
    ).fetchone()
    assert audit[0] == "SPLIT" and audit[1]
    listing = audit[2]["listings"][0]
    assert listing["cancelled_orders"] == [order]
    assert (
        listing["positions"][0]["quantity_before"] == 3
        and listing["positions"][0]["quantity_after"] == 9
    )
    # A 1-for-3 reverse split brings it back; prices are divided by the combined factor.
    _, rev = events.add_event(conn, desk.btc, "REVERSE_SPLIT", dt.datetime.now(UTC), {"ratio": 3})
    events.apply_event(conn, "CORPORATE_ACTION", rev)
    assert position(desk) == (Decimal(3), Decimal(300), Decimal(0))
    assert (
        conn.execute(
            "SELECT split_factor FROM market.candles_split_adjusted WHERE exchange_instrument_id = %s",
            (desk.btc,),
        ).fetchone()[0]
        == 1
    )
    listed = events.list_events(conn, desk.btc)
    assert [(e["event_type"], e["application_id"] is not None) for e in listed] == [
        ("SPLIT", True),
        ("REVERSE_SPLIT", True),
    ]


def test_bad_events_are_refused_and_write_nothing(desk: Desk) -> None:
    conn = desk.conn
    with pytest.raises(ValidationError) as err:
        events.add_event(conn, desk.btc, "SPINOFF", T0, {})
    assert err.value.field == "event_type"
    _, bad = events.add_event(conn, desk.btc, "SPLIT", T0, {"ratio": "0"})
    with pytest.raises(ValidationError) as ratio:
        events.apply_event(conn, "CORPORATE_ACTION", bad)
    assert ratio.value.field == "details.ratio"
    assert desk.count("market.symbol_event_applications") == 0
    _, merger = events.add_event(conn, desk.btc, "MERGER", T0, {})
    with pytest.raises(ValidationError) as unsupported:
        events.apply_event(conn, "CORPORATE_ACTION", merger)
    assert unsupported.value.field == "action_type"


def test_rename_keeps_history_under_the_new_symbol(desk: Desk) -> None:
    conn = desk.conn
    spot_fill(desk, "BUY", "1", "100", T0, "R1")
    _, ev = events.add_event(conn, desk.btc, "SYMBOL_RENAMED", T0, {"exchange_symbol": "XBTUSDT"})
    events.apply_event(conn, "SYMBOL_EVENT", ev)
    assert (
        conn.execute("SELECT market.resolve_listing('binance', 'XBTUSDT')").fetchone()[0]
        == desk.btc
    )
    assert (
        conn.execute(
            "SELECT count(*) FROM trade.executions WHERE exchange_instrument_id = %s", (desk.btc,)
        ).fetchone()[0]
        == 1
    )
    _, ca = events.add_event(conn, desk.btc, "SYMBOL_CHANGE", T0, {"new_symbol": "XBT/USDT"})
    app = events.apply_event(conn, "CORPORATE_ACTION", ca)
    assert (
        conn.execute(
            "SELECT i.symbol FROM market.exchange_instruments ei JOIN market.instruments i ON i.id = ei.instrument_id "
            "WHERE ei.id = %s",
            (desk.btc,),
        ).fetchone()[0]
        == "XBT/USDT"
    )
    result = conn.execute(
        "SELECT result FROM market.symbol_event_applications WHERE id = %s", (app,)
    ).fetchone()[0]
    assert result["old_symbol"] == "BTC/USDT"


def test_delisting_cancels_orders_marks_listing_and_alerts(desk: Desk) -> None:
    conn = desk.conn
    order = conn.execute(
        "SELECT submit_order(%s, %s, 'BUY', 'LIMIT', 1, 100)", (desk.account_id, desk.eth)
    ).fetchone()[0]
    _, ev = events.add_event(conn, desk.eth, "SYMBOL_DELISTED", T0, {})
    events.apply_event(conn, "SYMBOL_EVENT", ev)
    events.apply_event(conn, "SYMBOL_EVENT", ev)
    assert (
        conn.execute(
            "SELECT status FROM market.exchange_instruments WHERE id = %s", (desk.eth,)
        ).fetchone()[0]
        == "DELISTED"
    )
    assert (
        conn.execute("SELECT status FROM trade.orders WHERE id = %s", (order,)).fetchone()[0]
        == "CANCELED"
    )
    alerts = conn.execute(
        "SELECT module, data FROM system.alerts WHERE module = 'symbol_events'"
    ).fetchall()
    assert len(alerts) == 1 and alerts[0][1]["cancelled_orders"] == [order]


def test_rule_change_takes_effect_at_its_time(desk: Desk) -> None:
    conn = desk.conn
    at = dt.datetime.now(UTC) - dt.timedelta(hours=1)
    _, ev = events.add_event(
        conn, desk.btc, "LOT_SIZE_CHANGE", at, {"trading_rules": {"step_size": "0.01"}}
    )
    events.apply_event(conn, "SYMBOL_EVENT", ev)
    events.apply_event(conn, "SYMBOL_EVENT", ev)
    before, after = (
        conn.execute("SELECT market.trading_rules_at(%s, %s)", (desk.btc, t)).fetchone()[0]
        for t in (at - dt.timedelta(seconds=1), at)
    )
    assert before["step_size"] == "0.0001" and after["step_size"] == "0.01"
    assert after["tick_size"] == before["tick_size"]  # other keys kept
    assert (
        conn.execute(
            "SELECT count(*) FROM market.trading_rule_versions WHERE exchange_instrument_id = %s AND source = 'symbol_event'",
            (desk.btc,),
        ).fetchone()[0]
        == 1
    )


def test_dividend_pays_holders_at_the_record_date_once(desk: Desk) -> None:
    conn = desk.conn
    spot_fill(desk, "BUY", "4", "100", T0, "D1")
    spot_fill(desk, "BUY", "6", "100", T0 + dt.timedelta(days=5), "D2")  # after the record date
    _, ev = events.add_event(
        conn,
        desk.btc,
        "DIVIDEND",
        T0 + dt.timedelta(days=1),
        {"amount_per_share": "0.5", "currency": "USDT"},
    )
    events.apply_event(conn, "CORPORATE_ACTION", ev)
    events.apply_event(conn, "CORPORATE_ACTION", ev)
    rows = conn.execute(
        "SELECT amount, currency FROM account.transactions WHERE transaction_type = 'DIVIDEND'"
    ).fetchall()
    assert rows == [(Decimal(2), "USDT")]


def test_cli_events_and_settlement_ingest(
    desk: Desk, db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tradestore.cli.main import app
    from tradestore.config import get_settings

    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.setenv("TRADESTORE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    run = CliRunner()
    try:
        spot_fill(desk, "BUY", "2", "100", T0, "C1")
        added = run.invoke(
            app,
            ["events", "add", "SPLIT", "-x", "binance", "-s", "BTCUSDT", "--at", "2024-03-02T00:00:00Z",
             "-d", '{"ratio": 2}', "--apply"],
        )  # fmt: skip
        assert added.exit_code == 0, added.output
        assert "applied" in added.output and position(desk)[0] == 4
        again = run.invoke(app, ["events", "apply", "CORPORATE_ACTION", added.output.split()[1]])
        assert again.exit_code == 0 and position(desk)[0] == 4
        listed = run.invoke(app, ["events", "list", "-x", "binance", "-s", "BTCUSDT"])
        assert "SPLIT" in listed.output and "applied" in listed.output
        bad = run.invoke(
            app, ["events", "add", "SPLIT", "-x", "binance", "-s", "BTCUSDT", "--at", "x"]
        )
        assert bad.exit_code == 1
        perp_fill = (
            "SELECT trade.record_external_fill(%s, %s, 'BUY', 'P1', 1, 100, 0, NULL, %s, NULL)"
        )
        desk.conn.execute(perp_fill, (desk.account_id, desk.perp, T0))
        (tmp_path / "f.csv").write_text("funding_time,funding_rate\n2024-03-01T08:00:00Z,0.001\n")
        (tmp_path / "m.csv").write_text("time,open\n2024-03-01T08:00:00Z,200\n")
        (tmp_path / "fx.csv").write_text(
            "ts,base_ccy,quote_ccy,rate\n2024-03-01T00:00:00Z,USD,KRW,1350\n"
        )
        listing = ["-x", "binance", "-s", "BTCUSDT_PERP"]
        out = run.invoke(app, ["ingest", "funding-rates", str(tmp_path / "f.csv"), *listing])
        assert out.exit_code == 0 and "1 inserted" in out.output, out.output
        out = run.invoke(
            app, ["ingest", "mark-prices", str(tmp_path / "m.csv"), *listing, "--settle"]
        )
        assert out.exit_code == 0 and "1 payments booked" in out.output, out.output
        out = run.invoke(app, ["ingest", "fx-rates", str(tmp_path / "fx.csv")])
        assert out.exit_code == 0 and "1 inserted" in out.output, out.output
        assert desk.conn.execute(
            "SELECT amount FROM account.transactions WHERE transaction_type = 'FUNDING_FEE'"
        ).fetchall() == [(Decimal("-0.2"),)]
    finally:
        get_settings.cache_clear()
