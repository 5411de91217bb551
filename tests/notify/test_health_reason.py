"""GET /health names the missing TELEGRAM_BOT_TOKEN when that is why no notify worker runs."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from tradestore.api.app import create_app
from tradestore.config import load_settings
from tradestore.inbound.config import load_webhook_settings


def _client(db: str, tmp_path: Path, **settings: object) -> TestClient:
    app_settings = load_settings(
        None, DATABASE_URL=db, TRADESTORE_HOME=tmp_path, DB_POOL_SIZE=2, **settings
    )
    return TestClient(
        create_app(app_settings, conninfo=db, webhook_settings=load_webhook_settings(None))
    )


def test_health_names_the_missing_bot_token(
    db: str, conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    conn.execute("SELECT enqueue_notification(1, 'WARN', 't', 'm')")
    with _client(db, tmp_path) as client:
        body = client.get("/health").json()
    notify = body["workers"]["notify"]
    assert notify["status"] == "down" and "TELEGRAM_BOT_TOKEN" in notify["reason"]
    assert any("TELEGRAM_BOT_TOKEN" in p for p in body["problems"])
    # With a token the reason is not the token (the worker is simply not running).
    with _client(db, tmp_path / "b", TELEGRAM_BOT_TOKEN="123:abc") as client:
        body = client.get("/health").json()
    assert "reason" not in body["workers"]["notify"]
    assert body["workers"]["notify"]["status"] == "down"
