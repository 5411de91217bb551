"""Test market data: listings and candles written with plain SQL into the canonical tables
(market.exchanges, instruments, exchange_instruments, candles), from the real Binance
files in /work/shared/data or from generated series."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

DATA_DIR = Path("/work/shared/data")
SPOT_RULES = {"tick_size": "0.01", "step_size": "0.001", "min_notional": "5"}


def user(conn: psycopg.Connection[Any], name: str = "quant") -> int:
    return int(
        conn.execute(
            "INSERT INTO account.users (username, email, password_hash) VALUES (%s, %s, 'x') "
            "RETURNING id",
            (name, f"{name}@example.com"),
        ).fetchone()[0]
    )


def listing(
    conn: psycopg.Connection[Any],
    symbol: str,
    rules: dict[str, Any] | None = None,
    *,
    exchange: str = "binance",
    kind: str = "CRYPTO",
    asset_class: str = "CRYPTO",
) -> int:
    """A listing (creating its exchange and instrument); returns exchange_instrument_id."""
    exchange_id = conn.execute(
        """INSERT INTO market.exchanges (code, name, kind) VALUES (%s, %s, %s)
           ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
        (exchange, exchange.title(), kind),
    ).fetchone()[0]
    instrument_id = conn.execute(
        """INSERT INTO market.instruments (symbol, name, asset_class) VALUES (%s, %s, %s)
           ON CONFLICT (symbol) DO UPDATE SET name = EXCLUDED.name RETURNING id""",
        (symbol, symbol, asset_class),
    ).fetchone()[0]
    return int(
        conn.execute(
            """INSERT INTO market.exchange_instruments
                   (exchange_id, instrument_id, exchange_symbol, trading_rules)
               VALUES (%s, %s, %s, %s) RETURNING id""",
            (exchange_id, instrument_id, symbol.replace("/", ""), Jsonb(rules or {})),
        ).fetchone()[0]
    )


def insert_candles(
    conn: psycopg.Connection[Any],
    listing_id: int,
    times: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray | None = None,
    timeframe: str = "1m",
) -> None:
    """COPY candles into market.candles (making the monthly partitions they need). Prices
    are written through their shortest repr, as a feed handler writes them."""
    stamps = np.asarray(times).astype("datetime64[us]")
    first = stamps.min().astype(dt.datetime).replace(tzinfo=dt.UTC)
    last = stamps.max().astype(dt.datetime).replace(tzinfo=dt.UTC)
    conn.execute(
        "SELECT system.ensure_partitions('market.candles', %s, %s)",
        (first, last + dt.timedelta(days=1)),
    )
    vol = volume if volume is not None else np.ones(len(stamps))
    with (
        conn.cursor() as cur,
        cur.copy(
            """COPY market.candles (exchange_instrument_id, timeframe, "time", open, high, low,
                                close, volume) FROM STDIN"""
        ) as copy,
    ):
        for i in range(len(stamps)):
            copy.write_row(
                (listing_id, timeframe, f"{stamps[i]}Z", repr(float(open_[i])),
                 repr(float(high[i])), repr(float(low[i])), repr(float(close[i])),
                 repr(float(vol[i])))
            )  # fmt: skip


def random_walk(
    n: int,
    *,
    seed: int = 7,
    start: float = 100.0,
    vol: float = 0.004,
    tick: float = 0.01,
    minutes: int = 1,
) -> dict[str, np.ndarray]:
    """OHLC bars on the tick grid, one every `minutes` from 2024-01-01."""
    rng = np.random.default_rng(seed)
    close = np.round(start * np.exp(np.cumsum(rng.normal(0, vol, n))) / tick) * tick
    close = np.round(close, 8)
    open_ = np.r_[close[0], close[:-1]]
    wick = np.round(rng.uniform(0, vol * start, (2, n)) / tick) * tick
    high = np.round(np.maximum(open_, close) + wick[0], 8)
    low = np.round(np.maximum(np.minimum(open_, close) - wick[1], tick), 8)
    times = np.datetime64("2024-01-01T00:00") + (np.arange(n) * minutes).astype("timedelta64[m]")
    return {"times": times, "open": open_, "high": high, "low": low, "close": close,
            "volume": rng.uniform(1, 10, n)}  # fmt: skip


def read_csv_bars(name: str) -> dict[str, np.ndarray]:
    """A candle file of /work/shared/data; skips the test when the folder is absent."""
    path = DATA_DIR / name
    if not path.exists():
        pytest.skip(f"{path} is not here (real market data is only on developer machines)")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    times = np.array([r["time"].rstrip("Z") for r in rows], dtype="datetime64[m]")
    out: dict[str, np.ndarray] = {"times": times}
    for key in ("open", "high", "low", "close", "volume"):
        out[key] = np.array([float(r[key]) for r in rows])
    return out


def load(
    conn: psycopg.Connection[Any],
    listing_id: int,
    bars: dict[str, np.ndarray],
    timeframe: str = "1m",
) -> None:
    insert_candles(conn, listing_id, bars["times"], bars["open"], bars["high"], bars["low"],
                   bars["close"], bars["volume"], timeframe)  # fmt: skip


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


D = Decimal
