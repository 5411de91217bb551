"""Exchange trading calendars (exchange_calendars: XKRX for KRX, XNYS for US equities)
for trading-day arithmetic and annualization. A listing's calendar comes from its market
preset (market.market_presets.calendar)."""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any

import psycopg

# Full calendar years the average sessions per year is taken over (fixed, so a backtest's
# annualization does not change with the day it is run).
_YEARS = range(2015, 2025)
# Regular session length in minutes: KRX 09:00-15:30, NYSE 09:30-16:00.
SESSION_MINUTES = {"XKRX": 390, "XNYS": 390}


def is_exchange_calendar(code: str) -> bool:
    return re.fullmatch(r"X[A-Z]{3}", code) is not None


@functools.cache
def _calendar(code: str) -> Any:
    import exchange_calendars as xcals

    return xcals.get_calendar(code, start="2010-01-01")


@functools.cache
def sessions_per_year(code: str) -> float:
    """Average trading sessions per calendar year (about 248 for XKRX, 252 for XNYS)."""
    cal = _calendar(code)
    total = sum(len(cal.sessions_in_range(f"{year}-01-01", f"{year}-12-31")) for year in _YEARS)
    return total / len(_YEARS)


def trading_days_between(code: str, start: dt.date, end: dt.date) -> int:
    """Sessions in [start, end] on the calendar (holidays and weekends excluded)."""
    return len(_calendar(code).sessions_in_range(start.isoformat(), end.isoformat()))


def is_trading_day(code: str, day: dt.date) -> bool:
    return bool(_calendar(code).is_session(day.isoformat()))


def listing_calendar(conn: psycopg.Connection[Any], listing_id: int) -> str | None:
    """The calendar of a listing's market preset, None when it has none."""
    row = conn.execute(
        """SELECT p.calendar FROM market.exchange_instruments ei
             JOIN market.market_presets p ON p.code = ei.preset WHERE ei.id = %s""",
        (listing_id,),
    ).fetchone()
    return row[0] if row else None
