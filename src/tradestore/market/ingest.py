"""Bulk ingest of candles, trade prints, tickers and order books.

A batch is read (tradestore.market.readers), its partitions are made in a short
transaction of their own (making a partition locks the parent table), then in one
transaction it is binary-COPYed into a temporary staging table (psycopg 3, with
`copy.set_types`) and merged by the market.merge_* SQL function, which validates every
row, writes the good ones and lists the bad ones. Nothing is half-written: the batch's
good rows are committed together or not at all. Re-ingesting the same data adds nothing;
a row that differs from the stored one replaces it (for candles this invalidates the
rollup buckets and indicators computed from the old bar).

A collector stores trades, tickers and order books of many listings at once
(`ingest_listings`): one stage, one COPY and one merge per kind, each row carrying its
listing; the same merge functions check, dedupe and merge them per listing.

Candles have a fast path (tradestore.market.candle_copy): a plainly good batch for a span
the series holds no bars in is binary-COPYed straight into market.candles, inside a
savepoint; anything the database refuses there falls back to the staged merge.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from tradestore.db.connect import connect
from tradestore.db.errors import ValidationError, translate
from tradestore.market.candle_copy import NotPlain, copy_candles, plain_columns
from tradestore.market.listings import ensure_listing
from tradestore.market.readers import KINDS, TIME_RANGE_US, StagedBatch, read_batch
from tradestore.market.retention import expired_imported_rows
from tradestore.market.timeframes import timeframe_delta, timeframe_us

__all__ = [
    "IngestReport",
    "Progress",
    "Rejected",
    "copy_batch",
    "copy_candles_directly",
    "ingest",
    "ingest_candles",
    "ingest_listings",
    "ingest_order_books",
    "ingest_tickers",
    "ingest_trades",
    "stage_and_merge",
]

Progress = Callable[[int, int], None]
"""Called with (rows copied so far, rows in the batch)."""

_COPY_SLICE = 50_000
_stage_names = itertools.count(1)

_MERGE = {
    "candles": "SELECT * FROM market.merge_candles({stage}::regclass, %s, %s)",
    "trades": "SELECT * FROM market.merge_trades({stage}::regclass, %s)",
    "tickers": "SELECT * FROM market.merge_tickers({stage}::regclass, %s)",
    "orderbooks": "SELECT * FROM market.merge_order_books({stage}::regclass, %s)",
}


@dataclass(frozen=True)
class Rejected:
    """A row that was not written: where it was and which rule it broke."""

    source: str
    line: int
    field: str
    rule: str
    value: str | None
    # The listing the row was for, in a batch of many listings (None: the batch's one).
    listing: int | None = None

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}"
        if self.listing is not None:
            where = f"{self.source}: listing {self.listing}: line {self.line}"
        return f"{where}: {self.field}: {self.rule} (value: {self.value!r})"


@dataclass
class IngestReport:
    kind: str
    source: str
    listing_id: int | None  # None: rows of many listings (ingest_listings)
    timeframe: str | None
    staged: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    partitions_made: int = 0
    seconds: float = 0.0
    # How the rows went in: "copy" (candles' fast path, straight into the table) or
    # "merge" (staged, checked row by row in SQL, merged).
    method: str = "merge"
    # What was created to hold the rows ("exchange nasdaq (EQUITY)", ...).
    created: list[str] = field(default_factory=list)
    # Things the user should know that are not errors (rows older than the retention).
    warnings: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.inserted + self.updated

    @property
    def rows_per_second(self) -> float:
        return self.staged / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"{self.source}: {self.staged} rows, {self.inserted} new, {self.updated} replaced, "
            f"{self.unchanged} unchanged, {len(self.rejected)} rejected"
        )


@contextmanager
def _connection(target: str | psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(target, psycopg.Connection):
        yield target
    else:
        with connect(target, autocommit=True) as conn:
            yield conn


def _partition_days(batch: StagedBatch) -> list[Any]:
    """The distinct UTC days of the batch's readable times (the SQL side folds them into
    its months or days); unreadable and out-of-range times are rejected row by row."""
    days = (
        batch.frame.lazy()
        .select(pl.col("t"))
        .filter(pl.col("t").is_between(*TIME_RANGE_US, closed="left"))
        .select(pl.col("t").cast(pl.Datetime("us", "UTC")).dt.truncate("1d").unique().sort())
        .collect()
        .to_series()
    )
    return days.to_list()


def ensure_partitions(conn: psycopg.Connection[Any], table: str, batch: StagedBatch) -> int:
    """Make the partitions of `table` the batch's rows fall in; returns how many were made."""
    days = _partition_days(batch)
    if not days:
        return 0
    row = conn.execute(
        "SELECT market.ensure_partitions_for(%s::regclass, %s::timestamptz[])", (table, days)
    ).fetchone()
    return int(row[0]) if row else 0


def copy_batch(
    conn: psycopg.Connection[Any],
    stage: sql.Composable,
    batch: StagedBatch,
    progress: Progress | None,
) -> None:
    """Binary-COPY the batch into `stage` (psycopg 3, `copy.set_types`, one row at a time
    through psycopg's C formatter)."""
    frame = batch.frame
    total = len(batch)
    done = 0
    # Columns the source does not have at all stay NULL in the stage without being sent.
    types = dict(zip(batch.kind.stage_columns, batch.kind.stage_types, strict=True))
    types["listing"] = "int8"  # rows of many listings (ingest_listings)
    columns = [
        c for c in frame.columns if c in ("line", "t") or frame[c].null_count() < frame.height
    ]
    frame = frame.select(columns)
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        stage, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        copy.set_types([types[c] for c in columns])
        for chunk in frame.iter_slices(_COPY_SLICE):
            for row in chunk.iter_rows():
                copy.write_row(row)
            done += chunk.height
            if progress is not None:
                progress(done, total)


def stage_and_merge(
    conn: psycopg.Connection[Any],
    batch: StagedBatch,
    listing_id: int | None,
    timeframe: str | None = None,
    progress: Progress | None = None,
) -> tuple[int, int, int, int, list[Rejected]]:
    """COPY the batch into a temporary staging table and merge it, in the caller's
    transaction. Returns (staged, inserted, updated, unchanged, rejects). With listing_id
    None the batch's `listing` column names each row's listing (not for candles)."""
    kind = batch.kind.name
    stage = f"ingest_stage_{next(_stage_names)}"
    conn.execute(
        sql.SQL("CREATE TEMP TABLE {} OF {} ON COMMIT DROP").format(
            sql.Identifier(stage), sql.SQL(batch.kind.stage_type)
        )
    )
    copy_batch(conn, sql.Identifier("pg_temp", stage), batch, progress)
    params: tuple[Any, ...] = (listing_id, timeframe) if kind == "candles" else (listing_id,)
    merge = sql.SQL(_MERGE[kind]).format(stage=sql.Literal(f"pg_temp.{stage}"))
    staged, inserted, updated, unchanged, _ = conn.execute(merge, params).fetchone()  # type: ignore[misc]
    rejects = [
        Rejected(batch.source, line, fld, rule, value, None if listing_id else listing)
        for line, fld, rule, value, listing in conn.execute(
            "SELECT line, field, rule, value, listing FROM pg_temp.ingest_rejects"
            " ORDER BY listing, line"
        )
    ]
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier("pg_temp", stage)))
    return int(staged), int(inserted), int(updated), int(unchanged), rejects


def span_has_bars(
    conn: psycopg.Connection[Any], listing_id: int, timeframe: str, lo_us: int, hi_us: int
) -> bool:
    """Whether the series holds any bar from lo_us to hi_us (epoch microseconds)."""
    row = conn.execute(
        """SELECT EXISTS (SELECT 1 FROM market.candles c
                           WHERE c.exchange_instrument_id = %s AND c.timeframe = %s
                             AND c."time" >= market.epoch_us_time(%s)
                             AND c."time" <= market.epoch_us_time(%s))""",
        (listing_id, timeframe, lo_us, hi_us),
    ).fetchone()
    return bool(row and row[0])


def copy_candles_directly(
    conn: psycopg.Connection[Any],
    batch: StagedBatch,
    listing_id: int,
    timeframe: str,
    progress: Progress | None = None,
) -> tuple[int, int, int, int, list[Rejected]] | None:
    """The fast path, in the caller's transaction: COPY a plainly good candle batch
    straight into market.candles when the series has no bars in the batch's span.
    Returns the counts as stage_and_merge does, or None (nothing written) when the batch
    needs the staged merge: a row that might break a rule, bars already stored in the
    span, or anything the database refused."""
    names = plain_columns(batch.frame)
    if names is None:
        return None
    times = batch.frame["t"]
    if span_has_bars(conn, listing_id, timeframe, int(times.min()), int(times.max())):  # type: ignore[arg-type]
        return None
    try:
        with conn.transaction():
            copy_candles(
                conn, batch.frame, listing_id, timeframe, timeframe_us(timeframe), names, progress
            )
    except (NotPlain, psycopg.errors.IntegrityError, psycopg.errors.DataError):
        # A slice that might break a rule, or a row refused by a constraint or the
        # statement trigger (or a bar written meanwhile): the savepoint undid the COPY;
        # the staged merge checks and reports row by row.
        return None
    return len(batch), len(batch), 0, 0, []


def ingest(
    target: str | psycopg.Connection[Any],
    kind: str,
    source: Any,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    listing_id: int | None = None,
    timeframe: str | None = None,
    create_listing: bool = True,
    instrument_kind: str | None = None,
    imported: bool = True,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest `source` as `kind` for one listing (by id, or by exchange and symbol; created
    when missing unless create_listing=False, of `instrument_kind` (crypto, equity, ...;
    see listings.ensure_listing) when given). `target` is a conninfo or a connection; a
    connection in autocommit mode gets the partitions made in their own transaction.

    With `imported` (the default: bulk ingest loads history) the batch's time span is
    recorded as imported, which table retention keeps unless the table is opted in
    (market.imported_spans); a collector writing live data passes imported=False."""
    if kind not in KINDS:
        raise ValidationError("kind", f"must be one of {', '.join(KINDS)}", kind)
    if kind == "candles":
        timeframe_delta(timeframe or "")
    elif timeframe is not None:
        raise ValidationError("timeframe", "applies to candles only", timeframe)
    started = time.perf_counter()
    batch = read_batch(source, kind)
    created: list[str] = []
    warnings: list[str] = []
    try:
        with _connection(target) as conn:
            if listing_id is None:
                if not exchange or not symbol:
                    raise ValidationError(
                        "listing", "needs a listing id or an exchange and a symbol", None
                    )
                with conn.transaction():
                    found = ensure_listing(
                        conn, exchange, symbol, create=create_listing, kind=instrument_kind
                    )
                listing_id, created = found.id, found.created
            with conn.transaction():
                made = ensure_partitions(conn, batch.kind.table, batch)
            with conn.transaction():
                counts = None
                method = "merge"
                if kind == "candles" and timeframe is not None:
                    counts = copy_candles_directly(conn, batch, listing_id, timeframe, progress)
                    method = "copy" if counts is not None else method
                if counts is None:
                    counts = stage_and_merge(conn, batch, listing_id, timeframe, progress)
                staged, inserted, updated, unchanged, rejects = counts
                if imported and (inserted or updated or unchanged):
                    warnings += _record_import(conn, batch, listing_id)
    except psycopg.Error as exc:
        raise translate(exc) from exc
    read_rejects = [Rejected(batch.source, *r) for r in batch.rejects]
    return IngestReport(
        kind=kind,
        source=batch.source,
        listing_id=listing_id,
        timeframe=timeframe,
        staged=staged + len(read_rejects),
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        rejected=sorted([*read_rejects, *rejects], key=lambda r: r.line),
        partitions_made=made,
        seconds=time.perf_counter() - started,
        method=method,
        created=created,
        warnings=warnings,
    )


def ingest_listings(
    conn: psycopg.Connection[Any],
    kind: str,
    rows: Mapping[int, Sequence[Any]],
    *,
    imported: bool = False,
) -> IngestReport:
    """Store rows of many listings ({listing id: rows}) of one kind (trades, tickers or
    orderbooks) with one stage, one COPY and one merge: the same merge function as
    `ingest`, each staged row carrying its listing, so rules, duplicates and existing rows
    are per listing. Line numbers count each listing's rows from 1; a reject names its
    listing. Runs in the caller's transaction when there is one (a collector flushes every
    kind in one), else in its own. `imported` as in `ingest` (a collector: False)."""
    if kind not in KINDS or kind == "candles":
        raise ValidationError("kind", "must be trades, tickers or orderbooks", kind)
    started = time.perf_counter()
    listings = [(listing, len(group)) for listing, group in rows.items() if group]
    if not listings:
        return IngestReport(kind=kind, source="<rows>", listing_id=None, timeframe=None)
    batch = read_batch((r for _, group in rows.items() for r in group), kind)
    # Each row is one frame row, in order (read_batch refuses anything but a mapping or a
    # sequence): each gets its listing and its place among that listing's rows.
    batch.frame = batch.frame.with_columns(
        line=pl.Series([n for _, count in listings for n in range(1, count + 1)], dtype=pl.Int32),
        listing=pl.Series([lid for lid, count in listings for _ in range(count)], dtype=pl.Int64),
    )
    warnings: list[str] = []
    try:
        with conn.transaction():
            made = ensure_partitions(conn, batch.kind.table, batch)
            staged, inserted, updated, unchanged, rejects = stage_and_merge(conn, batch, None)
            if imported:
                for listing, _ in listings:
                    part = batch.frame.filter(pl.col("listing") == listing)
                    warnings += _record_import(conn, replace(batch, frame=part), listing)
    except psycopg.Error as exc:
        raise translate(exc) from exc
    return IngestReport(
        kind=kind,
        source=batch.source,
        listing_id=None,
        timeframe=None,
        staged=staged,
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        rejected=rejects,
        partitions_made=made,
        seconds=time.perf_counter() - started,
        warnings=sorted(set(warnings)),
    )


def _record_import(conn: psycopg.Connection[Any], batch: StagedBatch, listing_id: int) -> list[str]:
    """Record the batch's span as imported history (in the ingest's transaction), and
    warn when rows are older than the table's retention."""
    times = batch.frame["t"].drop_nulls()
    times = times.filter(times.is_between(*TIME_RANGE_US, closed="left"))
    if times.is_empty():
        return []
    first = pl.select(pl.lit(times.min()).cast(pl.Datetime("us", "UTC"))).item()
    last = pl.select(pl.lit(times.max()).cast(pl.Datetime("us", "UTC"))).item()
    table = batch.kind.table
    conn.execute(
        "SELECT market.record_import(%s::regclass, %s, %s, %s)", (table, listing_id, first, last)
    )
    expired = expired_imported_rows(conn, table, first)
    if expired is None:
        return []
    keep, includes_imported = expired
    days = keep.days if keep.days and not keep.seconds else None
    shown = f"{days} days" if days else str(keep)
    name = table.split(".")[1]
    if includes_imported:
        return [
            f"rows from {first:%Y-%m-%d} are older than {table}'s retention ({shown}) and "
            "imported history expires with it: the next retention run drops them"
        ]
    return [
        f"rows from {first:%Y-%m-%d} are older than {table}'s retention ({shown}); "
        "retention applies to live data only, so this imported history is kept "
        f"(`tradestore market retention set {name} ... --include-imported` expires it too)"
    ]


def ingest_candles(
    target: str | psycopg.Connection[Any], source: Any, *, timeframe: str = "1m", **kw: Any
) -> IngestReport:
    """Ingest OHLCV bars (columns time, open, high, low, close, volume[, vwap, trade_count])."""
    return ingest(target, "candles", source, timeframe=timeframe, **kw)


def ingest_trades(target: str | psycopg.Connection[Any], source: Any, **kw: Any) -> IngestReport:
    """Ingest public trade prints (time, trade_id, price, quantity, side)."""
    return ingest(target, "trades", source, **kw)


def ingest_tickers(target: str | psycopg.Connection[Any], source: Any, **kw: Any) -> IngestReport:
    """Ingest 24h tickers (seed 003 columns)."""
    return ingest(target, "tickers", source, **kw)


def ingest_order_books(
    target: str | psycopg.Connection[Any], source: Any, **kw: Any
) -> IngestReport:
    """Ingest order book snapshots (time, bids, asks as lists of [price, size])."""
    return ingest(target, "orderbooks", source, **kw)
