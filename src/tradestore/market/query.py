"""Read bars and indicators as polars or pandas DataFrames, and export them.

Bars come from market.candles_between: ingested bars when the listing has the timeframe
ingested, else its rollup, materialized buckets plus the not-yet-materialized tail
aggregated on the fly (real-time aggregation). Prices and volumes are Decimal columns by
default (NUMERIC stays exact); numeric="float" gives float64 columns for number
crunching where the last digits do not matter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import polars as pl
import psycopg

from tradestore.db.connect import connect
from tradestore.db.errors import ValidationError, translate
from tradestore.extras import requires_extra
from tradestore.market.indicators import INDICATOR_COLUMNS
from tradestore.market.listings import find_listing_id
from tradestore.market.timeframes import timeframe_delta

__all__ = ["candles", "candles_pandas", "export", "indicators", "indicators_pandas"]

Numeric = Literal["decimal", "float"]
_PRICE_COLUMNS = ("open", "high", "low", "close", "volume", "vwap")


@contextmanager
def _connection(target: str | psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    try:
        if isinstance(target, psycopg.Connection):
            yield target
        else:
            with connect(target, autocommit=True) as conn:
                yield conn
    except psycopg.Error as exc:
        raise translate(exc) from exc


def _listing(
    conn: psycopg.Connection[Any], listing_id: int | None, exchange: str | None, symbol: str | None
) -> int:
    if listing_id is not None:
        return listing_id
    if not exchange or not symbol:
        raise ValidationError("listing", "needs a listing id or an exchange and a symbol", None)
    found = find_listing_id(conn, exchange, symbol)
    if found is None:
        raise ValidationError("symbol", f"is not listed on {exchange}", symbol)
    return found


def _frame(
    names: Sequence[str], rows: list[tuple[Any, ...]], schema: dict[str, Any]
) -> pl.DataFrame:
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    series = []
    for name, values in zip(names, columns, strict=True):
        dtype = schema.get(name)
        try:
            series.append(pl.Series(name, list(values), dtype=dtype, strict=False))
        except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError) as exc:
            raise ValidationError(
                name, "does not fit a polars Decimal; read with numeric='float'", None
            ) from exc
    return pl.DataFrame(series)


def candles(
    target: str | psycopg.Connection[Any],
    *,
    timeframe: str = "1m",
    listing_id: int | None = None,
    exchange: str | None = None,
    symbol: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    fill: bool = False,
    numeric: Numeric = "decimal",
) -> pl.DataFrame:
    """Bars of one listing at `timeframe`, bucket start in [start, end), by time.

    Columns: time (UTC), open, high, low, close, volume, vwap, trade_count, bar_count
    (source bars in the bucket) and filled (a forward-filled empty bucket, only with
    fill=True; without it gaps stay gaps)."""
    timeframe_delta(timeframe)
    cast = "::float8" if numeric == "float" else ""
    names = ["time", *_PRICE_COLUMNS, "trade_count", "bar_count", "filled"]
    with _connection(target) as conn:
        listing = _listing(conn, listing_id, exchange, symbol)
        rows = conn.execute(
            f"""SELECT "time", open{cast}, high{cast}, low{cast}, close{cast}, volume{cast}, vwap{cast},
                       trade_count, bar_count, filled
                  FROM market.candles_between(%s, %s, %s, %s, %s)""",
            (listing, timeframe, start, end, fill),
        ).fetchall()
    price = pl.Float64 if numeric == "float" else None
    schema: dict[str, Any] = {
        "time": pl.Datetime("us", "UTC"),
        "trade_count": pl.Int64,
        "bar_count": pl.Int32,
        "filled": pl.Boolean,
    }
    schema.update({c: price for c in _PRICE_COLUMNS})
    return _frame(names, rows, schema)


def _require_research(feature: str) -> None:
    """pandas, and pyarrow, through which polars converts to pandas."""
    with requires_extra("research", feature):
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401


def candles_pandas(target: str | psycopg.Connection[Any], **kw: Any) -> Any:
    """candles() as a pandas DataFrame indexed by time (Decimal columns are object
    columns of decimal.Decimal)."""
    _require_research("candles as a pandas DataFrame")
    frame = candles(target, **kw)
    return frame.to_pandas(use_pyarrow_extension_array=False).set_index("time")


def indicators(
    target: str | psycopg.Connection[Any],
    *,
    timeframe: str = "1m",
    listing_id: int | None = None,
    exchange: str | None = None,
    symbol: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    form: Literal["wide", "long"] = "wide",
) -> pl.DataFrame:
    """Stored indicators of one series: wide (seed 003: time and one column per
    indicator) or long (seed 002: time, indicator_type, value, parameters)."""
    timeframe_delta(timeframe)
    with _connection(target) as conn:
        listing = _listing(conn, listing_id, exchange, symbol)
        params = (
            listing,
            timeframe,
            start or dt.datetime.min.replace(tzinfo=dt.UTC),
            end or dt.datetime.max.replace(tzinfo=dt.UTC),
        )
        if form == "long":
            rows = conn.execute(
                """SELECT ti."timestamp", ti.indicator_type, ti.value::float8, ti.parameters::text
                     FROM christmas.technical_indicators ti
                    WHERE ti.exchange_instrument_id = %s AND ti.timeframe = %s AND ti."timestamp" >= %s AND ti."timestamp" < %s
                    ORDER BY 1, 2""",
                params,
            ).fetchall()
            return _frame(
                ["time", "indicator_type", "value", "parameters"],
                rows,
                {"time": pl.Datetime("us", "UTC"), "value": pl.Float64},
            )
        rows = conn.execute(
            f"""SELECT "time", {", ".join(INDICATOR_COLUMNS)} FROM market.technical_indicators
                 WHERE exchange_instrument_id = %s AND timeframe = %s AND "time" >= %s AND "time" < %s
                 ORDER BY "time" """,
            params,
        ).fetchall()
    schema: dict[str, Any] = {"time": pl.Datetime("us", "UTC")}
    schema.update({c: pl.Float64 for c in INDICATOR_COLUMNS})
    return _frame(["time", *INDICATOR_COLUMNS], rows, schema)


def indicators_pandas(target: str | psycopg.Connection[Any], **kw: Any) -> Any:
    """indicators() as a pandas DataFrame (wide: indexed by time)."""
    _require_research("indicators as a pandas DataFrame")
    frame = indicators(target, **kw).to_pandas()
    return frame.set_index("time") if kw.get("form", "wide") == "wide" else frame


def export(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write a frame as CSV or Parquet (by the file's extension). Decimal columns are
    written as their exact decimal text in CSV and as decimals in Parquet."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame.write_parquet(path)
    elif suffix in (".csv", ".txt"):
        # Decimals as their shortest exact text (a polars Decimal pads to its scale).
        plain = (
            pl.col(pl.Decimal)
            .cast(pl.String)
            .str.replace(r"(\.\d*?)0+$", "${1}")
            .str.strip_suffix(".")
        )
        frame.with_columns(
            pl.col(pl.Datetime).dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"), plain
        ).write_csv(path)
    else:
        raise ValidationError("file", "must end in .csv or .parquet", str(path))
    return path
