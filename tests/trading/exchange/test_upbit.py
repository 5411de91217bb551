"""Routing and fill sync on Upbit (KRW spot, no trades endpoint: fills come from each
order's own trade list) against the loopback fake Upbit, through real CCXT."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.support.fake_upbit import ACCESS_KEY, SECRET_KEY, FakeUpbit
from tradestore.identity import apikeys
from tradestore.identity.secretbox import SecretBox
from tradestore.market import reference
from tradestore.trading import cancel_order, get_order, get_position, ledger, submit_order
from tradestore.trading.exchange.accounts import (
    ConnectorFactory,
    RoutingAccount,
    routing_accounts,
    set_routing,
)
from tradestore.trading.exchange.fillsync import FillSyncReport, sync_fills
from tradestore.trading.exchange.ordersync import _increase
from tradestore.trading.exchange.router import Router

KRW_RULES = {"tick_size": "1000", "step_size": "0.00000001", "min_notional": "5000"}


@dataclass
class UpbitDesk:
    conn: psycopg.Connection[Any]
    fake: FakeUpbit
    factory: ConnectorFactory
    account_id: int
    btc: int

    @property
    def account(self) -> RoutingAccount:
        return routing_accounts(self.conn, self.account_id)[0]

    def router(self) -> Router:
        return Router(self.conn, self.factory)

    def sync(self) -> FillSyncReport:
        return sync_fills(
            self.conn, self.account, self.factory.for_account(self.conn, self.account)
        )

    def sent(self, side: str, qty: str, price: str) -> tuple[int, str]:
        order_id = submit_order(
            self.conn, self.account_id, self.btc, side, "LIMIT", Decimal(qty), Decimal(price)
        )
        assert self.router().run_once().sent == [order_id]
        cid = self.conn.execute(
            "SELECT client_order_id FROM trade.order_routes WHERE order_id = %s", (order_id,)
        ).fetchone()[0]
        return order_id, cid


@pytest.fixture
def fake() -> Iterator[FakeUpbit]:
    server = FakeUpbit(balances={"KRW": Decimal(100_000_000)}).serve()
    yield server
    server.shutdown()


@pytest.fixture
def upbit(conn: psycopg.Connection[Any], fake: FakeUpbit) -> UpbitDesk:
    user_id = conn.execute(
        "INSERT INTO account.users (username, email, password_hash, max_risk_per_trade, "
        "max_total_risk, max_positions) VALUES ('krw', 'k@example.com', 'x', 100, 100, 100) "
        "RETURNING id"
    ).fetchone()[0]
    exchange_id = reference.upsert_exchange(conn, "upbit", "Upbit")
    instrument_id = reference.upsert_instrument(
        conn, "BTC/KRW", "BTC/KRW", asset_class="CRYPTO", base_currency="BTC", quote_currency="KRW"
    )
    btc, _ = reference.upsert_listing(conn, exchange_id, instrument_id, "KRW-BTC", KRW_RULES)
    account_id = conn.execute(
        "INSERT INTO account.accounts (user_id, exchange_id, name, base_currency) "
        "VALUES (%s, %s, 'upbit', 'KRW') RETURNING id",
        (user_id, exchange_id),
    ).fetchone()[0]
    ledger.deposit(conn, account_id, "KRW", Decimal(100_000_000))
    box = SecretBox("u" * 40)
    key = apikeys.store(
        conn, box, user_id, "upbit", ACCESS_KEY, SECRET_KEY, permissions=("read", "trade")
    )
    set_routing(conn, account_id, "live", key.id)
    factory = ConnectorFactory(box, base_urls={"upbit": fake.url})
    return UpbitDesk(conn, fake, factory, account_id, btc)


def test_an_order_is_sent_with_its_client_id_as_upbits_identifier(upbit: UpbitDesk) -> None:
    order_id, cid = upbit.sent("BUY", "0.01", "90000000")
    placed = upbit.fake.calls("POST", "/v1/orders")
    assert len(placed) == 1
    assert placed[0]["identifier"] == cid and placed[0]["market"] == "KRW-BTC"
    assert placed[0]["side"] == "bid" and Decimal(placed[0]["volume"]) == Decimal("0.01")
    ours = get_order(upbit.conn, order_id)
    assert ours.exchange_order_id == upbit.fake.order_by_identifier(cid).uuid


def test_fills_come_from_the_orders_trade_list_with_the_orders_fee(upbit: UpbitDesk) -> None:
    order_id, cid = upbit.sent("BUY", "0.03", "90000000")
    upbit.fake.fill(cid, "0.01", "90000000", fee="450")
    report = upbit.sync()
    assert len(report.applied) == 1 and report.symbols == ["BTC/KRW"]
    order = get_order(upbit.conn, order_id)
    assert order.status == "PARTIALLY_FILLED" and order.filled_quantity == Decimal("0.01")
    assert order.fee == Decimal(450) and order.fee_currency == "KRW"

    # Two more fills; the first is read again and recognised.
    upbit.fake.fill(cid, "0.01", "89000000", fee="445")
    upbit.fake.fill(cid, "0.01", "88000000", fee="440")
    report = upbit.sync()
    assert len(report.applied) == 2 and len(report.duplicates) == 1
    order = get_order(upbit.conn, order_id)
    assert order.status == "FILLED" and order.filled_quantity == Decimal("0.03")
    # The order's fee total is the exchange's paid_fee, whatever the split per trade.
    assert order.fee == Decimal(1335)
    position = get_position(upbit.conn, upbit.account_id, upbit.btc)
    assert position.quantity == Decimal("0.03")
    assert position.avg_entry_price == Decimal(89_000_000)

    # A filled order is not read again.
    before = len(upbit.fake.calls("GET", "/v1/order"))
    assert upbit.sync().applied == []
    assert len(upbit.fake.calls("GET", "/v1/order")) == before


def test_an_order_the_exchange_cancels_is_closed_in_the_books_after_its_fills(
    upbit: UpbitDesk,
) -> None:
    order_id, cid = upbit.sent("BUY", "0.02", "90000000")
    upbit.fake.fill(cid, "0.005", "90000000", fee="225")
    upbit.fake.close(cid)
    report = upbit.sync()
    assert len(report.applied) == 1 and report.closed == [order_id]
    order = get_order(upbit.conn, order_id)
    assert order.status == "CANCELED" and order.filled_quantity == Decimal("0.005")
    state, cancel_requested = upbit.conn.execute(
        "SELECT state, cancel_requested FROM trade.order_routes WHERE order_id = %s", (order_id,)
    ).fetchone()
    assert state == "CANCELED" and not cancel_requested
    # Nothing is sent back to the exchange for it.
    assert upbit.router().run_once().worked == 0
    assert upbit.fake.calls("DELETE", "/v1/order") == []
    # The reservation of what was not bought is released: the books' free KRW is all but
    # what the fill spent.
    free = upbit.conn.execute(
        "SELECT trade.free_balance(%s, 'KRW')", (upbit.account_id,)
    ).fetchone()[0]
    assert free == Decimal(100_000_000) - Decimal("0.005") * 90_000_000 - 225


def test_a_fill_that_races_a_cancel_from_the_books_is_still_recorded(upbit: UpbitDesk) -> None:
    order_id, cid = upbit.sent("BUY", "0.02", "90000000")
    cancel_order(upbit.conn, order_id)
    # The exchange filled part of it before the cancel arrived.
    upbit.fake.fill(cid, "0.004", "90000000", fee="180")
    result = upbit.router().run_once()
    assert result.canceled == [order_id]
    report = upbit.sync()
    assert len(report.applied) == 1
    order = get_order(upbit.conn, order_id)
    assert order.status == "CANCELED" and order.filled_quantity == Decimal("0.004")
    assert get_position(upbit.conn, upbit.account_id, upbit.btc).quantity == Decimal("0.004")


def test_a_wrong_secret_is_an_authentication_error(upbit: UpbitDesk) -> None:
    upbit.fake.secret_key = "not-the-secret"
    submit_order(upbit.conn, upbit.account_id, upbit.btc, "BUY", "LIMIT", Decimal("0.01"),
                 Decimal(90_000_000))  # fmt: skip
    result = upbit.router().run_once()
    assert result.sent == [] and upbit.fake.orders == []
    assert (
        upbit.conn.execute(
            "SELECT count(*) FROM system.alerts WHERE message LIKE %s", ("%upbit%",)
        ).fetchone()[0]
        >= 1
    )


def test_an_order_reporting_only_its_cumulative_fill_gives_one_fill_per_increase() -> None:
    ours = {"filled_quantity": Decimal("0.01"), "total_filled_value": Decimal(500),
            "fee": Decimal("0.5")}  # fmt: skip
    theirs = {"id": "77", "side": "buy", "filled": 0.03, "cost": 1520.0, "average": None,
              "fee": {"cost": 1.5, "currency": "USDT"}, "lastTradeTimestamp": 1_700_000_000_000,
              "trades": []}  # fmt: skip
    (fill,) = _increase(theirs, ours)
    assert fill["id"] == "77/0.03" and fill["amount"] == Decimal("0.02")
    assert fill["price"] == Decimal(51_000)  # (1520 - 500) / 0.02
    assert fill["fee"] == {"cost": Decimal(1), "currency": "USDT"}
    # Read again after it was recorded: nothing new.
    ours = {"filled_quantity": Decimal("0.03"), "total_filled_value": Decimal(1520),
            "fee": Decimal("1.5")}  # fmt: skip
    assert _increase(theirs, ours) == []
