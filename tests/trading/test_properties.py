"""Property tests: random fill streams against an independent reference, and replays
with duplicates and reordering that must leave identical books."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.trading.desk import Desk, build_desk
from tradestore.db.connect import SEARCH_PATH
from tradestore.trading import apply_fill, balances, get_position, submit_order

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)

Fill = tuple[str, Decimal, Decimal, Decimal]  # side, quantity, price, fee

fills_strategy = st.lists(
    st.tuples(
        st.sampled_from(["BUY", "SELL"]),
        st.integers(1, 50_000).map(lambda n: Decimal(n).scaleb(-4)),  # 0.0001 .. 5 (step)
        st.integers(1, 10_000_000).map(lambda n: Decimal(n).scaleb(-2)),  # 0.01 .. 100000 (tick)
        st.integers(0, 1000).map(lambda n: Decimal(n).scaleb(-3)),
    ),
    min_size=1,
    max_size=25,
)


@pytest.fixture(scope="module")
def mdesk(module_schema_db: str) -> Iterator[Desk]:
    with psycopg.connect(
        module_schema_db, autocommit=True, options=f"-c search_path={SEARCH_PATH.replace(' ', '')}"
    ) as conn:
        yield build_desk(conn)


def round_half_away(value: Fraction, places: int) -> Fraction:
    scaled = value * 10**places
    whole = abs(scaled.numerator) // scaled.denominator
    if abs(scaled) - whole >= Fraction(1, 2):
        whole += 1
    return Fraction(whole if scaled >= 0 else -whole, 10**places)


def reference_position(fills: list[Fill]) -> tuple[Fraction, Fraction, Fraction]:
    """Netting with average cost, written from the definition with exact fractions."""
    qty, avg, realized = Fraction(0), Fraction(0), Fraction(0)
    for side, q, p, _fee in fills:
        signed, price = Fraction(q) * (1 if side == "BUY" else -1), Fraction(p)
        if qty == 0 or (qty > 0) == (signed > 0):
            total = qty + signed
            avg = round_half_away((abs(qty) * avg + abs(signed) * price) / abs(total), 20)
            qty = total
            continue
        closed = min(abs(qty), abs(signed))
        realized += closed * (price - avg) * (1 if qty > 0 else -1)
        total = qty + signed
        avg = Fraction(0) if total == 0 else (avg if (total > 0) == (qty > 0) else price)
        qty = total
    return qty, avg, realized


def book(desk: Desk, account: int, stream: list[tuple[int, Fill]], orders: dict[str, int]) -> None:
    for index, (side, qty, price, fee) in stream:
        apply_fill(
            desk.conn,
            orders[side],
            f"{account}-{index}",
            qty,
            price,
            fee,
            None,
            T0 + dt.timedelta(seconds=index),
        )


def open_orders(desk: Desk, account: int, fills: list[Fill]) -> dict[str, int]:
    orders = {}
    for side in ("BUY", "SELL"):
        total = sum((f[1] for f in fills if f[0] == side), Decimal(0))
        if total:
            # Spot orders are funded: the quote for the BUY, the base for the SELL.
            desk.hold(account, *(("USDT", total * 101_000) if side == "BUY" else ("BTC", total)))
            orders[side] = submit_order(desk.conn, account, desk.btc, side, "LIMIT", total, 100_000)
    return orders


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fills=fills_strategy)
def test_position_matches_reference(mdesk: Desk, fills: list[Fill]) -> None:
    account = mdesk.new_account(f"p-{uuid.uuid4().hex[:8]}")
    book(mdesk, account, list(enumerate(fills)), open_orders(mdesk, account, fills))

    position = get_position(mdesk.conn, account, mdesk.btc)
    assert position is not None
    qty, avg, realized = reference_position(fills)
    assert Fraction(position.quantity) == qty
    assert Fraction(position.avg_entry_price) == avg
    assert Fraction(position.realized_pnl) == realized

    # Conservation, independent of the averaging method: realized plus unrealized PnL at
    # any mark equals the cash the trades moved plus the holding at that mark (up to the
    # 1e-20 rounding of the average entry).
    mark = Fraction(fills[-1][2])
    cash = -sum(Fraction(q) * Fraction(p) * (1 if s == "BUY" else -1) for s, q, p, _ in fills)
    unrealized = qty * (mark - avg)
    assert abs((realized + unrealized) - (cash + qty * mark)) <= abs(qty) * Fraction(
        1, 10**19
    ) * len(fills)

    # Ledger: the cash leg of every trade and every fee, exactly.
    moved = mdesk.conn.execute(
        "SELECT coalesce(sum(amount), 0) FROM account.transactions "
        "WHERE account_id = %s AND currency = 'USDT' AND transaction_type <> 'DEPOSIT'",
        (account,),
    ).fetchone()[0]
    fees = sum((f[3] for f in fills), Decimal(0))
    assert Fraction(moved) == cash - Fraction(fees)


def snapshot(desk: Desk, account: int) -> dict[str, Any]:
    conn = desk.conn
    position = conn.execute(
        "SELECT quantity, avg_entry_price, realized_pnl, total_fees, opened_at, closed_at, last_executed_at "
        "FROM trade.positions WHERE account_id = %s ORDER BY exchange_instrument_id",
        (account,),
    ).fetchall()
    ledger = Counter(
        conn.execute(
            """SELECT t.transaction_type, t.currency, t.amount, split_part(e.exchange_trade_id, '-', 2), t."timestamp"
             FROM account.transactions t LEFT JOIN trade.executions e ON e.id = t.related_execution_id
            WHERE t.account_id = %s AND t.transaction_type <> 'DEPOSIT'""",
            (account,),
        ).fetchall()
    )
    orders = conn.execute(
        "SELECT side, status, filled_quantity, average_fill_price, fee FROM trade.orders WHERE account_id = %s "
        "ORDER BY side",
        (account,),
    ).fetchall()
    return {
        "position": position,
        "ledger": ledger,
        "orders": orders,
        "balances": balances(conn, account),
    }


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fills=fills_strategy, data=st.data())
def test_replay_with_duplicates_and_reordering_gives_identical_books(
    mdesk: Desk, fills: list[Fill], data: st.DataObject
) -> None:
    straight = mdesk.new_account(f"s-{uuid.uuid4().hex[:8]}")
    replayed = mdesk.new_account(f"r-{uuid.uuid4().hex[:8]}")
    indexed = list(enumerate(fills))
    book(mdesk, straight, indexed, open_orders(mdesk, straight, fills))

    repeats = data.draw(
        st.lists(st.sampled_from(indexed), max_size=len(indexed) * 2), label="duplicates"
    )
    stream = data.draw(st.permutations(indexed + repeats), label="arrival order")
    book(mdesk, replayed, stream, open_orders(mdesk, replayed, fills))
    # And the whole feed once more, as a restarted importer would send it.
    book(mdesk, replayed, stream, {s: o for s, o in open_orders_ids(mdesk, replayed).items()})

    assert snapshot(mdesk, replayed) == snapshot(mdesk, straight)


def open_orders_ids(desk: Desk, account: int) -> dict[str, int]:
    return dict(
        desk.conn.execute(
            "SELECT side, id FROM trade.orders WHERE account_id = %s", (account,)
        ).fetchall()
    )


def test_derivative_replay_gives_identical_balances(mdesk: Desk) -> None:
    fills: list[Fill] = [
        ("BUY", Decimal(1), Decimal(100), Decimal(0)),
        ("SELL", Decimal(2), Decimal(120), Decimal(0)),
        ("BUY", Decimal(3), Decimal(90), Decimal("0.5")),
        ("SELL", Decimal(2), Decimal(95), Decimal(0)),
    ]
    results = []
    for arrival in ([0, 1, 2, 3], [3, 1, 0, 2, 1]):
        account = mdesk.new_account(f"d-{uuid.uuid4().hex[:8]}", 1_000_000)
        orders = {}
        for side in ("BUY", "SELL"):
            total = sum((f[1] for f in fills if f[0] == side), Decimal(0))
            orders[side] = submit_order(mdesk.conn, account, mdesk.perp, side, "LIMIT", total, 100)
        for i in arrival:
            side, qty, price, fee = fills[i]
            apply_fill(
                mdesk.conn,
                orders[side],
                f"{account}-{i}",
                qty,
                price,
                fee,
                None,
                T0 + dt.timedelta(seconds=i),
            )
        pos = get_position(mdesk.conn, account, mdesk.perp)
        assert pos is not None
        results.append(
            ((pos.quantity, pos.avg_entry_price, pos.realized_pnl), balances(mdesk.conn, account))
        )
    assert results[0] == results[1]
    # buy 1@100, sell 2@120 (+20, short 1@120), buy 3@90 (+30, long 2@90), sell 2@95 (+10)
    assert results[0][0] == (0, 0, 60)
    assert results[0][1]["USDT"] == 1_000_000 + 60 - Decimal("0.5")
