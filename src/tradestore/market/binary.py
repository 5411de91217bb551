"""PostgreSQL binary COPY of fixed-width rows straight to and from numpy arrays.

Bars and indicators are columns of int8/timestamptz and float8 with no NULLs on the way
out (a NaN stands for a missing indicator on the way in), so every tuple has the same
size and the whole stream is one numpy structured array: no Python object per value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg

__all__ = ["COPY_HEADER", "COPY_TRAILER", "PG_EPOCH_US", "copy_in_float_rows", "copy_out_fixed"]

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
COPY_HEADER = _SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
# timestamptz in binary is microseconds since 2000-01-01 00:00 UTC.
PG_EPOCH_US = 946_684_800_000_000


def _row_dtype(kinds: Sequence[str]) -> np.dtype[Any]:
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for i, kind in enumerate(kinds):
        fields.append((f"len{i}", ">i4"))
        fields.append((f"f{i}", ">f8" if kind == "f8" else ">i8"))
    return np.dtype(fields)


def copy_out_fixed(
    conn: psycopg.Connection[Any], query: str, kinds: Sequence[str], params: Sequence[Any] = ()
) -> list[np.ndarray]:
    """Run `COPY (query) TO STDOUT (FORMAT BINARY)` and return one array per column.

    kinds: 'ts' for timestamptz (returned as epoch microseconds), 'i8' for int8, 'f8'
    for float8. Every value must be non-NULL.
    """
    chunks: list[bytes] = []
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)", params) as copy,
    ):
        for data in copy:
            chunks.append(bytes(data))
    payload = b"".join(chunks)
    if not payload.startswith(_SIGNATURE):
        raise ValueError("not a binary COPY stream")
    ext = int.from_bytes(payload[15:19], "big")
    body = payload[19 + ext : len(payload) - len(COPY_TRAILER)]
    dtype = _row_dtype(kinds)
    if len(body) % dtype.itemsize:
        raise ValueError("binary COPY rows are not fixed-width (a NULL?)")
    rows = np.frombuffer(body, dtype=dtype)
    if rows.size and (
        not (rows["count"] == len(kinds)).all()
        or any((rows[f"len{i}"] != 8).any() for i in range(len(kinds)))
    ):
        raise ValueError("binary COPY rows are not fixed-width (a NULL?)")
    columns = []
    for i, kind in enumerate(kinds):
        if kind == "f8":
            columns.append(rows[f"f{i}"].astype(np.float64))
        else:
            values = rows[f"f{i}"].astype(np.int64)
            columns.append(values + PG_EPOCH_US if kind == "ts" else values)
    return columns


def copy_in_float_rows(
    conn: psycopg.Connection[Any],
    table: str,
    columns: Sequence[str],
    times_us: np.ndarray,
    values: Sequence[np.ndarray],
    chunk_rows: int = 100_000,
) -> None:
    """Binary-COPY rows of (timestamptz, float8, float8, ...) into `table` (columns in
    order: the time column first). times_us are epoch microseconds; NaN stays NaN."""
    kinds = ["ts", *(["f8"] * len(values))]
    dtype = _row_dtype(kinds)
    n = len(times_us)
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.write(COPY_HEADER)
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            rows = np.empty(stop - start, dtype=dtype)
            rows["count"] = len(kinds)
            for i in range(len(kinds)):
                rows[f"len{i}"] = 8
            rows["f0"] = times_us[start:stop] - PG_EPOCH_US
            for i, column in enumerate(values, start=1):
                rows[f"f{i}"] = column[start:stop]
            copy.write(rows.tobytes())
        copy.write(COPY_TRAILER)
