"""Rollups like continuous aggregates: materialized buckets with a watermark, invalidation
of late and corrected bars, real-time aggregation of the tail, gaps, forward fill."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.market.helpers import T0, bars, direct_aggregate, make_listing
from tradestore.db.errors import ValidationError
from tradestore.market.ingest import ingest_candles
from tradestore.market.rollups import (
    add_rollup_timeframe,
    drop_rollup_timeframe,
    refresh_rollups,
    rollup_status,
    rollup_timeframes,
)

H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def served(
    conn: psycopg.Connection, listing: int, timeframe: str, **kw: Any
) -> dict[dt.datetime, tuple]:
    rows = conn.execute(
        'SELECT "time", open, high, low, close, volume FROM market.candles_between(%s, %s, %s, %s)',
        (listing, timeframe, kw.get("start"), kw.get("end")),
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def materialized(conn: psycopg.Connection, listing: int, timeframe: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM market.candle_rollups WHERE exchange_instrument_id = %s AND timeframe = %s",
        (listing, timeframe),
    ).fetchone()[0]


def watermark(conn: psycopg.Connection, listing: int, timeframe: str) -> dt.datetime | None:
    row = conn.execute(
        "SELECT watermark FROM market.rollup_series WHERE exchange_instrument_id = %s AND timeframe = %s",
        (listing, timeframe),
    ).fetchone()
    return row[0] if row else None


@pytest.fixture
def three_days(conn: psycopg.Connection) -> tuple[int, list[dict[str, Any]]]:
    """3 days of 1m bars with a missing hour (a gap) on day 2."""
    gap = set(range(1440 + 600, 1440 + 660))
    rows = bars(3 * 1440, skip=gap)
    report = ingest_candles(conn, rows, exchange="binance", symbol="BTC/USDT")
    assert report.inserted == len(rows)
    return report.listing_id, rows


def test_rollups_equal_the_direct_aggregation_and_gaps_stay_gaps(
    conn: psycopg.Connection, three_days: tuple[int, list[dict[str, Any]]]
) -> None:
    listing, rows = three_days
    assert rollup_timeframes(conn) == ["1h", "1d"]
    before = {
        tf: served(conn, listing, tf) for tf in ("1h", "1d")
    }  # live, nothing materialized yet
    results = refresh_rollups(conn, listing)
    assert [(r.timeframe, r.buckets_written) for r in results] == [("1h", 71), ("1d", 3)]
    assert watermark(conn, listing, "1h") == T0 + 3 * D
    hourly = served(conn, listing, "1h")
    assert hourly == direct_aggregate(rows, H) == before["1h"]
    assert T0 + D + 10 * H not in hourly  # the missing hour is not invented
    assert served(conn, listing, "1d") == direct_aggregate(rows, D) == before["1d"]
    # 1d is built from the 1h rollup, not from the 1m bars again.
    assert conn.execute(
        "SELECT source_timeframe, source_kind FROM market.rollup_series WHERE exchange_instrument_id = %s "
        "AND timeframe = '1d'",
        (listing,),
    ).fetchone() == ("1h", "rollup")
    # The 003 view serves every timeframe.
    counts = dict(
        conn.execute(
            "SELECT timeframe, count(*) FROM bithumb.candles WHERE symbol = 'BTC/USDT' GROUP BY 1"
        ).fetchall()
    )
    assert counts == {"1m": len(rows), "1h": 71, "1d": 3}


def test_any_timeframe_a_user_asks_for(
    conn: psycopg.Connection, three_days: tuple[int, list[dict[str, Any]]]
) -> None:
    listing, rows = three_days
    # Not registered: aggregated live.
    assert served(conn, listing, "15m") == direct_aggregate(rows, dt.timedelta(minutes=15))
    add_rollup_timeframe(conn, "5m")
    add_rollup_timeframe(conn, "4h", retention=dt.timedelta(days=400))
    refresh_rollups(conn, listing)
    sources = dict(
        conn.execute(
            "SELECT timeframe, source_timeframe FROM market.rollup_series WHERE exchange_instrument_id = %s",
            (listing,),
        ).fetchall()
    )
    assert sources == {"5m": "1m", "1h": "5m", "4h": "1h", "1d": "4h"}
    for tf, step in (("5m", dt.timedelta(minutes=5)), ("4h", 4 * H), ("1h", H), ("1d", D)):
        assert served(conn, listing, tf) == direct_aggregate(rows, step), tf
    assert materialized(conn, listing, "5m") == 3 * 288 - 12
    assert conn.execute(
        "SELECT retention FROM system.partitioned_tables WHERE table_name = 'market.candle_rollups_4h'::regclass"
    ).fetchone()[0] == dt.timedelta(days=400)
    with pytest.raises(ValidationError, match="source of another rollup"):
        drop_rollup_timeframe(conn, "4h")  # 1d reads it
    with pytest.raises(ValidationError) as err:
        add_rollup_timeframe(conn, "1m")
    assert (err.value.field, err.value.rule) == ("timeframe", "a rollup must be longer than 1m")


def test_weeks_start_on_monday(conn: psycopg.Connection) -> None:
    listing = make_listing(conn)
    rows = bars(10, start=dt.datetime(2024, 1, 5, tzinfo=dt.UTC), step=D)  # Fri 5 Jan .. Sun 14 Jan
    ingest_candles(conn, rows, listing_id=listing, timeframe="1d")
    weeks = served(conn, listing, "1w")
    assert list(weeks) == [
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 8, tzinfo=dt.UTC),
    ]
    assert weeks == direct_aggregate(rows, dt.timedelta(weeks=1))


def test_refresh_is_incremental_and_late_bars_recompute_only_their_buckets(
    conn: psycopg.Connection, three_days: tuple[int, list[dict[str, Any]]]
) -> None:
    listing, rows = three_days
    refresh_rollups(conn, listing)
    stamps = dict(
        conn.execute(
            'SELECT "time", refreshed_at FROM market.candle_rollups WHERE exchange_instrument_id = %s '
            "AND timeframe = '1h'",
            (listing,),
        ).fetchall()
    )

    # Nothing new: nothing written.
    assert all(
        r.buckets_written == r.buckets_recomputed == 0 for r in refresh_rollups(conn, listing)
    )

    # The missing hour arrives late (below the watermark), and one old bar is corrected.
    late = bars(3 * 1440)[1440 + 600 : 1440 + 660]
    fixed = dict(rows[5], high=str(Decimal(rows[5]["high"]) + 7))
    report = ingest_candles(conn, [*late, fixed], listing_id=listing)
    assert (report.inserted, report.updated) == (60, 1)
    invalid = {
        r[0]
        for r in conn.execute(
            "SELECT timeframe || ' ' || bucket FROM market.rollup_invalidations WHERE exchange_instrument_id = %s",
            (listing,),
        )
    }
    # The changed hours, and the days built from them (carried up the chain at once).
    assert invalid == {
        "1h 2024-01-02 10:00:00+00",
        "1h 2024-01-01 00:00:00+00",
        "1d 2024-01-02 00:00:00+00",
        "1d 2024-01-01 00:00:00+00",
    }

    # Queries are right before the refresh (invalidated buckets are aggregated live) ...
    everything = sorted([*rows[:5], fixed, *rows[6:], *late], key=lambda r: r["time"])
    assert served(conn, listing, "1h") == direct_aggregate(everything, H)
    assert served(conn, listing, "1d") == direct_aggregate(everything, D)
    # ... and after it, only the two invalidated hours (and then their days) were recomputed.
    results = {r.timeframe: r for r in refresh_rollups(conn, listing)}
    assert (results["1h"].buckets_recomputed, results["1h"].buckets_written) == (2, 0)
    assert results["1d"].buckets_recomputed == 2
    changed = {
        t
        for t, at in conn.execute(
            'SELECT "time", refreshed_at FROM market.candle_rollups WHERE exchange_instrument_id = %s '
            "AND timeframe = '1h'",
            (listing,),
        ).fetchall()
        if stamps.get(t) != at
    }
    assert changed == {T0, T0 + D + 10 * H}
    assert served(conn, listing, "1h") == direct_aggregate(everything, H)
    assert served(conn, listing, "1d") == direct_aggregate(everything, D)
    assert conn.execute("SELECT count(*) FROM market.rollup_invalidations").fetchone()[0] == 0


def test_the_real_time_tail_and_complete_buckets(conn: psycopg.Connection) -> None:
    listing = make_listing(conn)
    rows = bars(150)  # 2h30m: the third hour is still open
    ingest_candles(conn, rows[:100], listing_id=listing)
    refresh_rollups(conn, listing)
    assert watermark(conn, listing, "1h") == T0 + H  # only the first hour is complete
    ingest_candles(conn, rows[100:], listing_id=listing)
    tail = conn.execute(
        "SELECT \"time\", bar_count FROM market.candles_between(%s, '1h')", (listing,)
    ).fetchall()
    assert tail == [(T0, 60), (T0 + H, 60), (T0 + 2 * H, 30)]  # materialized + live, partial last
    assert served(conn, listing, "1h") == direct_aggregate(rows, H)
    assert materialized(conn, listing, "1h") == 1
    refresh_rollups(conn, listing)
    assert materialized(conn, listing, "1h") == 2 and watermark(conn, listing, "1h") == T0 + 2 * H
    # Bounds: bucket starts in [start, end).
    assert list(served(conn, listing, "1h", start=T0 + H, end=T0 + 2 * H)) == [T0 + H]
    assert list(served(conn, listing, "1h", start=T0 + 30 * dt.timedelta(minutes=1))) == [
        T0 + H,
        T0 + 2 * H,
    ]


def test_forward_fill_only_when_asked(
    conn: psycopg.Connection, three_days: tuple[int, list[dict[str, Any]]]
) -> None:
    listing, rows = three_days
    refresh_rollups(conn, listing)
    start, end = T0 + D + 9 * H, T0 + D + 12 * H
    plain = conn.execute(
        "SELECT \"time\" FROM market.candles_between(%s, '1h', %s, %s)", (listing, start, end)
    ).fetchall()
    assert [r[0] for r in plain] == [start, start + 2 * H]
    filled = conn.execute(
        'SELECT "time", open, high, low, close, volume, filled, bar_count '
        "FROM market.candles_between(%s, '1h', %s, %s, true)",
        (listing, start, end),
    ).fetchall()
    assert [r[0] for r in filled] == [start, start + H, start + 2 * H]
    prev_close = filled[0][4]
    assert filled[1][1:] == (prev_close, prev_close, prev_close, prev_close, 0, True, 0)
    # A range that starts inside a gap carries the last close from before it.
    inside = conn.execute(
        "SELECT \"time\", close, filled FROM market.candles_between(%s, '1m', %s, %s, true)",
        (
            listing,
            T0 + D + 10 * H + dt.timedelta(minutes=5),
            T0 + D + 10 * H + dt.timedelta(minutes=7),
        ),
    ).fetchall()
    assert [r[2] for r in inside] == [True, True]
    assert inside[0][1] == Decimal(rows[1440 + 599]["close"])


def test_an_ingested_timeframe_is_served_as_ingested(conn: psycopg.Connection) -> None:
    listing = make_listing(conn)
    hourly = bars(48, step=H, seed=7)
    ingest_candles(conn, hourly, listing_id=listing, timeframe="1h")
    refresh_rollups(conn, listing)
    assert materialized(conn, listing, "1h") == 0
    assert served(conn, listing, "1h") == direct_aggregate(hourly, H)
    assert served(conn, listing, "1d") == direct_aggregate(hourly, D)  # built from the ingested 1h
    status = rollup_status(conn)
    assert [(s["timeframe"], s["source"]) for s in status] == [("1d", "raw 1h")]


def test_deleted_bars_invalidate_and_series_follow(
    conn: psycopg.Connection, three_days: tuple[int, list[dict[str, Any]]]
) -> None:
    listing, rows = three_days
    refresh_rollups(conn, listing)
    conn.execute(
        'DELETE FROM market.candles WHERE exchange_instrument_id = %s AND "time" < %s',
        (listing, T0 + H),
    )
    assert (
        conn.execute(
            "SELECT first_time FROM market.candle_series WHERE exchange_instrument_id = %s",
            (listing,),
        ).fetchone()[0]
        == T0 + H
    )
    assert T0 not in served(conn, listing, "1h")
    refresh_rollups(conn, listing)
    assert served(conn, listing, "1d") == direct_aggregate(rows[60:], D)


def test_buckets_then_tail_come_in_time_order_with_their_vwap(conn: psycopg.Connection) -> None:
    """The materialized buckets (with the stored vwap, turnover / volume) and the live tail
    after the watermark arrive in time order, without the caller sorting."""
    listing = make_listing(conn)
    rows = bars(3 * 1440 + 90)
    for row in rows:
        row["vwap"] = row["close"]
    ingest_candles(conn, rows[: 3 * 1440], listing_id=listing)
    refresh_rollups(conn, listing)
    ingest_candles(conn, rows[3 * 1440 :], listing_id=listing)
    got = conn.execute(
        "SELECT \"time\", vwap, bar_count FROM market.candles_between(%s, '1h')", (listing,)
    ).fetchall()
    times = [r[0] for r in got]
    assert times == sorted(times) and len(times) == 72 + 2
    assert [r[2] for r in got[-2:]] == [60, 30]  # the live tail, after the buckets
    for start, vwap, _ in (got[0], got[71], got[73]):
        bucket = [r for r in rows if start <= dt.datetime.fromisoformat(r["time"]) < start + H]
        turnover = sum(Decimal(r["vwap"]) * Decimal(r["volume"]) for r in bucket)
        volume = sum(Decimal(r["volume"]) for r in bucket)
        # PostgreSQL's NUMERIC division (its own result scale), as the rollup computes it.
        assert vwap == conn.execute("SELECT %s::numeric / %s", (turnover, volume)).fetchone()[0]
