"""Pick outcomes: the return after 1, 5 and 20 trading days and whether the target or the
stop was reached first, written to brain.pick_outcomes (aggregated by the view
brain.pick_performance per model and prompt version).

Trading days: for KRX (KOSPI, KOSDAQ) and US (NYSE, NASDAQ) instruments the sessions of
the exchange's calendar (exchange_calendars XKRX, XNYS); a horizon whose session has no
stored close yet is left for a later run. Other instruments (crypto trades every day) count
their stored daily closes.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import psycopg

__all__ = ["HORIZONS", "compute_outcomes", "performance"]

HORIZONS = (1, 5, 20)
_CALENDARS = {"KOSPI": "XKRX", "KOSDAQ": "XKRX", "NYSE": "XNYS", "NASDAQ": "XNYS"}


def _sessions_after(calendar: str, base: date, count: int) -> list[date] | None:
    try:
        import exchange_calendars as xcals
        import pandas as pd
    except ImportError:
        return None
    cal = xcals.get_calendar(calendar)
    start = pd.Timestamp(base)
    if start < cal.first_session or start >= cal.last_session:
        return None
    sessions = cal.sessions_in_range(start + pd.Timedelta(days=1), cal.last_session)[:count]
    return [s.date() for s in sessions]


def compute_outcomes(conn: psycopg.Connection[Any], *, since: date | None = None) -> int:
    """(Re)compute outcomes of BUY and SELL picks whose horizons have closes; returns how
    many outcome rows were written."""
    picks = conn.execute(
        """SELECT dp.pick_id, dp.pick_date, dp.action, dp.target_price, dp.stop_price, r.stock_id, i.market_type
             FROM brain.daily_picks dp
             JOIN brain.ai_reports r ON r.report_id = dp.report_id
             JOIN market.instruments i ON i.id = r.stock_id
            WHERE dp.action IN ('BUY', 'SELL') AND (%s::date IS NULL OR dp.pick_date >= %s)
              AND NOT EXISTS (SELECT 1 FROM brain.pick_outcomes o
                               WHERE o.pick_id = dp.pick_id AND o.horizon_days = %s)""",
        (since, since, max(HORIZONS)),
    ).fetchall()
    written = 0
    for pick_id, pick_date, action, target, stop, stock_id, market_type in picks:
        base = conn.execute(
            """SELECT trade_date, close_price FROM market.daily_prices
                WHERE stock_id = %s AND trade_date <= %s ORDER BY trade_date DESC LIMIT 1""",
            (stock_id, pick_date),
        ).fetchone()
        if base is None:
            continue
        bars = conn.execute(
            """SELECT trade_date, high_price, low_price, close_price FROM market.daily_prices
                WHERE stock_id = %s AND trade_date > %s ORDER BY trade_date LIMIT 400""",
            (stock_id, pick_date),
        ).fetchall()
        by_date = {b[0]: b for b in bars}
        calendar = _CALENDARS.get(market_type or "")
        sessions = _sessions_after(calendar, pick_date, max(HORIZONS)) if calendar else None
        for horizon in HORIZONS:
            if sessions is not None:
                if len(sessions) < horizon or sessions[horizon - 1] not in by_date:
                    continue
                exit_date = sessions[horizon - 1]
                window = [b for b in bars if b[0] <= exit_date]
            else:
                if len(bars) < horizon:
                    continue
                window = bars[:horizon]
                exit_date = window[-1][0]
            hit_target, hit_stop = _first_hit(window, action, target, stop)
            exit_close = by_date[exit_date][3]
            ret = exit_close / base[1] - 1
            if action == "SELL":
                ret = -ret
            conn.execute(
                """INSERT INTO brain.pick_outcomes (pick_id, horizon_days, base_date, base_close, exit_date,
                       exit_close, return_pct, hit_target, hit_stop)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (pick_id, horizon_days) DO UPDATE SET
                       base_date = EXCLUDED.base_date, base_close = EXCLUDED.base_close,
                       exit_date = EXCLUDED.exit_date, exit_close = EXCLUDED.exit_close,
                       return_pct = EXCLUDED.return_pct, hit_target = EXCLUDED.hit_target,
                       hit_stop = EXCLUDED.hit_stop, computed_at = now()""",
                (
                    pick_id,
                    horizon,
                    base[0],
                    base[1],
                    exit_date,
                    exit_close,
                    ret * 100,
                    hit_target,
                    hit_stop,
                ),
            )
            written += 1
    return written


def _first_hit(
    window: list[tuple[Any, ...]], action: str, target: Decimal | None, stop: Decimal | None
) -> tuple[bool, bool]:
    """Which level the price reached first; both on one day counts as the stop (the daily
    bar does not say which came first, and the cautious reading is the loss)."""
    for _, high, low, close in window:
        high = high if high is not None else close
        low = low if low is not None else close
        if action == "BUY":
            stopped = stop is not None and low <= stop
            reached = target is not None and high >= target
        else:
            stopped = stop is not None and high >= stop
            reached = target is not None and low <= target
        if stopped:
            return False, True
        if reached:
            return True, False
    return False, False


def performance(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    cur = conn.execute(
        """SELECT * FROM brain.pick_performance
            ORDER BY model_name, prompt_name, prompt_version NULLS FIRST, horizon_days"""
    )
    cols = [d.name for d in cur.description or []]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
