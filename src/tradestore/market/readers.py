"""Read market data from CSV, Parquet, polars or pandas DataFrames, or an iterator of rows
into the staging shape of bulk ingest: a line number, the time as epoch microseconds,
and every value as the exact text of the source.

Values stay text on purpose: "5.330000000000001e-05" in a file is that decimal, and
PostgreSQL parses it into NUMERIC exactly; parsing it as a float first would store
0.0000533000000000000073... instead. Floats that arrive as floats (a pandas column, a
Parquet double) are written by their shortest repr, the decimal their producer meant.

Line numbers: for CSV, the physical line of the file (the header is line 1); for
Parquet and DataFrames, the 1-based row number; for iterators, the 1-based position.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from tradestore.db.errors import ValidationError

__all__ = ["KINDS", "TIME_RANGE_US", "Kind", "StagedBatch", "read_batch"]

# Staged times (epoch microseconds) that can be stored: 1900-01-01 up to 2200-01-01 UTC, the
# range market.epoch_us_time accepts and partitions are made for.
TIME_RANGE_US = (-2_208_988_800_000_000, 7_258_118_400_000_000)

_TIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
_NUMBER = r"^\s*-?\d+(\.\d+)?\s*$"

# The usual spellings of a time column (compared lower-cased, spaces and dashes as _).
TIME_ALIASES = (
    "time",
    "timestamp",
    "datetime",
    "date",
    "open_time",
    "opentime",
    "ts",
    "time_utc",
    "timestamp_utc",
    "datetime_utc",
    "date_time",
    "timestamp_ms",
    "timestamp_s",
    "time_ms",
    "epoch",
    "epoch_ms",
    "unix",
    "unix_time",
    "unix_timestamp",
)
# Header names of an index column written without a name (pandas `to_csv` writes "",
# Parquet "__index_level_0__", a second round trip "Unnamed: 0").
_UNNAMED = re.compile(r"^(|unnamed:_?0|__index_level_0__|index|column_1)$")
# An unnamed integer column is taken for epoch time only from 1e9 (2001-09-09 in seconds):
# smaller whole numbers are a row counter (a pandas RangeIndex), not times.
_MIN_EPOCH = 1_000_000_000


@dataclass(frozen=True)
class Column:
    """A staging column and the source column names that feed it (first match wins)."""

    name: str
    aliases: tuple[str, ...]
    json: bool = False  # lists/dicts in the source are written as JSON text


@dataclass(frozen=True)
class Kind:
    """One kind of market data: its staging type, merge function and partitioned table."""

    name: str
    stage_type: str
    table: str
    columns: tuple[Column, ...]
    time_aliases: tuple[str, ...] = TIME_ALIASES

    @property
    def stage_columns(self) -> list[str]:
        return ["line", "t", "time_text", *(c.name for c in self.columns)]

    @property
    def stage_types(self) -> list[str]:
        return ["int4", "int8", "text", *("text" for _ in self.columns)]


KINDS: dict[str, Kind] = {
    "candles": Kind(
        "candles",
        "market.candle_stage",
        "market.candles",
        (
            Column("open", ("open", "open_price", "o")),
            Column("high", ("high", "high_price", "h")),
            Column("low", ("low", "low_price", "l")),
            Column("close", ("close", "close_price", "c")),
            Column("volume", ("volume", "vol", "v", "base_volume")),
            Column("vwap", ("vwap",)),
            Column("trade_count", ("trade_count", "trades", "number_of_trades", "count")),
        ),
    ),
    "trades": Kind(
        "trades",
        "market.trade_stage",
        "market.trade_prints",
        (
            Column("trade_id", ("trade_id", "exchange_trade_id", "id", "tid", "bithumb_tx_id")),
            Column("price", ("price", "p")),
            Column("quantity", ("quantity", "amount", "qty", "size", "q")),
            Column("side", ("side", "taker_side")),
        ),
        time_aliases=(*TIME_ALIASES, "trade_time"),
    ),
    "tickers": Kind(
        "tickers",
        "market.ticker_stage",
        "market.tickers",
        (
            Column("opening_price", ("opening_price", "open")),
            Column("closing_price", ("closing_price", "close", "last")),
            Column("high_price", ("high_price", "high")),
            Column("low_price", ("low_price", "low")),
            Column("volume", ("volume", "units_traded", "base_volume")),
            Column("value", ("value", "acc_trade_value", "quote_volume")),
            Column("change_24h", ("change_24h", "fluctate_24h", "change")),
            Column("change_rate_24h", ("change_rate_24h", "fluctate_rate_24h", "percentage")),
            Column("bid_price", ("bid_price", "bid")),
            Column("ask_price", ("ask_price", "ask")),
        ),
    ),
    "orderbooks": Kind(
        "orderbooks",
        "market.order_book_stage",
        "market.order_books",
        (Column("bids", ("bids",), json=True), Column("asks", ("asks",), json=True)),
    ),
}


@dataclass
class StagedBatch:
    """Rows ready for COPY (`frame` has kind.stage_columns, in order) and where they came
    from. `rejects` are the rows the reader itself could not split into fields (line,
    field, rule, value); they are not in `frame`."""

    kind: Kind
    source: str
    frame: pl.DataFrame
    rejects: list[tuple[int, str, str, str | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return self.frame.height


# ------------------------------------------------------------------------ loading sources
def _is_pandas(obj: object) -> bool:
    return type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "columns")


_LINE = "__line"  # a frame column with each row's physical line, when the reader knows it
Rejects = list[tuple[int, str, str, str | None]]


def _snippet(text: str) -> str:
    text = text.rstrip("\r\n")
    return text if len(text) <= 80 else text[:77] + "..."


def _read_csv_by_record(path: Path, separator: str) -> tuple[pl.DataFrame, Rejects]:
    """A CSV that polars refused (a row with more fields than the header, a quote left
    open), read record by record: the good rows as a text frame with their line numbers,
    and each bad record as (line, "row", reason, text)."""
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
        raw_lines = handle.read()
    reader = csv.reader(io.StringIO(raw_lines), delimiter=separator, strict=True)
    physical = raw_lines.splitlines()
    rejects: Rejects = []
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise ValidationError(
            "file", f"{path}:1: the header cannot be read ({exc})", None
        ) from None
    rows: list[list[str | None]] = []
    lines: list[int] = []
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            reason = str(exc)
            if "unexpected end of data" in reason or "EOF" in reason:
                reason = "a quote opened here is never closed"
            text = physical[start - 1] if start - 1 < len(physical) else ""
            rejects.append((start, "row", reason, _snippet(text)))
            break
        if not record:
            continue  # a blank line
        if len(record) > len(header):
            text = physical[start - 1] if start - 1 < len(physical) else ""
            rejects.append(
                (start, "row", f"has {len(record)} fields, the header has {len(header)}",
                 _snippet(text))
            )  # fmt: skip
            continue
        rows.append([*record, *([None] * (len(header) - len(record)))])
        lines.append(start)
    names = [h if h not in header[:i] else f"{h}_{i}" for i, h in enumerate(header)]
    data: dict[str, list[Any]] = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    frame = pl.DataFrame(data, schema={n: pl.String for n in names})
    return frame.with_columns(pl.Series(_LINE, lines, dtype=pl.Int64)), rejects


def _load_path(path: Path) -> tuple[pl.DataFrame, int, Rejects]:
    """A file as a frame, the line/row number of its first row, and the records that
    could not be read at all."""
    suffix = "".join(path.suffixes[-2:]).lower()
    if not path.exists():
        raise ValidationError("file", "must exist", str(path))
    if suffix.endswith((".parquet", ".pq")):
        return pl.read_parquet(path), 1, []
    if suffix.endswith((".csv", ".tsv", ".txt", ".csv.gz")):
        separator = "\t" if ".tsv" in suffix else ","
        # All columns as text: values must reach PostgreSQL as written.
        try:
            frame = pl.read_csv(path, infer_schema=False, separator=separator, raise_if_empty=False)
        except pl.exceptions.PolarsError:
            frame, rejects = _read_csv_by_record(path, separator)
            return frame, 2, rejects
        return frame, 2, []
    raise ValidationError("file", "must be .csv, .tsv or .parquet", str(path))


def _text(value: Any, as_json: bool) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if as_json or isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)


def _rows_frame(rows: Iterable[Any], kind: Kind) -> pl.DataFrame:
    """An iterator of dicts (by column name) or sequences (time, then kind's columns in
    order) as an all-text frame."""
    names = ["time", *(c.name for c in kind.columns)]
    json_cols = {c.name for c in kind.columns if c.json}
    data: dict[str, list[str | None]] = {}
    # A time column whose every value is a timezone-aware datetime (a collector's times) is
    # kept as datetimes: _time_us reads them exactly without formatting and parsing text.
    aware: dict[str, list[dt.datetime | None]] = {}
    for position, row in enumerate(rows):
        if isinstance(row, Mapping):
            items = {str(k): v for k, v in row.items()}
        elif isinstance(row, Sequence) and not isinstance(row, str | bytes):
            if len(row) > len(names):
                raise ValidationError(
                    "row",
                    f"must have at most {len(names)} values ({', '.join(names)})",
                    position + 1,
                )
            items = dict(zip(names, row, strict=False))
        else:
            raise ValidationError("row", "must be a mapping or a sequence", type(row).__name__)
        for key in data.keys() - items.keys():
            data[key].append(None)
            if key in aware:
                aware[key].append(None)
        for key, value in items.items():
            if key not in data and key in kind.time_aliases and isinstance(value, dt.datetime):
                aware[key] = [None] * position
            column = data.setdefault(key, [None] * position)
            column.append(_text(value, key in json_cols))
            if key in aware:
                if isinstance(value, dt.datetime) and value.utcoffset() is not None:
                    aware[key].append(value)
                else:
                    del aware[key]
    columns = [
        pl.Series(k, aware[k], dtype=pl.Datetime("us", "UTC"))
        if k in aware
        else pl.Series(k, v, dtype=pl.String)
        for k, v in data.items()
    ]
    return pl.DataFrame(columns)


def _load(source: Any, kind: Kind) -> tuple[pl.DataFrame, str, int, Rejects]:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        frame, first, rejects = _load_path(path)
        return frame, str(path), first, rejects
    if isinstance(source, pl.LazyFrame):
        return source.collect(), "<polars>", 1, []
    if isinstance(source, pl.DataFrame):
        return source, "<polars>", 1, []
    if _is_pandas(source):
        pdf = source
        index_name = getattr(pdf.index, "name", None)
        unnamed = index_name is None and type(pdf.index).__name__ != "RangeIndex"
        if unnamed or (index_name is not None and _header(str(index_name)) in kind.time_aliases):
            # A named time index, or an unnamed one that may be the time (judged below).
            pdf = pdf.reset_index()
        return pl.from_pandas(pdf), "<pandas>", 1, []
    if isinstance(source, Iterable):
        return _rows_frame(source, kind), "<rows>", 1, []
    raise ValidationError(
        "source", "must be a file path, a DataFrame or an iterator of rows", type(source).__name__
    )


# ------------------------------------------------------------------------ column mapping
def _header(name: str) -> str:
    """A column name as aliases are written: lower case, spaces and dashes as _."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _pick(frame: pl.DataFrame, aliases: Sequence[str]) -> str | None:
    lower = {_header(c): c for c in frame.columns if c != _LINE}
    for alias in aliases:
        if alias in lower:
            return lower[alias]
    return None


def _as_text(expr: pl.Expr, dtype: pl.DataType, as_json: bool) -> pl.Expr:
    if dtype == pl.String:
        return expr
    if as_json and isinstance(dtype, pl.List | pl.Array | pl.Struct | pl.Object):
        return expr.map_elements(
            lambda v: _text(v.to_list() if hasattr(v, "to_list") else v, True),
            return_dtype=pl.String,
        )
    if dtype == pl.Object:
        return expr.map_elements(lambda v: _text(v, as_json), return_dtype=pl.String)
    if dtype == pl.Boolean:
        return expr.cast(pl.String).str.to_lowercase()
    return expr.cast(pl.String)


def _epoch_us_from_number(values: pl.Expr) -> pl.Expr:
    """Epoch seconds, milliseconds, microseconds or nanoseconds (told apart by magnitude)
    to microseconds."""
    magnitude = values.abs()
    return (
        pl.when(magnitude < 1e11)
        .then(values * 1_000_000)
        .when(magnitude < 1e14)
        .then(values * 1_000)
        .when(magnitude < 1e17)
        .then(values)
        .otherwise(values / 1_000)
        .round(0)
        .cast(pl.Int64, strict=False)
    )


def _parse_with(text: pl.Series, fmt: str) -> pl.Series:
    return text.str.to_datetime(fmt, time_zone="UTC", strict=False).dt.epoch("us")


def _numeric_epoch_us(text: pl.Series) -> pl.Series:
    frame = pl.DataFrame({"s": text})
    integer = pl.col("s").cast(pl.Int64, strict=False)
    # Exact integer arithmetic for integer epochs (a float would round nanoseconds).
    integer_us = (
        pl.when(integer.abs() < 100_000_000_000)
        .then(integer * 1_000_000)
        .when(integer.abs() < 100_000_000_000_000)
        .then(integer * 1_000)
        .when(integer.abs() < 100_000_000_000_000_000)
        .then(integer)
        .otherwise(integer // 1_000)
    )
    number = _epoch_us_from_number(pl.col("s").cast(pl.Float64, strict=False))
    return frame.select(
        pl.when(pl.col("s").str.contains(_NUMBER))
        .then(pl.when(integer.is_not_null()).then(integer_us).otherwise(number))
        .otherwise(None)
    ).to_series()


def _time_us(series: pl.Series) -> pl.Series:
    """Epoch microseconds of a time column of any dtype; null where it cannot be read.

    Text is ISO-8601 (with or without an offset; without one it is UTC) or an epoch
    number in s, ms, us or ns. The format is picked on a sample and the rare rows it
    does not read are tried with the others, so a uniform column is parsed in one pass.
    """
    dtype = series.dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            series = series.dt.replace_time_zone("UTC")
        return series.dt.convert_time_zone("UTC").dt.epoch("us")
    if dtype == pl.Date:
        return series.cast(pl.Datetime("us")).dt.epoch("us")
    if dtype.is_numeric():
        return pl.select(_epoch_us_from_number(series.cast(pl.Float64))).to_series()
    text = series.cast(pl.String).str.strip_chars()
    sample = text.drop_nulls().head(200)
    readers: list[object] = [*_TIME_FORMATS]
    if sample.len() and sample.str.contains(_NUMBER).all():
        readers.insert(0, _numeric_epoch_us)
    else:
        readers.append(_numeric_epoch_us)
        for fmt in _TIME_FORMATS:
            if sample.len() and _parse_with(sample, fmt).null_count() == 0:
                readers.remove(fmt)
                readers.insert(0, fmt)
                break
    result: pl.Series | None = None
    for reader in readers:
        if result is None:
            todo = text
        else:
            missing = result.is_null() & text.is_not_null()
            if not missing.any():
                break
            todo = pl.select(pl.when(missing).then(text)).to_series()
        attempt = reader(todo) if callable(reader) else _parse_with(todo, str(reader))
        result = attempt if result is None else result.fill_null(attempt)
    assert result is not None
    return result


def _unnamed_time_column(frame: pl.DataFrame) -> str | None:
    """The first column when it has no name (an index column pandas wrote) and its
    values read as times; None otherwise."""
    if not frame.columns or not _UNNAMED.match(_header(frame.columns[0])):
        return None
    sample = frame[frame.columns[0]].drop_nulls().head(200)
    if sample.len() == 0:
        return None
    if sample.dtype.is_integer() or (
        sample.dtype == pl.String and sample.str.contains(_NUMBER).all()
    ):
        numbers = sample.cast(pl.Float64, strict=False)
        if numbers.null_count() or numbers.abs().min() < _MIN_EPOCH:  # type: ignore[operator]
            return None
    if _time_us(sample).null_count():
        return None
    return frame.columns[0]


def read_batch(source: Any, kind: str | Kind) -> StagedBatch:
    """Read `source` (a CSV/Parquet path, a polars or pandas DataFrame, or an iterator of
    rows) as a batch of `kind` ('candles', 'trades', 'tickers', 'orderbooks')."""
    spec = kind if isinstance(kind, Kind) else KINDS[kind]
    frame, name, first_line, reader_rejects = _load(source, spec)
    time_col = _pick(frame, spec.time_aliases) or _unnamed_time_column(frame)
    if time_col is None:
        shown = [c for c in frame.columns if c != _LINE]
        raise ValidationError(
            "columns",
            f"must include a time column ({', '.join(spec.time_aliases)}), or an unnamed "
            "first column of times",
            ", ".join(repr(c) if not c.strip() else c for c in shown),
        )
    picked = {c.name: _pick(frame, c.aliases) for c in spec.columns}
    required = [
        c for c in spec.columns if c.name not in ("vwap", "trade_count", "bid_price", "ask_price")
    ]
    missing = [c.name for c in required if picked[c.name] is None]
    if missing:
        raise ValidationError(
            "columns", f"must include {', '.join(missing)}", ", ".join(frame.columns)
        )

    if _LINE in frame.columns:
        frame = frame.rename({_LINE: "__row"})
        first_line = 0
    else:
        frame = frame.with_row_index("__row")
    source_cols = [time_col, *(c for c in picked.values() if c is not None)]
    if first_line == 2:  # a CSV: blank lines are not rows (polars reads them as nulls)
        frame = frame.filter(~pl.all_horizontal([pl.col(c).is_null() for c in source_cols]))
    times = _time_us(frame[time_col])
    time_text = frame[time_col].cast(pl.String)
    columns: dict[str, pl.Series] = {
        "line": (frame["__row"] + first_line).cast(pl.Int32),
        "t": times,
        "time_text": pl.select(pl.when(times.is_null()).then(time_text)).to_series(),
    }
    for column in spec.columns:
        src = picked[column.name]
        if src is None:
            columns[column.name] = pl.Series(column.name, [None] * frame.height, dtype=pl.String)
            continue
        values = frame.select(_as_text(pl.col(src), frame.schema[src], column.json)).to_series()
        # PostgreSQL trims spaces around numbers itself; an empty text is a missing value.
        columns[column.name] = pl.select(
            pl.when(values.str.len_bytes() > 0).then(values)
        ).to_series()
    staged = pl.DataFrame({k: v.alias(k) for k, v in columns.items()})
    return StagedBatch(spec, name, staged.select(spec.stage_columns), reader_rejects)
