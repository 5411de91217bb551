"""Collector capacity: messages per second stored through the collector's sink (the
ingest path: staged binary COPY, validation, merge, partitions; then the statement
triggers' cache notifications), for 20 symbols with 10-level books at 10 updates/s plus
5 trades/s each, flushed once per second of data as the collector does after a pass.
Anchor: a plain COPY of the same messages into plain tables (listing, time, bids, asks /
listing, time, trade id, price, quantity, side), once per second of data too. Every
message is counted back from the tables (none lost).

Size: BENCH_COLLECTOR_SECONDS seconds of data (default 20).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
from decimal import Decimal
from typing import Any

from benchmarks.harness import Bench, Figure
from tradestore.db import migrate
from tradestore.db.connect import connect
from tradestore.market.collect.sink import Sink
from tradestore.market.listings import ensure_listing

SYMBOLS = 20
DEPTH = 10
BOOKS_PER_S = 10
TRADES_PER_S = 5
T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def _messages(seconds: int) -> list[list[tuple[str, int, dict[str, Any]]]]:
    """Per second of data: (kind, symbol index, row) messages."""
    rng = random.Random(7)
    out = []
    for s in range(seconds):
        batch = []
        for sym in range(SYMBOLS):
            mid = Decimal(100 + sym) + Decimal(rng.randint(-50, 50)) / 100
            for b in range(BOOKS_PER_S):
                t = T0 + dt.timedelta(seconds=s, milliseconds=b * 100 + sym)
                bids = [[str(mid - Decimal(i + 1) / 100), str(Decimal(rng.randint(1, 999)) / 100)]
                        for i in range(DEPTH)]  # fmt: skip
                asks = [[str(mid + Decimal(i + 1) / 100), str(Decimal(rng.randint(1, 999)) / 100)]
                        for i in range(DEPTH)]  # fmt: skip
                batch.append(("orderbook", sym, {"time": t, "bids": bids, "asks": asks}))
            for k in range(TRADES_PER_S):
                t = T0 + dt.timedelta(seconds=s, milliseconds=k * 200 + sym + 1)
                row = {"time": t, "trade_id": f"{s}-{sym}-{k}", "price": str(mid),
                       "quantity": "0.01", "side": "buy" if k % 2 else "sell"}  # fmt: skip
                batch.append(("trades", sym, row))
        out.append(batch)
    return out


def _collector(db: str, seconds_of_data: list[list[tuple[str, int, dict[str, Any]]]]) -> float:
    with connect(db, autocommit=True) as conn:
        listings = [
            ensure_listing(conn, "benchx", f"S{i}/USDT", create=True).id for i in range(SYMBOLS)
        ]
        sink = Sink(conn, indicators=False)
        started = time.perf_counter()
        for batch in seconds_of_data:
            for kind, sym, row in batch:
                sink.add(kind, listings[sym], [row])
            sink.flush()
        elapsed = time.perf_counter() - started
        stored = conn.execute(
            "SELECT (SELECT count(*) FROM market.order_books) + (SELECT count(*) FROM market.trade_prints)"
        ).fetchone()[0]
    total = sum(len(b) for b in seconds_of_data)
    assert stored == total, f"collector lost messages: {stored} of {total}"
    return total / elapsed


def _plain_copy(db: str, seconds_of_data: list[list[tuple[str, int, dict[str, Any]]]]) -> float:
    with connect(db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE plain_books (listing int, time timestamptz, bids jsonb, asks jsonb)"
        )
        conn.execute(
            "CREATE TABLE plain_trades (listing int, time timestamptz, trade_id text, "
            "price numeric, quantity numeric, side text)"
        )
        started = time.perf_counter()
        for batch in seconds_of_data:
            with conn.transaction():
                with conn.cursor().copy("COPY plain_books FROM STDIN") as copy:
                    for kind, sym, r in batch:
                        if kind == "orderbook":
                            copy.write_row(
                                (sym, r["time"], json.dumps(r["bids"]), json.dumps(r["asks"]))
                            )
                with conn.cursor().copy("COPY plain_trades FROM STDIN") as copy:
                    for kind, sym, r in batch:
                        if kind == "trades":
                            copy.write_row((sym, r["time"], r["trade_id"], r["price"],
                                            r["quantity"], r["side"]))  # fmt: skip
        elapsed = time.perf_counter() - started
        stored = conn.execute(
            "SELECT (SELECT count(*) FROM plain_books) + (SELECT count(*) FROM plain_trades)"
        ).fetchone()[0]
    total = sum(len(b) for b in seconds_of_data)
    assert stored == total
    return total / elapsed


def run(bench: Bench) -> list[Figure]:
    seconds = int(os.environ.get("BENCH_COLLECTOR_SECONDS", "20"))
    data = _messages(seconds)
    db = bench.create_database("collector")
    migrate.upgrade(db)
    try:
        ours = _collector(db, data)
        anchor = _plain_copy(db, data)
    finally:
        bench.drop_database(db)
    offered = SYMBOLS * (BOOKS_PER_S + TRADES_PER_S)
    return [
        Figure(
            "collector_messages_stored",
            ours,
            "msg/s",
            anchor="plain COPY of the same messages",
            anchor_value=anchor,
            goal=0.5,
            notes={
                "symbols": SYMBOLS,
                "depth": DEPTH,
                "offered_msg_per_s": offered,
                "seconds_of_data": seconds,
                "flush": "once per second of data",
                "lost": 0,
            },
        )
    ]
