"""POST /webhooks/tradingview against a real database (seed 001 §5.7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.inbound.conftest import SECRET, alert, make_client, post
from tradestore.inbound.tradingview import payload_hash, redact_secret


def _row(conn: psycopg.Connection, alert_id: int) -> dict[str, Any]:
    cur = conn.execute(
        "SELECT disposition, parsed, error, order_id, dedupe_key, raw_body, payload, host(remote_addr) AS remote_addr, "
        "processed_at IS NOT NULL AS processed FROM system.inbound_alerts WHERE id = %s",
        (alert_id,),
    )
    names = [d.name for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def _orders(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT side, order_type, quantity, price, idempotency_key, source, strategy_id, client_order_id "
        "FROM trade.orders ORDER BY id"
    ).fetchall()


def test_valid_alert_creates_an_order_with_the_alert_key(
    client: TestClient, conn: psycopg.Connection
) -> None:
    response = post(client, alert())
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "accepted" and body["idempotency_key"] == "tv-1"
    assert response.headers["x-request-id"]
    row = _row(conn, body["alert_id"])
    assert (row["disposition"], row["parsed"], row["error"], row["processed"]) == (
        "ACCEPTED",
        True,
        None,
        True,
    )
    from decimal import Decimal

    assert _orders(conn) == [
        (
            "BUY",
            "LIMIT",
            Decimal("0.01"),
            Decimal("65000.50"),
            "tv-1",
            "WEBHOOK",
            1,
            f"tv-{body['alert_id']}",
        )
    ]
    assert conn.execute("SELECT id FROM trade.orders").fetchone()[0] == row["order_id"]
    assert conn.execute(
        "SELECT processed FROM system.inbound_dedupe_keys WHERE idempotency_key = 'tv-1'"
    ).fetchone() == (True,)
    # the user hears about it (a TRADE_SIGNAL alert, routed like any other)
    assert conn.execute("SELECT alert_type, module FROM system.alerts").fetchall() == [
        ("TRADE_SIGNAL", "inbound")
    ]


def test_secret_never_reaches_the_database(client: TestClient, conn: psycopg.Connection) -> None:
    body = post(client, alert()).json()
    row = _row(conn, body["alert_id"])
    assert SECRET.encode() not in bytes(row["raw_body"])
    assert b'"secret": "[redacted]"' in bytes(row["raw_body"])
    assert row["payload"]["secret"] == "[redacted]"
    assert row["payload"]["idempotency_key"] == "tv-1"


def test_same_key_same_payload_is_a_duplicate_without_a_second_order(
    client: TestClient, conn: psycopg.Connection
) -> None:
    first = post(client, alert()).json()
    # formatting and key order do not matter: the payload hash is canonical
    reformatted = json.dumps(dict(reversed(list(alert().items()))), indent=2).encode()
    again = post(client, reformatted)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["original"]["alert_id"] == first["alert_id"]
    assert len(_orders(conn)) == 1
    assert _row(conn, again.json()["alert_id"])["disposition"] == "DUPLICATE"


def test_same_key_different_payload_is_held_for_review(
    client: TestClient, conn: psycopg.Connection
) -> None:
    post(client, alert())
    response = post(client, alert(quantity="0.02"))
    assert response.status_code == 409
    row = _row(conn, response.json()["alert_id"])
    assert row["disposition"] == "CONFLICT" and "held for review" in row["error"]
    assert len(_orders(conn)) == 1
    assert conn.execute(
        "SELECT count(*) FROM system.alerts WHERE severity = 'HIGH' AND module = 'inbound'"
    ).fetchone() == (1,)


def test_wrong_or_missing_secret_is_rejected_and_kept(
    client: TestClient, conn: psycopg.Connection
) -> None:
    for body in (alert(secret="nope"), alert(secret=None), alert(secret=12345)):
        response = post(client, body)
        assert response.status_code == 401
        row = _row(conn, response.json()["alert_id"])
        assert row["disposition"] == "REJECTED" and row["dedupe_key"] is None
    assert _orders(conn) == []
    # an unauthenticated request never touches the dedupe store
    assert conn.execute("SELECT count(*) FROM system.inbound_dedupe_keys").fetchone() == (0,)


def test_body_that_is_not_json_is_stored_raw(client: TestClient, conn: psycopg.Connection) -> None:
    raw = b"BTCUSDT crossed 65000 \xff\xfe not json"
    response = post(client, raw, headers={"content-type": "text/plain"})
    assert response.status_code == 400
    row = _row(conn, response.json()["alert_id"])
    assert bytes(row["raw_body"]) == raw
    assert row["disposition"] == "INVALID" and "UTF-8" in row["error"]
    assert isinstance(row["payload"], str)


def test_schema_errors_name_field_rule_and_value(
    client: TestClient, conn: psycopg.Connection
) -> None:
    response = post(client, alert(side="hold", quantity="-1"))
    assert response.status_code == 422
    errors = {e["field"]: e for e in response.json()["errors"]}
    assert errors["side"]["value"] == "HOLD"
    assert errors["quantity"]["value"] == "-1" and "greater than 0" in errors["quantity"]["rule"]
    row = _row(conn, response.json()["alert_id"])
    assert row["disposition"] == "INVALID" and row["dedupe_key"] == "tv-1"
    # an invalid alert does not burn its key: the corrected one goes through
    assert post(client, alert()).status_code == 202


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"symbol": "DOGEUSDT"}, "symbol", "must be listed on binance"),
        ({"symbol": "ETHUSDT"}, "symbol", "listing is HALTED, not TRADING"),
        ({"account": "nobody"}, "account", "must name one of your accounts"),
        ({"strategy": "unknown"}, "strategy", "must name one of your strategies"),
        ({"exchange": "upbit"}, "exchange", "must be the account's exchange (binance)"),
    ],
)
def test_unknown_names_are_refused(
    client: TestClient, conn: psycopg.Connection, overrides: dict[str, Any], field: str, rule: str
) -> None:
    response = post(client, alert(**overrides))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert (error["field"], error["rule"]) == (field, rule)


def test_tradingview_ticker_prefix_and_account_id(
    client: TestClient, conn: psycopg.Connection
) -> None:
    response = post(
        client, alert(exchange=None, symbol="BINANCE:BTCUSDT", account=1, strategy=None)
    )
    assert response.status_code == 202, response.text
    assert len(_orders(conn)) == 1


@pytest.mark.parametrize("symbol", ["BTC/USDT", "btcusdt", "BINANCE:BTC/USDT"])
def test_every_spelling_of_the_symbol_finds_the_listing(
    client: TestClient, conn: psycopg.Connection, symbol: str
) -> None:
    response = post(client, alert(exchange=None, symbol=symbol, account=1, strategy=None))
    assert response.status_code == 202, response.text
    assert len(_orders(conn)) == 1


def test_notional_becomes_a_quantity_at_the_price(
    client: TestClient, conn: psycopg.Connection
) -> None:
    from decimal import Decimal

    # A spot BUY at market is funded at the latest price known (plus slippage and fee).
    conn.execute(
        "INSERT INTO market.daily_prices (stock_id, trade_date, close_price, volume) "
        "VALUES (1, current_date, 65000, 0)"
    )
    response = post(
        client, alert(quantity=None, notional="100", order_type="market", price="65000")
    )
    assert response.status_code == 202
    [(side, kind, quantity, price, *_)] = _orders(conn)
    assert (side, kind, price) == ("BUY", "MARKET", None)
    assert quantity == Decimal("0.00153")  # 100 / 65000, rounded down to the step size


def test_order_refused_by_the_trading_core_sets_error(
    client: TestClient, conn: psycopg.Connection
) -> None:
    # 0.00001 BTC x 65000 = 0.65 USDT, below the listing's min_notional of 5
    response = post(client, alert(quantity="0.00001"))
    assert response.status_code == 202
    row = _row(conn, response.json()["alert_id"])
    assert (row["disposition"], row["parsed"], row["order_id"]) == ("ERROR", False, None)
    assert "min notional" in row["error"]
    assert conn.execute(
        "SELECT severity FROM system.alerts WHERE module = 'inbound'"
    ).fetchone() == ("HIGH",)
    # a replay is a duplicate of the failed alert: no second attempt
    again = post(client, alert(quantity="0.00001"))
    assert again.status_code == 200 and again.json()["original"]["status"] == "error"


def test_oversized_body_is_refused_and_its_head_kept(
    db: str, market: None, conn: psycopg.Connection, tmp_path: Path
) -> None:
    with make_client(db, tmp_path, WEBHOOK_MAX_BODY_BYTES=1024) as client:
        body = json.dumps(alert(comment="x" * 5000)).encode()
        response = post(client, body)
    assert response.status_code == 413
    row = _row(conn, response.json()["alert_id"])
    assert row["disposition"] == "INVALID"
    assert bytes(row["raw_body"]) == redact_secret(body[:1024])


def test_ip_allowlist(db: str, market: None, conn: psycopg.Connection, tmp_path: Path) -> None:
    with make_client(db, tmp_path, WEBHOOK_IP_ALLOWLIST="tradingview") as client:
        # TestClient's peer is not one of TradingView's addresses
        response = post(client, alert())
    assert response.status_code == 403
    assert _row(conn, response.json()["alert_id"])["disposition"] == "REJECTED"
    with make_client(db, tmp_path, WEBHOOK_IP_ALLOWLIST="tradingview, 127.0.0.0/8") as client:
        transport_client = TestClient(client.app, client=("127.0.0.1", 50000))
        with transport_client:
            response = post(transport_client, alert(idempotency_key="tv-2"))
    assert response.status_code == 202
    assert _row(conn, response.json()["alert_id"])["remote_addr"] == "127.0.0.1"


def test_legacy_secret_without_its_user_is_ignored(
    db: str, market: None, conn: psycopg.Connection, tmp_path: Path
) -> None:
    with make_client(db, tmp_path, TRADINGVIEW_WEBHOOK_USER=None) as client:
        response = post(client, alert())
    assert response.status_code == 401
    assert _row(conn, response.json()["alert_id"])["disposition"] == "REJECTED"
    assert _orders(conn) == []


def test_module_disabled_means_503(db: str, market: None, tmp_path: Path) -> None:
    from tradestore.db import migrate

    migrate.disable_modules(db, ["dedupe"])
    with make_client(db, tmp_path) as client:
        response = post(client, alert())
    assert response.status_code == 503
    assert "tradestore modules enable dedupe" in response.json()["detail"]


def test_accepted_alert_left_unprocessed_is_recovered_at_start(
    db: str, market: None, conn: psycopg.Connection, tmp_path: Path
) -> None:
    # As if the server died between the reply and the order: ACCEPTED, not processed.
    payload = alert()
    conn.execute(
        "SELECT public.idem_seen_status('tv-1', %s, 'tradingview', 1)", (payload_hash(payload),)
    )
    alert_id = conn.execute(
        "INSERT INTO system.inbound_alerts (payload, raw_body, dedupe_key, disposition, user_id) "
        "VALUES (%s::jsonb, %s, 'tv-1', 'ACCEPTED', 1) RETURNING id",
        (json.dumps(payload), json.dumps(payload).encode()),
    ).fetchone()[0]
    with make_client(db, tmp_path) as client:
        from tests.notify.conftest import wait_until

        wait_until(lambda: _row(conn, alert_id)["processed"], what="recovered alert")
        assert client.get("/health").status_code == 200
    assert _row(conn, alert_id)["parsed"] is True
    assert len(_orders(conn)) == 1
