"""Five concurrent writers (seed 001's 1-5 users) submitting with overlapping idempotency
keys and applying overlapping fills: no duplicate active orders, no lost updates."""

from __future__ import annotations

import datetime as dt
import random
import threading
from decimal import Decimal

import psycopg

from tests.trading.desk import Desk
from tradestore.db.connect import SEARCH_PATH
from tradestore.trading import apply_fill, get_position, ledger, submit_order, verify

KEYS = [f"key-{i}" for i in range(8)]
FILLS_PER_ORDER = 4
T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def side_of(key: str) -> str:
    return "BUY" if int(key.split("-")[1]) % 3 else "SELL"


def fill_price(key: str, j: int) -> Decimal:
    return Decimal(100 + int(key.split("-")[1]) * 7 + j)


def writer(db: str, desk: Desk, seed: int, errors: list[BaseException]) -> None:
    rng = random.Random(seed)
    try:
        with psycopg.connect(
            db, autocommit=True, options=f"-c search_path={SEARCH_PATH.replace(' ', '')}"
        ) as conn:
            work = [(key, j) for key in KEYS for j in range(FILLS_PER_ORDER)]
            rng.shuffle(work)
            for key, j in work:
                order = submit_order(
                    conn,
                    desk.account_id,
                    desk.btc,
                    side_of(key),
                    "LIMIT",
                    10,
                    100,
                    idempotency_key=key,
                )
                index = KEYS.index(key) * FILLS_PER_ORDER + j
                apply_fill(
                    conn,
                    order,
                    f"{key}-{j}",
                    1,
                    fill_price(key, j),
                    "0.1",
                    None,
                    T0 + dt.timedelta(seconds=index),
                )
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_five_writers_overlapping_keys_and_fills(db: str, desk: Desk) -> None:
    # The SELL orders sell BTC the account holds (spot orders are funded).
    ledger.deposit(desk.conn, desk.account_id, "BTC", 100)
    errors: list[BaseException] = []
    threads = [threading.Thread(target=writer, args=(db, desk, seed, errors)) for seed in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors

    conn = desk.conn
    # One order per key, never two active with the same key.
    per_key = conn.execute(
        "SELECT idempotency_key, count(*) FROM trade.orders WHERE account_id = %s GROUP BY 1",
        (desk.account_id,),
    ).fetchall()
    assert sorted(per_key) == [(k, 1) for k in KEYS]
    # Every fill recorded once; orders carry exactly their fills.
    assert desk.count("trade.executions") == len(KEYS) * FILLS_PER_ORDER
    assert (
        conn.execute(
            "SELECT count(*) FROM trade.orders o WHERE filled_quantity <> "
            "(SELECT sum(quantity) FROM trade.executions e WHERE e.order_id = o.id)"
        ).fetchone()[0]
        == 0
    )
    # No lost position update: the position is the sum of the fills.
    expected = sum(FILLS_PER_ORDER * (1 if side_of(k) == "BUY" else -1) for k in KEYS)
    position = get_position(conn, desk.account_id, desk.btc)
    assert position is not None and position.quantity == expected
    # Ledger: one principal and one fee row per fill, chain intact.
    cash = sum(
        -fill_price(k, j) * (1 if side_of(k) == "BUY" else -1)
        for k in KEYS
        for j in range(FILLS_PER_ORDER)
    )
    trade_sum, rows = conn.execute(
        "SELECT sum(amount), count(*) FROM account.transactions WHERE account_id = %s AND transaction_type = 'TRADE'",
        (desk.account_id,),
    ).fetchone()
    assert (trade_sum, rows) == (cash, len(KEYS) * FILLS_PER_ORDER)
    assert verify(conn).ok


def send_fill(
    db: str, order: int, trade_id: str, barrier: threading.Barrier, out: list[object]
) -> None:
    """One session sending the fill as soon as every session is ready."""
    try:
        with psycopg.connect(
            db, autocommit=True, options=f"-c search_path={SEARCH_PATH.replace(' ', '')}"
        ) as conn:
            barrier.wait(timeout=60)
            out.append(apply_fill(conn, order, trade_id, 1, 100, "0.1", "USDT", T0))
    except BaseException as exc:  # reported by the test
        out.append(exc)


def test_concurrent_duplicate_fills_all_get_the_one_execution(db: str, desk: Desk) -> None:
    """Five sessions send the same fill (the whole order) at once: one execution, and every
    caller gets its id; none is refused as an overfill of the fill it repeats."""
    sessions, rounds = 5, 4
    for round_ in range(rounds):
        order = submit_order(desk.conn, desk.account_id, desk.btc, "BUY", "LIMIT", 1, 100)
        barrier = threading.Barrier(sessions)
        out: list[object] = []
        threads = [
            threading.Thread(target=send_fill, args=(db, order, f"dup-{round_}", barrier, out))
            for _ in range(sessions)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        errors = [r for r in out if isinstance(r, BaseException)]
        assert not errors, errors
        assert len(out) == sessions
        assert len({r.execution_id for r in out}) == 1  # type: ignore[attr-defined]
        assert sum(r.created for r in out) == 1  # type: ignore[attr-defined]
    assert desk.count("trade.executions") == rounds
