"""An account that routes to a loopback fake Binance, with its API key in the encrypted
store, and a router and connectors pointed at the fake."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.support.fake_exchange import API_KEY, API_SECRET, FakeBinance
from tests.trading.desk import Desk, build_desk
from tradestore.identity import apikeys
from tradestore.identity.secretbox import SecretBox
from tradestore.trading.exchange.accounts import (
    ConnectorFactory,
    RoutingAccount,
    routing_accounts,
    set_routing,
)
from tradestore.trading.exchange.router import Router


@dataclass
class Clock:
    """The router's clock: the real time plus whatever the test moved it on (leases and
    backoffs end without waiting)."""

    offset: dt.timedelta = field(default_factory=dt.timedelta)

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


@dataclass
class Loop:
    conn: psycopg.Connection[Any]
    desk: Desk
    fake: FakeBinance
    box: SecretBox
    key_id: int
    clock: Clock
    sleeps: list[float]

    def factory(self) -> ConnectorFactory:
        return ConnectorFactory(
            self.box,
            base_urls={"binance": self.fake.url},
            connector_options={"sleep": self.sleeps.append},
        )

    def router(self, **kw: Any) -> Router:
        return Router(self.conn, self.factory(), clock=self.clock, **kw)

    @property
    def account(self) -> RoutingAccount:
        return routing_accounts(self.conn, self.desk.account_id)[0]

    def route(self, order_id: int) -> dict[str, Any]:
        with self.conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            row = cur.execute(
                "SELECT * FROM trade.order_routes WHERE order_id = %s", (order_id,)
            ).fetchone()
        assert row is not None
        return row


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    server = FakeBinance(balances={"USDT": Decimal(100_000)}).serve()
    yield server
    server.close()


@pytest.fixture
def loop(conn: psycopg.Connection[Any], fake: FakeBinance) -> Loop:
    desk = build_desk(conn, cash=100_000)
    box = SecretBox("s" * 40)
    key = apikeys.store(
        conn, box, desk.user_id, "binance", API_KEY, API_SECRET, permissions=("read", "trade")
    )
    set_routing(conn, desk.account_id, "live", key.id)
    return Loop(conn, desk, fake, box, key.id, Clock(), [])
