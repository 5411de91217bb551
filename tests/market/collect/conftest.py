"""A loopback fake Binance with market data, and a clock the collector reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.fake_exchange import FakeBinance
from tests.support.redis_fixtures import redis_cache, redis_server  # noqa: F401

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


@dataclass
class Clock:
    now: dt.datetime = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    server = FakeBinance().serve()
    yield server
    server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def add_minutes(fake: FakeBinance, start: dt.datetime, count: int, symbol: str = "BTCUSDT") -> None:
    """count 1m bars from start, closes rising by 1 from 100."""
    for i in range(count):
        t = start + dt.timedelta(minutes=i)
        c = 100 + (t - T0).total_seconds() / 60
        fake.add_bar(symbol, ms(t), f"{c - 0.5}", f"{c + 1}", f"{c - 1}", f"{c}", "2")
