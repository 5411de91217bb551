"""The fast path of candle ingest: one binary COPY straight into market.candles.

Most batches are a first load or an append of well-formed bars. For those the staging
table and the INSERT ... SELECT merge (tradestore.market.ingest) are pure overhead, so
when the series holds no bars in the batch's span, the batch is written into
market.candles by one binary COPY inside a savepoint: slice by slice, each slice checked
and encoded column by column with numpy while the server writes the slice before. The
first slice that is not plainly good abandons the COPY (NotPlain) for the staged merge.

The database stays the judge. The checks here only decide whether the fast path is worth
trying; the rows still pass the table's constraints and market.candles_changed (listing,
timeframe, series bookkeeping, rollup invalidation, cache). If anything refuses a row (a
bar another session wrote meanwhile, an unknown listing), the savepoint is rolled back
and the batch goes through the staged merge, which reports every bad row by line, field
and rule. The comparisons here use floats, which is exact on the fast path's domain:
decimals whose digits, point removed, form an integer below 2**50 (every decimal of up to
15 digits; longer ones go staged) differ by at least 2**-50 of their size, far more than
a double's rounding, so their nearest doubles compare as they do.

Numbers are sent exactly as their decimal text, never through a float: "0.10" becomes the
NUMERIC 0.10 with display scale 2, as numeric_in would make it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import psycopg
from psycopg.copy import QueuedLibpqWriter

from tradestore.db.errors import TradestoreError
from tradestore.market.binary import COPY_HEADER, COPY_TRAILER, PG_EPOCH_US
from tradestore.market.readers import TIME_RANGE_US
from tradestore.market.timeframes import GRID_ORIGIN_US

__all__ = ["NotPlain", "PlainBatch", "copy_candles", "plain_batch", "plain_columns"]

_PRICES = ("open", "high", "low", "close")
_MAX_SCALE = 15  # fraction digits kept exact by the arithmetic of _plain_decimals
_EXACT_BELOW = 2.0**50
_SLICE = 100_000


@dataclass(frozen=True)
class PlainDecimals:
    """A column of plain decimal texts split into integers: whole part, fraction digits
    as an integer, and the number of fraction digits (the NUMERIC display scale)."""

    whole: np.ndarray
    fraction: np.ndarray
    scale: np.ndarray
    approx: np.ndarray  # the nearest floats, for routing decisions only


@dataclass(frozen=True)
class PlainBatch:
    """A candle batch every row of which plainly passes the ingest rules, ready to COPY."""

    times_us: np.ndarray
    decimals: dict[str, PlainDecimals]
    trade_count: np.ndarray | None

    @property
    def columns(self) -> list[str]:
        return [*self.decimals, *(["trade_count"] if self.trade_count is not None else [])]

    def __len__(self) -> int:
        return len(self.times_us)


def _full(frame: pl.DataFrame, column: str) -> bool:
    return frame[column].null_count() == 0


def _empty(frame: pl.DataFrame, column: str) -> bool:
    return frame[column].null_count() == frame.height


def _plain_decimals(frame: pl.DataFrame, columns: list[str]) -> dict[str, PlainDecimals] | None:
    """The columns' texts as exact decimals, or None when one is not a plain decimal
    (digits with at most one point, perhaps a sign: no exponent, space, NaN or Infinity)
    or has more digits than the int64 arithmetic here carries exactly.

    The text is parsed as a float, then its digits are recovered exactly: for a text of m
    digits with s after the point, float(text) * 10**s is within m * 2**-52 of m, so
    rounding gives m back whenever m < 2**50 (below 0.25 away). Larger numbers take the
    staged path, where PostgreSQL parses the text itself."""
    exprs: list[pl.Expr] = []
    for c in columns:
        text = pl.col(c)
        point = text.str.find(".", literal=True)
        exprs += [
            # An exponent would change the scale counted below ("1.5e2" is 150, not 150.000);
            # signs, NaN and Infinity are refused by the value checks of plain_batch.
            (text.str.contains("e", literal=True) | text.str.contains("E", literal=True))
            .any()
            .alias(f"{c}.odd"),
            text.cast(pl.Float64, strict=False).alias(f"{c}.value"),
            pl.when(point.is_null())
            .then(0)
            .otherwise(text.str.len_bytes().cast(pl.Int64) - point - 1)
            .cast(pl.Int16)
            .alias(f"{c}.scale"),
        ]
    parsed = frame.select(exprs)
    out: dict[str, PlainDecimals] = {}
    for c in columns:
        value = parsed[f"{c}.value"]
        if parsed[f"{c}.odd"][0] or value.null_count():
            return None
        scale = parsed[f"{c}.scale"].to_numpy()
        if scale.max() > _MAX_SCALE:
            return None
        power = 10 ** scale.astype(np.int64)
        floats = value.to_numpy()
        digits = np.rint(floats * power)
        if not (digits < _EXACT_BELOW).all():
            return None
        digits = digits.astype(np.int64)
        out[c] = PlainDecimals(digits // power, digits % power, scale, floats)
    return out


class NotPlain(TradestoreError):
    """A slice of the batch is not plainly good: the COPY is abandoned for the merge."""


def plain_columns(frame: pl.DataFrame) -> list[str] | None:
    """The value columns a fast-path COPY of the staged candle frame writes, or None when
    a required value is missing somewhere or vwap/trade_count is present in some rows
    only (the merge keeps stored values for the missing ones)."""
    if frame.height == 0 or not all(_full(frame, c) for c in ("t", *_PRICES, "volume")):
        return None
    names = [*_PRICES, "volume"]
    for optional in ("vwap", "trade_count"):
        if _full(frame, optional):
            names.append(optional)
        elif not _empty(frame, optional):
            return None
    return names


def plain_batch(
    frame: pl.DataFrame, step_us: int, names: list[str] | None = None
) -> PlainBatch | None:
    """The rows split for COPY when every row of the staged candle frame (or a slice of
    it) plainly passes the ingest rules (times present, in range, on the grid and unique;
    prices positive plain decimals with high >= max(open, close) and low <= min(open,
    close); volume a plain decimal >= 0; vwap within [low, high] and trade_count a whole
    number, each all present or all absent), else None. `names` is plain_columns(frame)
    when known."""
    names = plain_columns(frame) if names is None else names
    if names is None:
        return None
    decimals = [c for c in names if c != "trade_count"]
    t = pl.col("t")
    exprs = [
        t.is_between(*TIME_RANGE_US, closed="left").all().alias("in_range"),
        ((t - GRID_ORIGIN_US) % step_us == 0).all().alias("on_grid"),
        (t.n_unique() == pl.len()).alias("unique"),
    ]
    if "trade_count" in names:
        n = pl.col("trade_count").cast(pl.Int32, strict=False)
        exprs.append((n.is_not_null() & (n >= 0)).all().alias("counts"))
    if not all(frame.select(exprs).row(0)):
        return None
    parts = _plain_decimals(frame, decimals)
    if parts is None:
        return None
    o, h, lo, c = (parts[x].approx for x in _PRICES)
    good = (lo > 0) & (h >= np.maximum(o, c)) & (lo <= np.minimum(o, c)) & (h < np.inf)
    good &= parts["volume"].approx >= 0
    if "vwap" in parts:
        vw = parts["vwap"].approx
        good &= (vw >= lo) & (vw <= h)
    if not good.all():
        return None
    counts = None
    if "trade_count" in names:
        counts = frame["trade_count"].cast(pl.Int32).to_numpy()
    return PlainBatch(frame["t"].to_numpy(), parts, counts)


def _groups(value: np.ndarray, count: int) -> list[np.ndarray]:
    """The `count` base-10000 digits of non-negative int64 values, most significant first."""
    return [(value // 10_000**k) % 10_000 for k in range(count - 1, -1, -1)]


def _widths(d: PlainDecimals) -> tuple[int, int]:
    """Base-10000 digits before and after the point that every value of a column fits."""
    whole_groups = max(1, -(-len(str(int(d.whole.max()))) // 4))
    return whole_groups, -(-int(d.scale.max()) // 4)


def _encode(plain: PlainBatch, listing_id: int, timeframe: str) -> bytes:
    """Binary COPY rows of (exchange_instrument_id, timeframe, time, *columns): one
    fixed-width numpy record per row. Every NUMERIC of a column gets
    the same number of base-10000 digits; the leading and trailing zero digits that adds
    are stripped by the server (numeric_recv -> make_result), so "7" and "0007.0000"
    arrive as the same number, with the text's own display scale."""
    tf = timeframe.encode()
    widths = {c: _widths(d) for c, d in plain.decimals.items()}
    fields: list[tuple[Any, ...]] = [
        ("count", ">i2"),
        ("l_len", ">i4"),
        ("listing", ">i8"),
        ("tf_len", ">i4"),
        ("tf", f"S{len(tf)}"),
        ("t_len", ">i4"),
        ("t", ">i8"),
    ]
    for c, (whole, frac) in widths.items():
        fields += [
            (f"{c}_len", ">i4"),
            (f"{c}_ndigits", ">i2"),
            (f"{c}_weight", ">i2"),
            (f"{c}_sign", ">i2"),
            (f"{c}_dscale", ">i2"),
            (f"{c}_digits", ">i2", (whole + frac,)),
        ]
    if plain.trade_count is not None:
        fields += [("n_len", ">i4"), ("n", ">i4")]
    # The fields every row shares are set once, in a template copied into each slice.
    template = np.zeros(1, dtype=np.dtype(fields))
    template["count"] = 3 + len(plain.columns)
    template["l_len"], template["listing"] = 8, listing_id
    template["tf_len"], template["tf"] = len(tf), tf
    template["t_len"] = 8
    for c, (whole, frac) in widths.items():
        template[f"{c}_len"] = 8 + 2 * (whole + frac)
        template[f"{c}_ndigits"] = whole + frac
        template[f"{c}_weight"] = whole - 1
    if plain.trade_count is not None:
        template["n_len"] = 4
    rows = np.repeat(template, len(plain))
    rows["t"] = plain.times_us - PG_EPOCH_US
    for c, (whole, frac) in widths.items():
        d = plain.decimals[c]
        digits = _groups(d.whole, whole)
        if frac:
            # The fraction's digits, left-aligned in `frac` groups of four.
            shift = (10 ** (4 * frac - d.scale.astype(np.int64))).astype(np.int64)
            digits += _groups(d.fraction * shift, frac)
        rows[f"{c}_dscale"] = d.scale
        rows[f"{c}_digits"] = np.stack(digits, axis=1)
    if plain.trade_count is not None:
        rows["n"] = plain.trade_count
    return rows.tobytes()


def copy_candles(
    conn: psycopg.Connection[Any],
    frame: pl.DataFrame,
    listing_id: int,
    timeframe: str,
    step_us: int,
    names: list[str],
    progress: Any = None,
) -> None:
    """COPY the staged candle frame into market.candles, checking and encoding a slice
    while the server writes the one before; `names` is plain_columns(frame). Raises
    NotPlain, with the COPY abandoned, at the first slice that is not plainly good (see
    plain_batch)."""
    columns = ["exchange_instrument_id", "timeframe", '"time"', *names]
    query = f"COPY market.candles ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    # The queued writer sends from a thread, so checking and encoding the next slice
    # overlaps the server's work on this one.
    with conn.cursor() as cur, cur.copy(query, writer=QueuedLibpqWriter(cur)) as copy:
        copy.write(COPY_HEADER)
        for start in range(0, frame.height, _SLICE):
            plain = plain_batch(frame.slice(start, _SLICE), step_us, names)
            if plain is None:
                raise NotPlain(f"rows {start + 1}..{start + _SLICE} need the staged merge")
            copy.write(_encode(plain, listing_id, timeframe))
            if progress is not None:
                progress(min(start + _SLICE, frame.height), frame.height)
        copy.write(COPY_TRAILER)
