"""A paper runner on a 'sim' account: its orders are filled by tradestore's own paper
exchange from the stored order book, and the next bar sizes from what was filled."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.strategy.live.test_runner import _series
from tests.strategy.market import insert_candles
from tests.trading.desk import build_desk
from tradestore.db.errors import ValidationError
from tradestore.market.ingest import ingest_order_books
from tradestore.strategy.live import store
from tradestore.strategy.live.runner import LiveRunner
from tradestore.strategy.registry import create_strategy
from tradestore.trading.exchange.accounts import set_routing
from tradestore.trading.exchange.paper import PaperExchange


def _paper_runner(conn: psycopg.Connection[Any], trading_mode: str) -> tuple[Any, int]:
    desk = build_desk(conn, cash=10_000)
    if trading_mode != "off":
        set_routing(conn, desk.account_id, trading_mode)
    create_strategy(conn, user_id=desk.user_id, name="golden", implementation="sma_crossover",
                    parameters={"fast": 5, "slow": 20})  # fmt: skip
    runner_id = store.add_runner(conn, "golden", desk.account_id, ["BTCUSDT"], mode="paper",
                                 position_size_pct=Decimal(50))  # fmt: skip
    return desk, runner_id


def test_paper_runner_on_a_sim_account_is_filled_by_the_paper_exchange(
    conn: psycopg.Connection[Any],
) -> None:
    desk, runner_id = _paper_runner(conn, "sim")
    runner = LiveRunner(conn, runner_id)
    runner.start()
    paper = PaperExchange(conn)
    times, o, h, lo, c = _series(120)
    filled: list[int] = []
    for k in range(len(times)):
        insert_candles(conn, desk.btc, times[k:k + 1], o[k:k + 1], h[k:k + 1], lo[k:k + 1],
                       c[k:k + 1])  # fmt: skip
        runner.process()
        for order_id, created in conn.execute(
            "SELECT id, created_at FROM trade.orders WHERE status = 'NEW' ORDER BY id"
        ).fetchall():
            price = Decimal(str(c[k]))
            tick, size = Decimal("0.01"), Decimal(10_000)
            report = ingest_order_books(conn, [{"time": created - dt.timedelta(milliseconds=1),
                                               "bids": [[price - tick, size]],
                                               "asks": [[price + tick, size]]}],
                                        listing_id=desk.btc, imported=False)  # fmt: skip
            assert not report.rejected
            assert paper.run_once().fills == 1
            filled.append(order_id)
    runner.stop()
    assert len(filled) >= 3  # entries and exits
    rows = conn.execute(
        """SELECT o.status, o.order_type, o.strategy_id, o.source, e.exchange_trade_id
             FROM trade.orders o JOIN trade.executions e ON e.order_id = o.id
            WHERE o.id = ANY(%s) ORDER BY o.id""",
        (filled,),
    ).fetchall()
    assert [(st, ty, src) for st, ty, _sid, src, _t in rows] == \
        [("FILLED", "MARKET", "STRATEGY")] * len(filled)  # fmt: skip
    assert {sid for _st, _ty, sid, _src, _t in rows} == {runner.row.strategy_id}
    assert all(t.startswith(f"sim-{oid}-") for oid, (*_, t) in zip(filled, rows, strict=True))
    # Each exit closed the whole position the paper exchange filled before it.
    held = conn.execute(
        "SELECT coalesce(sum(quantity), 0) FROM trade.positions WHERE account_id = %s",
        (desk.account_id,),
    ).fetchone()[0]
    sides = [r[0] for r in conn.execute(
        "SELECT side FROM trade.orders WHERE id = ANY(%s) ORDER BY id", (filled,)).fetchall()]  # fmt: skip
    assert (held == 0) == (sides.count("BUY") == sides.count("SELL"))


def test_paper_runner_needs_a_paper_or_sim_account(conn: psycopg.Connection[Any]) -> None:
    _desk, runner_id = _paper_runner(conn, "off")
    with pytest.raises(ValidationError) as err:
        LiveRunner(conn, runner_id).start()
    assert err.value.field == "mode" and "paper or sim" in err.value.rule
