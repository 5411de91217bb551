"""Technical indicators (all 28 of seed 003) computed with TA-Lib and stored for 1M
bars: time and rows/s, beside TA-Lib alone on the same arrays in memory; and an
incremental update (1,000 new bars, ~3,000-bar warm-up) against the full recompute."""

from __future__ import annotations

import time

import numpy as np
import psycopg

from benchmarks.bench_ingest import synthetic_bars
from benchmarks.harness import Bench, Figure
from tradestore.db import migrate
from tradestore.market.indicators import compute_indicators, session_ids, update_indicators
from tradestore.market.ingest import ingest_candles

BARS = 1_000_000
NEW = 1_000


def run(bench: Bench) -> list[Figure]:
    db = bench.create_database("indicators")
    migrate.upgrade(db)
    frame = synthetic_bars(BARS + NEW, seed=7)
    report = ingest_candles(db, frame.head(BARS), exchange="bench", symbol="IND/USD")
    listing = report.listing_id
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE market.candles")
    full = update_indicators(db, listing, "1m", full=True)
    assert full.rows_written == BARS

    arrays = [
        frame.head(BARS)[c].cast(float).to_numpy() for c in ("high", "low", "close", "volume")
    ]
    times = frame.head(BARS)["time"].str.to_datetime(time_zone="UTC").dt.epoch("us").to_numpy()
    started = time.perf_counter()
    values = compute_indicators(*arrays, session_ids(times))
    in_memory = time.perf_counter() - started
    assert np.isfinite(values["ema_200"][-1])

    ingest_candles(db, frame.tail(NEW), listing_id=listing)
    incremental = update_indicators(db, listing, "1m")
    assert incremental.rows_written == NEW and not incremental.full
    bench.drop_database(db)
    return [
        Figure(
            "indicators computed and stored, 1M bars",
            BARS / full.seconds,
            "rows/s",
            anchor="TA-Lib alone in memory (no database)",
            anchor_value=BARS / in_memory,
            notes={"seconds": round(full.seconds, 2), "indicators": 28},
        ),
        Figure(
            f"incremental update, {NEW} new bars",
            incremental.seconds,
            "s",
            anchor="full recompute of 1M bars",
            anchor_value=full.seconds,
            higher_is_better=False,
            notes={"warm-up bars read": incremental.bars_read - NEW},
        ),
    ]
