from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tradestore.api.app import create_app
from tradestore.config import load_settings
from tradestore.inbound.config import load_webhook_settings

SECRET = "s3cret-Value_123"

LISTING = """
INSERT INTO market.exchanges (code, name) VALUES ('binance', 'Binance'), ('upbit', 'Upbit');
INSERT INTO market.instruments (symbol, name, asset_class, base_currency, quote_currency)
VALUES ('BTC/USDT', 'Bitcoin', 'CRYPTO', 'BTC', 'USDT'), ('ETH/USDT', 'Ether', 'CRYPTO', 'ETH', 'USDT');
INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, trading_rules) VALUES
  (1, 1, 'BTCUSDT', '{"tick_size": "0.01", "step_size": "0.00001", "min_notional": "5"}'),
  (1, 2, 'ETHUSDT', '{"tick_size": "0.01", "step_size": "0.0001", "min_notional": "5"}');
UPDATE market.exchange_instruments SET status = 'HALTED' WHERE exchange_symbol = 'ETHUSDT';
INSERT INTO account.users (username, email, password_hash) VALUES ('alice', 'alice@example.com', 'x');
INSERT INTO account.accounts (user_id, exchange_id, name, base_currency) VALUES (1, 1, 'main', 'USDT');
-- Orders are funded and held to the owner's risk limits: a funded account, wide limits.
UPDATE account.users SET max_risk_per_trade = 100, max_total_risk = 100, max_positions = 1000;
SELECT post_ledger_entry(1, 'DEPOSIT', 'USDT', 10000000);
INSERT INTO analytics.strategies (user_id, name, strategy_type) VALUES (1, 'sma-cross', 'swing_trading');
"""


def alert(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "secret": SECRET,
        "idempotency_key": "tv-1",
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "account": "main",
        "side": "buy",
        "order_type": "limit",
        "quantity": "0.01",
        "price": "65000.5",
        "strategy": "sma-cross",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def post(client: TestClient, body: Any, **kw: Any):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        "/webhooks/tradingview",
        content=data,
        headers={"content-type": "application/json", **kw.pop("headers", {})},
        **kw,
    )


@pytest.fixture
def market(conn: psycopg.Connection) -> None:
    conn.execute(LISTING)


def make_client(db: str, tmp_path: Path, **webhook: Any) -> TestClient:
    settings = load_settings(
        None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path / "home", DB_POOL_SIZE=2
    )
    # The legacy shared secret, acting for alice only.
    options = {"TRADINGVIEW_WEBHOOK_SECRET": SECRET, "TRADINGVIEW_WEBHOOK_USER": "alice", **webhook}
    return TestClient(
        create_app(settings, conninfo=db, webhook_settings=load_webhook_settings(None, **options))
    )


@pytest.fixture
def client(db: str, market: None, tmp_path: Path) -> Iterator[TestClient]:
    with make_client(db, tmp_path) as c:
        yield c
