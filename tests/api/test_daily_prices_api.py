"""GET /market/daily-prices over a KRX stock's ingested daily file: stored and
split-adjusted rows, windows and limits, and the errors that name their field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import bearer, login
from tests.api.world import World
from tradestore.market.daily import ingest_daily_prices
from tradestore.market.reference import upsert_exchange, upsert_instrument

URL = "/api/v1/market/daily-prices"
KRX_FILE = """일자,종목코드,종가,대비,등락률,시가,고가,저가,거래량,거래대금
2024/01/02,005930,"79,600",1300,1.66,"78,200","79,800","78,200","17,142,847","1,356,958,646,400"
2024/01/03,005930,"77,000",-2600,-3.27,"78,500","78,800","77,000","21,753,644","1,690,000,000,000"
2024/01/04,005930,"76,600",-400,-0.52,"76,100","77,300","76,100","15,324,439","1,173,852,027,400"
2024/01/05,005930,"76,600",0,0.00,"76,700","77,100","76,400","11,304,316","865,910,605,600"
"""


@pytest.fixture
def samsung(conn: psycopg.Connection[Any], world: World, tmp_path: Path) -> int:
    """A KRX listing of 005930 with four trading days; returns the instrument id."""
    exchange = upsert_exchange(conn, "krx", "Korea Exchange", kind="EQUITY", timezone="Asia/Seoul")
    stock = upsert_instrument(
        conn, "005930", "Samsung Electronics", asset_class="EQUITY", quote_currency="KRW",
        market_type="KOSPI",
    )  # fmt: skip
    conn.execute(
        "INSERT INTO market.exchange_instruments (exchange_id, instrument_id, exchange_symbol, "
        "preset) VALUES (%s, %s, '005930', 'KRX')",
        (exchange, stock),
    )
    path = tmp_path / "krx.csv"
    path.write_text(KRX_FILE, encoding="utf-8")
    assert ingest_daily_prices(conn, path).written == 4
    return stock


def _get(client: TestClient, h: dict[str, str], **params: Any) -> Any:
    return client.get(URL, params={"symbol": "krx:005930", **params}, headers=h)


def test_daily_prices_as_stored(client: TestClient, samsung: int) -> None:
    h = bearer(login(client, "alice"))
    body = _get(client, h).json()
    assert body["symbol"] == "krx:005930" and body["adjusted"] is False
    first = body["prices"][0]
    assert first == {
        "trade_date": "2024-01-02",
        "open": "78200",
        "high": "79800",
        "low": "78200",
        "close": "79600",
        "volume": "17142847",
        "amount": "1356958646400",
        "changes": "1.66",
        "split_factor": None,
    }
    assert [p["trade_date"] for p in body["prices"]] == [
        "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05",
    ]  # fmt: skip
    # The same listing in another spelling; the newest `limit` days, oldest first.
    assert _get(client, h, symbol="KRX:005930").json()["prices"] == body["prices"]
    newest = _get(client, h, limit=2).json()["prices"]
    assert [p["trade_date"] for p in newest] == ["2024-01-04", "2024-01-05"]
    # Only a start: the first `limit` days from it. start..end: end is exclusive.
    early = _get(client, h, start="2024-01-03", limit=2).json()["prices"]
    assert [p["trade_date"] for p in early] == ["2024-01-03", "2024-01-04"]
    window = _get(client, h, start="2024-01-03", end="2024-01-05").json()["prices"]
    assert [p["close"] for p in window] == ["77000", "76600"]


def test_daily_prices_split_adjusted(
    client: TestClient, samsung: int, conn: psycopg.Connection[Any]
) -> None:
    # A 2-for-1 split applied between the 3rd and the 4th.
    action = conn.execute(
        "INSERT INTO market.corporate_actions (instrument_id, event_time, action_type, details) "
        "VALUES (%s, '2024-01-04 03:00:00+00', 'SPLIT', '{\"ratio\": 2}') RETURNING id",
        (samsung,),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO market.symbol_event_applications (event_kind, event_id, event_type) "
        "VALUES ('CORPORATE_ACTION', %s, 'SPLIT')",
        (action,),
    )
    h = bearer(login(client, "alice"))
    body = _get(client, h, adjusted="true").json()
    assert body["adjusted"] is True
    rows = {p["trade_date"]: p for p in body["prices"]}
    before, after = rows["2024-01-03"], rows["2024-01-04"]
    assert (Decimal(before["close"]), Decimal(before["volume"])) == (38500, 43507288)
    assert (Decimal(before["split_factor"]), Decimal(before["open"])) == (2, 39250)
    assert (before["amount"], before["changes"]) == ("1690000000000", "-3.27")
    assert (Decimal(after["close"]), Decimal(after["split_factor"])) == (76600, 1)
    stored = _get(client, h).json()["prices"]
    assert stored[1]["close"] == "77000"  # the rows stay as recorded


def test_daily_prices_errors(
    client: TestClient, samsung: int, conn: psycopg.Connection[Any]
) -> None:
    h = bearer(login(client, "alice"))
    assert _get(client, h, symbol="krx:999999").status_code == 404
    backwards = _get(client, h, start="2024-01-05", end="2024-01-03")
    assert backwards.status_code == 422 and backwards.json()["error"]["field"] == "end"
    assert _get(client, h, limit=0).status_code == 422
    # Without the symbol_events module there is no split-adjusted view to read.
    conn.execute("DROP VIEW market.daily_prices_split_adjusted")
    off = _get(client, h, adjusted="true")
    assert off.status_code == 422
    error = off.json()["error"]
    assert error["field"] == "adjusted" and "symbol_events" in error["rule"]
    assert len(_get(client, h).json()["prices"]) == 4


def test_daily_prices_need_a_login(client: TestClient, samsung: int) -> None:
    assert client.get(URL, params={"symbol": "krx:005930"}).status_code == 401
