"""Shared helpers of the market-data tests: listings, synthetic bars, real data files."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from tradestore.market.listings import resolve_listing

DATA_DIR = Path("/work/shared/data")
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def real_file(name: str) -> Path:
    """A file of the shared real-data folder; the test is skipped when it is absent."""
    path = DATA_DIR / name
    if not path.exists():
        pytest.skip(f"real market data not available ({path})")
    return path


def make_listing(
    conn: psycopg.Connection[Any], symbol: str = "BTC/USDT", exchange: str = "binance"
) -> int:
    with conn.transaction():
        return resolve_listing(conn, exchange, symbol)


def bars(
    n: int,
    *,
    start: dt.datetime = T0,
    step: dt.timedelta = dt.timedelta(minutes=1),
    seed: int = 1,
    skip: set[int] | None = None,
) -> list[dict[str, Any]]:
    """n synthetic OHLCV bars (a random walk, 2 decimals), as dicts of exact text."""
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.002, n))), 2)
    rows = []
    prev = close[0]
    for i in range(n):
        c = float(close[i])
        o = float(prev)
        h = round(max(o, c) + float(abs(rng.normal(0, 0.1))), 2)
        lo = round(max(min(o, c) - float(abs(rng.normal(0, 0.1))), 0.01), 2)
        v = round(float(rng.gamma(2.0, 3.0)), 4)
        prev = c
        if skip and i in skip:
            continue
        rows.append(
            {
                "time": (start + i * step).isoformat(),
                "open": f"{o:.2f}",
                "high": f"{h:.2f}",
                "low": f"{lo:.2f}",
                "close": f"{c:.2f}",
                "volume": f"{v:.4f}",
            }
        )
    return rows


def write_csv(
    path: Path, rows: list[dict[str, Any]], header: str = "time,open,high,low,close,volume"
) -> Path:
    cols = header.split(",")
    lines = [header] + [",".join(str(r.get(c, "")) for c in cols) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def stored(
    conn: psycopg.Connection[Any], listing: int, timeframe: str = "1m"
) -> list[tuple[Any, ...]]:
    return conn.execute(
        'SELECT "time", open, high, low, close, volume FROM market.candles '
        'WHERE exchange_instrument_id = %s AND timeframe = %s ORDER BY "time"',
        (listing, timeframe),
    ).fetchall()


def direct_aggregate(rows: list[dict[str, Any]], step: dt.timedelta) -> dict[dt.datetime, tuple]:
    """Reference OHLCV buckets computed in Python with Decimal, from bar dicts."""
    origin = dt.datetime(2000, 1, 3, tzinfo=dt.UTC)
    out: dict[dt.datetime, list] = {}
    for r in sorted(rows, key=lambda r: r["time"]):
        t = dt.datetime.fromisoformat(r["time"])
        b = origin + ((t - origin) // step) * step
        o, h, lo, c, v = (Decimal(r[k]) for k in ("open", "high", "low", "close", "volume"))
        if b not in out:
            out[b] = [o, h, lo, c, v]
        else:
            agg = out[b]
            agg[1] = max(agg[1], h)
            agg[2] = min(agg[2], lo)
            agg[3] = c
            agg[4] += v
    return {k: tuple(v) for k, v in out.items()}
