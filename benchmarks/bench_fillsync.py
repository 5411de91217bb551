"""Fill sync: fills per second from a burst of exchange fills, against apply_fill called
once per fill.

tradestore places ORDERS limit orders on an account that routes to the loopback fake
Binance (tests/support/fake_exchange.py); the router sends them through real CCXT; the
fake then fills each one in FILLS_PER_ORDER pieces (myTrades). One `sync_fills` pass
pulls them through its stored cursor (fetch_my_trades pages, parsed by CCXT) and records
them through trade.sync_fill -> apply_fill. Anchor: apply_fill called once per fill from
Python (psycopg, one round trip and one commit each) for the same number of fills of the
same kind of orders on a books-only account. Both runs' books are checked afterwards
(every fill recorded once, orders filled, the ledger chain intact).

Size: BENCH_FILLSYNC_FILLS fills (default 10,000).
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import time
from decimal import Decimal
from typing import Any

from tests.support.fake_exchange import API_KEY, API_SECRET, FakeBinance
from tests.trading.desk import Desk, build_desk

from benchmarks.harness import Bench, Figure
from tradestore.db import migrate
from tradestore.db.connect import connect
from tradestore.identity import apikeys
from tradestore.identity.secretbox import SecretBox
from tradestore.trading import submit_order
from tradestore.trading.exchange.accounts import ConnectorFactory, routing_accounts, set_routing
from tradestore.trading.exchange.fillsync import sync_fills
from tradestore.trading.exchange.router import Router
from tradestore.trading.fills import apply_fill

ORDERS = 100
PRICE = Decimal(50000)
PIECE = Decimal("0.001")


def _orders(conn: Any, account: int, listing: int, count: int, qty: Decimal) -> list[int]:
    return [submit_order(conn, account, listing, "BUY", "LIMIT", qty, PRICE) for _ in range(count)]


def _check(conn: Any, account: int, fills: int) -> None:
    recorded, unfilled = conn.execute(
        "SELECT (SELECT count(*) FROM trade.executions WHERE account_id = %(a)s), "
        "(SELECT count(*) FROM trade.orders WHERE account_id = %(a)s AND status <> 'FILLED')",
        {"a": account},
    ).fetchone()
    problems = conn.execute("SELECT count(*) FROM account.verify_ledger()").fetchone()[0]
    if (recorded, unfilled, problems) != (fills, 0, 0):
        raise RuntimeError(
            f"account {account}: {recorded} of {fills} fills recorded, {unfilled} orders not "
            f"filled, {problems} ledger problems"
        )


def _fill_sync(
    conn: Any, desk: Desk, fake: FakeBinance, fills: int
) -> tuple[float, dict[str, Any]]:
    box = SecretBox("f" * 40)
    key = apikeys.store(conn, box, desk.user_id, "binance", API_KEY, API_SECRET,
                        permissions=("read", "trade"))  # fmt: skip
    set_routing(conn, desk.account_id, "live", key.id)
    per_order = fills // ORDERS
    placed = _orders(conn, desk.account_id, desk.btc, ORDERS, PIECE * per_order)
    factory = ConnectorFactory(box, base_urls={"binance": fake.url})
    router = Router(conn, factory)
    sent = 0
    while sent < len(placed):
        sent += len(router.run_once().sent)
    cids = [
        r[0]
        for r in conn.execute(
            "SELECT client_order_id FROM trade.order_routes WHERE order_id = ANY(%s) "
            "ORDER BY order_id",
            (placed,),
        )
    ]
    # The burst: every order filled in pieces, interleaved, one exchange millisecond apart.
    for _ in range(per_order):
        for cid in cids:
            fake.fill(cid, str(PIECE), str(PRICE), "0.05", "USDT")
    account = routing_accounts(conn, desk.account_id)[0]
    connector = factory.for_account(conn, account)
    connector.load_markets()
    started = time.perf_counter()
    report = sync_fills(conn, account, connector)
    elapsed = time.perf_counter() - started
    if len(report.applied) != fills or report.deferred:
        raise RuntimeError(f"fill sync applied {len(report.applied)} of {fills}")
    _check(conn, desk.account_id, fills)
    pages = len(fake.calls("GET", "/api/v3/myTrades"))
    return fills / elapsed, {"pages": pages, "duplicates": len(report.duplicates)}


def _anchor_account(conn: Any, fills: int) -> tuple[int, list[int]]:
    """A books-only account with ORDERS orders that take fills // ORDERS pieces each."""
    account = conn.execute(
        "INSERT INTO account.accounts (user_id, exchange_id, name, base_currency) "
        "SELECT user_id, exchange_id, 'anchor', 'USDT' FROM account.accounts LIMIT 1 "
        "RETURNING id"
    ).fetchone()[0]
    listing = conn.execute(
        "SELECT id FROM market.exchange_instruments WHERE exchange_symbol = 'BTCUSDT'"
    ).fetchone()[0]
    conn.execute(
        "SELECT post_ledger_entry(%s, 'DEPOSIT', 'USDT', %s)",
        (account, PRICE * PIECE * fills * 2),
    )
    return account, _orders(conn, account, listing, ORDERS, PIECE * (fills // ORDERS))


def _anchor(conn: Any, orders: list[int], rounds: range) -> float:
    """apply_fill once per fill, for the given rounds (one fill of every order each);
    returns the seconds taken."""
    at = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    for r in rounds:
        for k, order_id in enumerate(orders):
            n = r * len(orders) + k
            apply_fill(conn, order_id, f"anchor-{n}", PIECE, PRICE, Decimal("0.05"), "USDT",
                       at + dt.timedelta(milliseconds=n))  # fmt: skip
    return time.perf_counter() - started


def run(bench: Bench) -> list[Figure]:
    fills = int(os.environ.get("BENCH_FILLSYNC_FILLS", "10000")) // ORDERS * ORDERS
    db = bench.create_database("fillsync")
    migrate.upgrade(db)
    fake = FakeBinance(balances={"USDT": PRICE * PIECE * fills * 2})
    # Exchange time one millisecond per event (the burst spans seconds, not hours).
    fake._clock = itertools.count(int(time.time() * 1000), 1)
    fake.serve()
    try:
        with connect(db, autocommit=True) as conn:
            # The anchor runs half before and half after fill sync, so load from other
            # jobs on the shared machine that drifts during the run weighs on both alike.
            desk = build_desk(conn, cash=PRICE * PIECE * fills * 2)
            anchor_account, anchor_orders = _anchor_account(conn, fills)
            half = fills // ORDERS // 2
            anchor_s = _anchor(conn, anchor_orders, range(half))
            ours, notes = _fill_sync(conn, desk, fake, fills)
            anchor_s += _anchor(conn, anchor_orders, range(half, fills // ORDERS))
            _check(conn, anchor_account, fills)
            anchor = fills / anchor_s
    finally:
        fake.close()
        bench.drop_database(db)
    return [
        Figure(
            "fill sync burst",
            ours,
            "fills/s",
            anchor="apply_fill once per fill (one round trip and commit each)",
            anchor_value=anchor,
            notes=notes | {"fills": fills, "orders": ORDERS, "machine": "2 cores, shared"},
        ),
    ]
