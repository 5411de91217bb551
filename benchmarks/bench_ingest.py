"""Bulk ingest of 1m candles from one CSV file, with dedup and validation, into the
partitioned market.candles, against three anchors measured in the same run on the same
file:

- durable storage: the same rows, read by the same reader and sent by the fast path's
  binary encoder (without its routing checks), COPYed into a logged table partitioned and
  keyed exactly as market.candles (both read from the catalog at run time) but with no
  CHECKs, triggers or series bookkeeping: the physical limit of durable, deduplicated
  storage, and the anchor the goal is set against;
- the ceiling, kept for reference: the same reader and a binary COPY (psycopg 3,
  set_types) into an unlogged table without indexes, constraints or merge;
- pandas `to_sql` with its default settings (what users do now).

Each timing starts from the file on disk and ends when the rows are committed.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.copy import QueuedLibpqWriter

from benchmarks.harness import Bench, Figure
from tradestore.db import migrate
from tradestore.market.binary import COPY_HEADER, COPY_TRAILER
from tradestore.market.candle_copy import PlainBatch, _encode, _plain_decimals, plain_columns
from tradestore.market.ingest import copy_batch, ingest_candles
from tradestore.market.readers import read_batch

ROWS = 1_000_000
START = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
_ANCHOR_SLICE = 100_000  # rows encoded per write, as the fast path does


def synthetic_bars(n: int, seed: int = 1, start: dt.datetime = START) -> pl.DataFrame:
    """n consecutive 1m bars: a geometric random walk with 2-decimal prices, as text (the
    way a CSV holds them), generated with numpy in well under a second per million."""
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.0008, n))), 2)
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.round(np.maximum(open_, close) + np.abs(rng.normal(0, 0.05, n)), 2)
    low = np.maximum(np.round(np.minimum(open_, close) - np.abs(rng.normal(0, 0.05, n)), 2), 0.01)
    volume = np.round(rng.gamma(2.0, 5.0, n), 6)
    start_us = int(start.timestamp()) * 1_000_000
    times = start_us + np.arange(n, dtype=np.int64) * 60_000_000
    return pl.DataFrame(
        {
            "time": pl.Series(times)
            .cast(pl.Datetime("us", "UTC"))
            .dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "open": pl.Series(open_).round(2).cast(pl.String),
            "high": pl.Series(high).cast(pl.String),
            "low": pl.Series(low).cast(pl.String),
            "close": pl.Series(close).cast(pl.String),
            "volume": pl.Series(volume).cast(pl.String),
        }
    )


def _raw_copy(db: str, path: Path) -> float:
    """The ceiling: read the file the same way and binary-COPY it, nothing else."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_copy")
        conn.execute("CREATE UNLOGGED TABLE raw_copy OF market.candle_stage")
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        batch = read_batch(path, "candles")
        with conn.transaction():
            copy_batch(conn, sql.Identifier("raw_copy"), batch, None)
        elapsed = time.perf_counter() - started
        assert conn.execute("SELECT count(*) FROM raw_copy").fetchone()[0] == ROWS
        conn.execute("DROP TABLE raw_copy")
    return elapsed


def _make_storage_anchor(db: str) -> None:
    """bench_anchor.candles: market.candles' columns, types, defaults, NOT NULLs,
    partitioning, partitions and primary key, all read from the catalog, and nothing else
    (no CHECKs, triggers or foreign keys). Logged, like market.candles."""
    with psycopg.connect(db, autocommit=True) as conn:
        partkey, pkey = conn.execute(
            "SELECT pg_get_partkeydef('market.candles'::regclass), pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c WHERE c.conrelid = 'market.candles'::regclass AND c.contype = 'p'"
        ).fetchone()
        parts = conn.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'market.candles'::regclass ORDER BY 1"
        ).fetchall()
        conn.execute("DROP SCHEMA IF EXISTS bench_anchor CASCADE")
        conn.execute("CREATE SCHEMA bench_anchor")
        conn.execute(
            f"CREATE TABLE bench_anchor.candles (LIKE market.candles INCLUDING DEFAULTS) "
            f"PARTITION BY {partkey}"
        )
        for n, (bound,) in enumerate(parts):
            conn.execute(
                f"CREATE TABLE bench_anchor.candles_{n} PARTITION OF bench_anchor.candles {bound}"
            )
        conn.execute(f"ALTER TABLE bench_anchor.candles ADD {pkey}")


def _durable_copy(db: str, path: Path) -> float:
    """The durable-storage anchor: read the file, encode it as the fast path does (no
    checks), binary-COPY it into bench_anchor.candles, commit."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("TRUNCATE bench_anchor.candles")
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        frame = read_batch(path, "candles").frame
        names = plain_columns(frame)
        assert names == ["open", "high", "low", "close", "volume"], names
        query = (
            'COPY bench_anchor.candles (exchange_instrument_id, timeframe, "time", '
            f"{', '.join(names)}) FROM STDIN (FORMAT BINARY)"
        )
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(query, writer=QueuedLibpqWriter(cur)) as copy,
        ):
            copy.write(COPY_HEADER)
            for start in range(0, frame.height, _ANCHOR_SLICE):
                part = frame.slice(start, _ANCHOR_SLICE)
                decimals = _plain_decimals(part, names)
                assert decimals is not None
                copy.write(_encode(PlainBatch(part["t"].to_numpy(), decimals, None), 1, "1m"))
            copy.write(COPY_TRAILER)
        elapsed = time.perf_counter() - started
        assert conn.execute("SELECT count(*) FROM bench_anchor.candles").fetchone()[0] == ROWS
    return elapsed


def _to_sql(db: str, path: Path) -> float:
    import pandas as pd
    import sqlalchemy as sa

    params = conninfo_to_dict(db)
    engine = sa.create_engine(
        "postgresql+psycopg://", connect_args={k: v for k, v in params.items() if v is not None}
    )
    try:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS candles_to_sql")
            conn.execute("CHECKPOINT")
        started = time.perf_counter()
        frame = pd.read_csv(path)
        frame.to_sql("candles_to_sql", engine, if_exists="append", index=False)
        elapsed = time.perf_counter() - started
        with psycopg.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM candles_to_sql").fetchone()[0] == ROWS
    finally:
        engine.dispose()
    return elapsed


def _ingest(db: str, path: Path, symbol: str) -> float:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    started = time.perf_counter()
    report = ingest_candles(db, path, exchange="bench", symbol=symbol, timeframe="1m")
    elapsed = time.perf_counter() - started
    assert (report.inserted, report.rejected) == (ROWS, []), report.summary()
    return elapsed


def run(bench: Bench) -> list[Figure]:
    db = bench.create_database("ingest")
    migrate.upgrade(db)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bars.csv"
        synthetic_bars(ROWS).write_csv(path)
        # Best of two for every contender (the machine is shared).
        ours = min(_ingest(db, path, "BENCH1/USD"), _ingest(db, path, "BENCH2/USD"))
        # After the ingests, so market.candles has the partitions the anchor copies.
        _make_storage_anchor(db)
        durable = min(_durable_copy(db, path), _durable_copy(db, path))
        ceiling = min(_raw_copy(db, path), _raw_copy(db, path))
        to_sql = _to_sql(db, path)
        started = time.perf_counter()
        again = ingest_candles(db, path, exchange="bench", symbol="BENCH1/USD", timeframe="1m")
        reingest = time.perf_counter() - started
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, ROWS)
    bench.drop_database(db)
    notes = {"rows": ROWS, "file": "CSV, 1m bars, prices as decimal text"}
    return [
        Figure(
            "ingest candles (dedup + validation) vs durable binary COPY",
            ROWS / ours,
            "rows/s",
            anchor="binary COPY into a logged table partitioned and keyed as market.candles",
            anchor_value=ROWS / durable,
            goal=0.7,
            notes=notes,
        ),
        Figure(
            "ingest candles (dedup + validation) vs raw binary COPY",
            ROWS / ours,
            "rows/s",
            anchor="raw binary COPY into unlogged unindexed table (reference)",
            anchor_value=ROWS / ceiling,
            notes=notes,
        ),
        Figure(
            "ingest candles (dedup + validation) vs pandas to_sql",
            ROWS / ours,
            "rows/s",
            anchor="pandas to_sql, default settings",
            anchor_value=ROWS / to_sql,
            goal=5.0,
            notes=notes,
        ),
        Figure(
            "re-ingest of the same file (adds nothing)",
            ROWS / reingest,
            "rows/s",
            anchor="first ingest",
            anchor_value=ROWS / ours,
            notes=notes,
        ),
    ]
