"""Retention by dropping whole partitions, and making partitions ahead (see
market/sql/retention.sql)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import psycopg

from tradestore.db.errors import ValidationError
from tradestore.db.query import scalar
from tradestore.market.rollups import _run
from tradestore.market.timeframes import timeframe_delta

__all__ = [
    "TABLES",
    "DroppedPartition",
    "apply_retention",
    "expired_imported_rows",
    "parse_retention",
    "premake_partitions",
    "retention_policies",
    "retention_table",
    "set_retention",
]

# Names the CLI accepts (seed 003's names too) -> partitioned tables.
TABLES = {
    "candles": "market.candles",
    "indicators": "market.technical_indicators",
    "technical_indicators": "market.technical_indicators",
    "tickers": "market.tickers",
    "orderbooks": "market.order_books",
    "order_books": "market.order_books",
    "trades": "market.trade_prints",
    "transactions": "market.trade_prints",
    "trade_prints": "market.trade_prints",
    "daily_prices": "market.daily_prices",
}
_DURATION = re.compile(r"^\s*(\d+)\s*(d|day|days|w|week|weeks|h|hour|hours)\s*$", re.I)


@dataclass(frozen=True)
class DroppedPartition:
    table: str
    partition: str
    upper_bound: dt.datetime
    dropped: bool
    # The partition holds imported rows of a table not opted in: kept (its live rows
    # deleted; a candle partition kept whole) instead of dropped.
    imported_kept: bool = False


def parse_retention(text: str | None) -> dt.timedelta | None:
    """'30d', '12w', '48h' -> timedelta; 'none', 'forever' or '' -> None (keep forever)."""
    if text is None or text.strip().lower() in ("", "none", "forever", "keep"):
        return None
    match = _DURATION.match(text)
    if not match:
        raise ValidationError("retention", "must be like 30d, 12w or 48h (or none)", text)
    count, unit = int(match.group(1)), match.group(2)[0].lower()
    if count <= 0:
        raise ValidationError("retention", "must be positive", text)
    return {
        "d": dt.timedelta(days=count),
        "w": dt.timedelta(weeks=count),
        "h": dt.timedelta(hours=count),
    }[unit]


def retention_table(table: str, timeframe: str | None = None) -> str:
    """The partitioned table behind a name: candles, tickers, orderbooks, trades,
    indicators, daily_prices, or rollups with a timeframe (each rollup timeframe is a
    partition tree of its own)."""
    if table in ("rollups", "candle_rollups"):
        if not timeframe:
            raise ValidationError("timeframe", "is required for rollups", None)
        timeframe_delta(timeframe)
        return f"market.candle_rollups_{timeframe}"
    if timeframe:
        raise ValidationError(
            "timeframe",
            "applies to rollups only (ingested candles share one partition tree)",
            timeframe,
        )
    if table not in TABLES:
        raise ValidationError(
            "table", f"must be one of {', '.join(sorted(TABLES))} or rollups", table
        )
    return TABLES[table]


def _existing(conn: psycopg.Connection[Any], name: str) -> str:
    if scalar(conn, "SELECT to_regclass(%s)", (name,)) is None:
        raise ValidationError("table", "does not exist (is the rollup timeframe added?)", name)
    return name


def set_retention(
    target: str | psycopg.Connection[Any],
    table: str,
    retention: dt.timedelta | None,
    timeframe: str | None = None,
    *,
    include_imported: bool | None = None,
) -> str:
    """Keep `table`'s rows for `retention` (None: forever). Imported history (rows
    written by `ingest`) is kept regardless unless `include_imported` is True; None
    leaves that choice as it was. Returns the table name."""
    name = retention_table(table, timeframe)

    def apply(c: psycopg.Connection[Any]) -> None:
        c.execute("SELECT market.set_retention(%s::regclass, %s)", (_existing(c, name), retention))
        if include_imported is not None:
            c.execute(
                "SELECT market.set_retention_includes_imported(%s::regclass, %s)",
                (name, include_imported),
            )

    _run(target, apply)
    return name


def expired_imported_rows(
    conn: psycopg.Connection[Any], table: str, before: dt.datetime | None
) -> tuple[dt.timedelta, bool] | None:
    """When `table` has a retention and `before` (the oldest imported row) is older than
    it: (the retention, whether imported rows expire too). None otherwise."""
    row = conn.execute(
        """SELECT pt.retention,
                  EXISTS (SELECT 1 FROM market.retention_includes_imported ri
                           WHERE ri.table_name = market.qualified_name(pt.table_name))
             FROM system.partitioned_tables pt
            WHERE pt.table_name = %s::regclass AND pt.retention IS NOT NULL
              AND %s < now() - pt.retention""",
        (table, before),
    ).fetchone()
    return None if row is None or before is None else (row[0], bool(row[1]))


def retention_policies(target: str | psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every registered market table: partition unit, partitions made ahead, retention,
    partition count."""

    def query(c: psycopg.Connection[Any]) -> list[dict[str, Any]]:
        cur = c.execute(
            """SELECT n.nspname || '.' || c.relname AS table, p.interval_unit AS unit, p.premake, p.retention,
                      EXISTS (SELECT 1 FROM market.retention_includes_imported ri
                               WHERE ri.table_name = n.nspname || '.' || c.relname)
                          AS includes_imported,
                      (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = p.table_name) AS partitions
                 FROM system.partitioned_tables p
                 JOIN pg_class c ON c.oid = p.table_name::oid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'market'
                ORDER BY 1"""
        )
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur]

    return _run(target, query)


def apply_retention(
    target: str | psycopg.Connection[Any],
    *,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    table: str | None = None,
    timeframe: str | None = None,
) -> list[DroppedPartition]:
    """Drop every partition whose rows are all older than its table's retention (or, with
    dry_run, list them)."""
    name = retention_table(table, timeframe) if table else None
    rows = _run(
        target,
        lambda c: c.execute(
            "SELECT table_name, partition_name, upper_bound, dropped, imported_kept "
            "FROM market.apply_retention(coalesce(%s, now()), %s, %s::regclass)",
            (now, dry_run, name and _existing(c, name)),
        ).fetchall(),
    )
    return [DroppedPartition(*r) for r in rows]


def premake_partitions(target: str | psycopg.Connection[Any]) -> int:
    """Make partitions ahead for every registered table; returns how many were made."""
    return int(_run(target, lambda c: scalar(c, "SELECT market.premake_partitions()")))
