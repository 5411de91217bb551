"""Rollup timeframes (materialized like continuous aggregates, see market/sql/rollups.sql)
from Python: which timeframes are kept, and incremental refresh series by series."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from tradestore.db.connect import connect
from tradestore.db.errors import translate
from tradestore.market.timeframes import timeframe_delta

__all__ = [
    "RefreshResult",
    "add_rollup_timeframe",
    "drop_rollup_timeframe",
    "refresh_rollups",
    "rollup_status",
    "rollup_timeframes",
]


@dataclass(frozen=True)
class RefreshResult:
    listing_id: int
    timeframe: str
    buckets_written: int
    buckets_recomputed: int
    watermark: dt.datetime | None


def _run(
    target: str | psycopg.Connection[Any], fn: Callable[[psycopg.Connection[Any]], Any]
) -> Any:
    try:
        if isinstance(target, psycopg.Connection):
            return fn(target)
        with connect(target, autocommit=True) as conn:
            return fn(conn)
    except psycopg.Error as exc:
        raise translate(exc) from exc


def add_rollup_timeframe(
    target: str | psycopg.Connection[Any], timeframe: str, retention: dt.timedelta | None = None
) -> None:
    """Keep `timeframe` (5m, 4h, 1w ...) as materialized buckets from now on (idempotent)."""
    timeframe_delta(timeframe)
    _run(
        target,
        lambda c: c.execute("SELECT market.add_rollup_timeframe(%s, %s)", (timeframe, retention)),
    )


def drop_rollup_timeframe(target: str | psycopg.Connection[Any], timeframe: str) -> None:
    """Stop keeping `timeframe`, dropping its materialized buckets."""
    _run(target, lambda c: c.execute("SELECT market.drop_rollup_timeframe(%s)", (timeframe,)))


def rollup_timeframes(target: str | psycopg.Connection[Any]) -> list[str]:
    """The rollup timeframes, shortest first."""
    return _run(
        target,
        lambda c: [
            r[0]
            for r in c.execute(
                "SELECT timeframe FROM market.rollup_timeframes ORDER BY market.timeframe_us(timeframe)"
            )
        ],
    )


def rollup_status(target: str | psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """One row per rollup series: source, watermark, buckets waiting for a recompute."""

    def query(c: psycopg.Connection[Any]) -> list[dict[str, Any]]:
        cur = c.execute(
            """SELECT x.code || ':' || ei.exchange_symbol AS listing, rs.exchange_instrument_id AS listing_id,
                      rs.timeframe, rs.source_kind || ' ' || rs.source_timeframe AS source, rs.watermark,
                      rs.refreshed_at,
                      (SELECT count(*) FROM market.rollup_invalidations i
                        WHERE i.exchange_instrument_id = rs.exchange_instrument_id
                          AND i.timeframe = rs.timeframe) AS invalidated
                 FROM market.rollup_series rs
                 JOIN market.exchange_instruments ei ON ei.id = rs.exchange_instrument_id
                 JOIN market.exchanges x ON x.id = ei.exchange_id
                ORDER BY 1, market.timeframe_us(rs.timeframe)"""
        )
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur]

    return _run(target, query)


def series_to_refresh(
    conn: psycopg.Connection[Any], listing_id: int | None = None, timeframe: str | None = None
) -> list[tuple[int, str]]:
    """(listing, timeframe) pairs refresh_rollups walks, finer timeframes first."""
    return [
        (int(r[0]), str(r[1]))
        for r in conn.execute(
            """SELECT l.listing, t.timeframe
             FROM (SELECT DISTINCT exchange_instrument_id AS listing FROM market.candle_series
                    WHERE %(l)s::bigint IS NULL OR exchange_instrument_id = %(l)s) l
            CROSS JOIN market.rollup_timeframes t
            WHERE %(tf)s::text IS NULL OR t.timeframe = %(tf)s
            ORDER BY market.timeframe_us(t.timeframe), l.listing""",
            {"l": listing_id, "tf": timeframe},
        )
    ]


def refresh_rollups(
    target: str | psycopg.Connection[Any],
    listing_id: int | None = None,
    timeframe: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[RefreshResult]:
    """Refresh every rollup series (of one listing and/or timeframe), each in its own
    transaction on an autocommit connection, finer timeframes first. Only invalidated
    buckets and the complete buckets past each watermark are computed."""

    def run(conn: psycopg.Connection[Any]) -> list[RefreshResult]:
        todo = series_to_refresh(conn, listing_id, timeframe)
        results = []
        for i, (listing, tf) in enumerate(todo, start=1):
            with conn.transaction():
                written, recomputed, watermark = conn.execute(
                    "SELECT * FROM market.refresh_rollup(%s, %s)", (listing, tf)
                ).fetchone()  # type: ignore[misc]
            results.append(RefreshResult(listing, tf, written, recomputed, watermark))
            if progress is not None:
                progress(i, len(todo))
        return results

    return _run(target, run)
