"""Timeframes (1m, 5m, 4h, 1d, 1w): the same grammar and bucket grid as the SQL side
(market.timeframe_interval, market.timeframe_bucket)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import psycopg

from tradestore.db.errors import ValidationError

__all__ = [
    "GRID_ORIGIN",
    "GRID_ORIGIN_US",
    "TIMEFRAME_RULE",
    "bucket_start",
    "check_served",
    "served_timeframes",
    "timeframe_delta",
    "timeframe_us",
]

# Every bucket starts on the grid anchored at this Monday midnight UTC: for timeframes
# that divide a day it is the plain UTC grid, and weeks start on Monday.
GRID_ORIGIN = dt.datetime(2000, 1, 3, tzinfo=dt.UTC)
GRID_ORIGIN_US = int(GRID_ORIGIN.timestamp()) * 1_000_000  # as epoch microseconds
TIMEFRAME_RULE = "must be a count and a unit m, h, d or w (1m, 5m, 4h, 1d, 1w)"
_PATTERN = re.compile(r"^([1-9][0-9]{0,3})([mhdw])$")
_UNIT = {
    "m": dt.timedelta(minutes=1),
    "h": dt.timedelta(hours=1),
    "d": dt.timedelta(days=1),
    "w": dt.timedelta(weeks=1),
}


def timeframe_delta(timeframe: str) -> dt.timedelta:
    """The length of a timeframe; ValidationError for anything but <n><m|h|d|w>."""
    match = _PATTERN.match(timeframe or "")
    if not match:
        raise ValidationError("timeframe", TIMEFRAME_RULE, timeframe)
    return int(match.group(1)) * _UNIT[match.group(2)]


def timeframe_us(timeframe: str) -> int:
    """The length of a timeframe in microseconds."""
    return timeframe_delta(timeframe) // dt.timedelta(microseconds=1)


def bucket_start(timeframe: str, at: dt.datetime) -> dt.datetime:
    """Start of the bucket of `timeframe` that holds `at` (a naive time is UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    step = timeframe_delta(timeframe)
    return GRID_ORIGIN + ((at - GRID_ORIGIN) // step) * step


def served_timeframes(base: list[str]) -> str:
    """What bars stored at the `base` timeframes can be served as, for messages."""
    if not base:
        return "none (no bars stored)"
    finest = min(base, key=timeframe_us)
    step = timeframe_delta(finest)
    examples = [
        tf
        for tf in ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")
        if timeframe_delta(tf) >= step and timeframe_delta(tf) % step == dt.timedelta(0)
    ]
    stored = ", ".join(sorted(base, key=timeframe_us))
    return (
        f"a whole multiple of the stored {stored} bars (e.g. {', '.join(examples)})"
        if examples
        else f"a whole multiple of the stored {stored} bars"
    )


def check_served(conn: psycopg.Connection[Any], listing_id: int, timeframe: str) -> None:
    """ValidationError unless the listing's stored bars can serve `timeframe`: a bucket
    must be a whole number of stored bars of one series (7m or 1m from 5m bars cannot be
    built). A listing with no bars at all passes (its answer is simply empty)."""
    step = timeframe_delta(timeframe)
    base = [
        str(r[0])
        for r in conn.execute(
            "SELECT timeframe FROM market.candle_series WHERE exchange_instrument_id = %s",
            (listing_id,),
        ).fetchall()
    ]
    if not base or any(step % timeframe_delta(b) == dt.timedelta(0) for b in base):
        return
    raise ValidationError(
        "timeframe", f"must be {served_timeframes(base)}: the buckets are built from them",
        timeframe,
    )  # fmt: skip
