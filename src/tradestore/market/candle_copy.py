"""The fast path of candle ingest: one binary COPY straight into market.candles.

Most batches are a first load or an append of well-formed bars. For those the staging
table and the INSERT ... SELECT merge (tradestore.market.ingest) are pure overhead, so
when a batch is plainly good and the series holds no bars in the batch's span, its rows
are encoded column by column with numpy into PostgreSQL's binary COPY format and written
into market.candles in one COPY, inside a savepoint.

The database stays the judge. The checks here only decide whether the fast path is worth
trying; the rows still pass the table's constraints and market.candles_changed (listing,
timeframe, series bookkeeping, rollup invalidation, cache). If anything refuses a row (a
value the float comparison here misjudged, a bar another session wrote meanwhile), the
savepoint is rolled back and the batch goes through the staged merge, which reports every
bad row by line, field and rule.

Numbers are sent exactly as their decimal text, never through a float: "0.10" becomes the
NUMERIC 0.10 with display scale 2, as numeric_in would make it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import psycopg
from psycopg.copy import QueuedLibpqWriter

from tradestore.market.binary import COPY_HEADER, COPY_TRAILER, PG_EPOCH_US

__all__ = ["copy_candles", "fast_path_columns"]

_PRICES = ("open", "high", "low", "close")
# Plain decimals only (what exchanges and CSV exports write); anything else, such as an
# exponent, a sign or spaces, takes the staged path, where PostgreSQL parses it.
_DECIMAL = r"^[0-9]{1,18}(\.[0-9]{1,16})?$"
_COUNT = r"^[0-9]{1,9}$"
_TIME_LOW, _TIME_HIGH = -2_208_988_800_000_000, 7_258_118_400_000_000  # 1900 .. 2200
_GRID_ORIGIN_US = 946_857_600_000_000  # 2000-01-03 00:00 UTC, market.timeframe_bucket's origin
_SLICE = 100_000


def _full(frame: pl.DataFrame, column: str) -> bool:
    return frame[column].null_count() == 0


def _empty(frame: pl.DataFrame, column: str) -> bool:
    return frame[column].null_count() == frame.height


def fast_path_columns(frame: pl.DataFrame, step_us: int) -> list[str] | None:
    """The value columns to COPY when every row of the staged candle frame plainly passes
    the ingest rules (times present, in range, on the grid and unique; prices positive
    plain decimals with high >= max(open, close) and low <= min(open, close); volume a
    plain decimal; vwap and trade_count all present and well-formed or all absent), else
    None. Comparisons use floats: a misjudged near-tie is caught by the table's CHECK."""
    if frame.height == 0:
        return None
    columns = [*_PRICES, "volume"]
    for optional in ("vwap", "trade_count"):
        if _full(frame, optional):
            columns.append(optional)
        elif not _empty(frame, optional):
            return None
    if not all(_full(frame, c) for c in ("t", *_PRICES, "volume")):
        return None
    t = pl.col("t")
    decimals = [c for c in columns if c != "trade_count"]
    checks = [
        t.is_between(_TIME_LOW, _TIME_HIGH, closed="left").all(),
        ((t - _GRID_ORIGIN_US) % step_us == 0).all(),
        t.n_unique() == pl.len(),
        *(pl.col(c).str.contains(_DECIMAL).all() for c in decimals),
    ]
    if "trade_count" in columns:
        checks.append(pl.col("trade_count").str.contains(_COUNT).all())
    if not all(frame.select(e.alias(f"c{i}") for i, e in enumerate(checks)).row(0)):
        return None
    o, h, lo, c = (pl.col(x).cast(pl.Float64) for x in _PRICES)
    values = [
        (lo > 0).all(),
        (h >= pl.max_horizontal(o, c)).all(),
        (lo <= pl.min_horizontal(o, c)).all(),
    ]
    if "vwap" in columns:
        vw = pl.col("vwap").cast(pl.Float64)
        values.append(((vw >= lo) & (vw <= h)).all())
    if not all(frame.select(e.alias(f"c{i}") for i, e in enumerate(values)).row(0)):
        return None
    return columns


def _numeric_fields(text: pl.Series) -> tuple[np.ndarray, np.ndarray, int]:
    """Plain decimal texts as PostgreSQL binary NUMERIC of one width for the whole
    column: (dscale per value, base-10000 digits per value, most significant first, and
    the weight of the first digit).
    Leading and trailing zero digits are allowed in the binary form; the server strips
    them (numeric_recv -> make_result), so "7" and "0007.0000" are the same number."""
    parts = text.str.split_exact(".", 1)
    whole = parts.struct.field("field_0")
    frac = parts.struct.field("field_1").fill_null("")
    dscale = frac.str.len_chars().cast(pl.Int16).to_numpy()
    int_groups = max(1, -(-int(whole.str.len_chars().max()) // 4))  # type: ignore[arg-type]
    frac_groups = -(-int(dscale.max()) // 4)
    groups = []
    number = whole.cast(pl.Int64).to_numpy()
    for k in range(int_groups - 1, -1, -1):
        groups.append((number // 10_000**k) % 10_000)
    if frac_groups:
        number = frac.str.pad_end(4 * frac_groups, "0").cast(pl.Int64).to_numpy()
        for k in range(frac_groups - 1, -1, -1):
            groups.append((number // 10_000**k) % 10_000)
    return dscale, np.stack(groups, axis=1), int_groups - 1


def _encode(
    frame: pl.DataFrame, listing_id: int, timeframe: str, columns: list[str]
) -> Iterator[bytes]:
    """Binary COPY rows of (exchange_instrument_id, timeframe, time, *columns), one
    fixed-width numpy record per row, a slice at a time."""
    tf = timeframe.encode()
    for start in range(0, frame.height, _SLICE):
        part = frame.slice(start, _SLICE)
        numerics = {c: _numeric_fields(part[c]) for c in columns if c != "trade_count"}
        fields: list[tuple[Any, ...]] = [
            ("count", ">i2"),
            ("l_len", ">i4"),
            ("listing", ">i8"),
            ("tf_len", ">i4"),
            ("tf", f"S{len(tf)}"),
            ("t_len", ">i4"),
            ("t", ">i8"),
        ]
        for c in columns:
            if c == "trade_count":
                fields += [("n_len", ">i4"), ("n", ">i4")]
            else:
                width = numerics[c][1].shape[1]
                fields += [
                    (f"{c}_len", ">i4"),
                    (f"{c}_ndigits", ">i2"),
                    (f"{c}_weight", ">i2"),
                    (f"{c}_sign", ">i2"),
                    (f"{c}_dscale", ">i2"),
                    (f"{c}_digits", ">i2", (width,)),
                ]
        rows = np.zeros(part.height, dtype=np.dtype(fields))
        rows["count"] = 3 + len(columns)
        rows["l_len"], rows["listing"] = 8, listing_id
        rows["tf_len"], rows["tf"] = len(tf), tf
        rows["t_len"] = 8
        rows["t"] = part["t"].to_numpy() - PG_EPOCH_US
        for c in columns:
            if c == "trade_count":
                rows["n_len"] = 4
                rows["n"] = part[c].cast(pl.Int32).to_numpy()
                continue
            dscale, digits, weight = numerics[c]
            rows[f"{c}_len"] = 8 + 2 * digits.shape[1]
            rows[f"{c}_ndigits"] = digits.shape[1]
            rows[f"{c}_weight"] = weight
            rows[f"{c}_dscale"] = dscale
            rows[f"{c}_digits"] = digits
        yield rows.tobytes()


def copy_candles(
    conn: psycopg.Connection[Any],
    frame: pl.DataFrame,
    listing_id: int,
    timeframe: str,
    columns: list[str],
    progress: Any = None,
) -> None:
    """COPY the staged candle frame into market.candles (columns from fast_path_columns)."""
    names = ["exchange_instrument_id", "timeframe", '"time"', *columns]
    query = f"COPY market.candles ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
    done = 0
    # The queued writer sends from a thread, so encoding the next slice overlaps the
    # server's work on this one.
    with conn.cursor() as cur, cur.copy(query, writer=QueuedLibpqWriter(cur)) as copy:
        copy.write(COPY_HEADER)
        for chunk in _encode(frame, listing_id, timeframe, columns):
            copy.write(chunk)
            done = min(done + _SLICE, frame.height)
            if progress is not None:
                progress(done, frame.height)
        copy.write(COPY_TRAILER)
