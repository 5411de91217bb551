"""One listing answers to every spelling of its symbol (market.resolve_listing) in the
REST API, and a timeframe the stored bars cannot serve is a 422 naming what they can."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import bearer, login, make_client
from tests.api.world import World, build_world
from tests.market.helpers import bars
from tests.support.redis_fixtures import own_redis, redis_cache, redis_server  # noqa: F401
from tradestore.cache.client import Cache
from tradestore.market.ingest import ingest_candles

API = "/api/v1/market"


@pytest.fixture
def client(
    db: str,
    conn: psycopg.Connection[Any],
    tmp_path: Path,
    redis_cache: Cache,  # noqa: F811  (the fixture imported above)
) -> Iterator[tuple[TestClient, World]]:
    world = build_world(conn)  # binance, BTC/USDT listed as BTCUSDT, 1m bars
    # ETH/USDT the way the README makes it: `ingest candles -x binance -s ETH/USDT -t 5m`.
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    ingest_candles(
        conn,
        bars(48, start=start, step=dt.timedelta(minutes=5)),
        exchange="binance",
        symbol="ETH/USDT",
        timeframe="5m",
    )
    with make_client(db, tmp_path, redis_cache) as c:
        yield c, world


def test_every_spelling_names_the_same_listing(client: tuple[TestClient, World]) -> None:
    c, _ = client
    h = bearer(login(c, "alice"))
    answers = []
    for spelling in ("binance:ETH/USDT", "binance:ETHUSDT", "BINANCE:ETHUSDT", "binance:ethusdt"):
        got = c.get(f"{API}/candles", params={"symbol": spelling, "timeframe": "1h"}, headers=h)
        assert got.status_code == 200, (spelling, got.text)
        answers.append([bar["close"] for bar in got.json()["candles"]])
    assert len(answers[0]) == 4 and all(a == answers[0] for a in answers)
    # The documented binance:BTCUSDT, and its global symbol, for a listing made in SQL.
    for spelling in ("binance:BTCUSDT", "binance:BTC/USDT", "BINANCE:btcusdt"):
        got = c.get(f"{API}/latest", params={"symbol": spelling}, headers=h)
        assert got.status_code == 200, (spelling, got.text)
        assert got.json()["symbol"] == "binance:BTCUSDT"
    assert c.get(f"{API}/latest", params={"symbol": "binance:BTCUSD"}, headers=h).status_code == 404


def test_a_timeframe_the_bars_cannot_serve_is_422(client: tuple[TestClient, World]) -> None:
    c, _ = client
    h = bearer(login(c, "alice"))
    for path in ("candles", "indicators"):
        for timeframe in ("7m", "1m", "12m"):
            got = c.get(
                f"{API}/{path}",
                params={"symbol": "binance:ETHUSDT", "timeframe": timeframe},
                headers=h,
            )
            assert got.status_code == 422, (path, timeframe, got.text)
            error = got.json()["error"]
            assert error["field"] == "timeframe" and error["value"] == timeframe
            assert "must be a whole multiple of the stored 5m bars" in error["rule"]
    for timeframe in ("5m", "10m", "15m", "4h"):
        got = c.get(
            f"{API}/candles",
            params={"symbol": "binance:ETHUSDT", "timeframe": timeframe},
            headers=h,
        )
        assert got.status_code == 200 and got.json()["candles"], (timeframe, got.text)
    # 1m data serves 7m.
    odd = c.get(
        f"{API}/candles", params={"symbol": "binance:BTCUSDT", "timeframe": "7m"}, headers=h
    )
    assert odd.status_code == 200 and odd.json()["candles"]
