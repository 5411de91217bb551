"""Daily prices (seed 004 `market.daily_prices`) from KRX and US daily files.

A file is CSV with a header. English headers (`date, open, high, low, close, volume`,
optional `ticker`, `amount`, `changes`; Yahoo's `Adj Close` is ignored) and the Korean
headers of KRX downloads (`일자, 종목코드, 시가, 고가, 저가, 종가, 거래량, 거래대금, 등락률`)
are both read; numbers may carry thousands separators. The values stay exact text until
PostgreSQL parses them, and `market.merge_daily_prices` validates, upserts and derives
`amount` and `changes` where the file lacks them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tradestore.db.errors import ValidationError

# Canonical column -> the header names that mean it (compared lower-cased, trimmed).
ALIASES: dict[str, tuple[str, ...]] = {
    "ticker": ("ticker", "symbol", "code", "stock_code", "종목코드", "단축코드"),
    "trade_date": ("trade_date", "date", "일자", "날짜"),
    "open": ("open", "open_price", "시가"),
    "high": ("high", "high_price", "고가"),
    "low": ("low", "low_price", "저가"),
    "close": ("close", "close_price", "종가"),
    "volume": ("volume", "거래량"),
    "amount": ("amount", "value", "trading_value", "거래대금"),
    "changes": ("changes", "change_pct", "change_rate", "등락률"),
}
REQUIRED = ("trade_date", "close", "volume")
COLUMNS = ("ticker", "trade_date", "open", "high", "low", "close", "volume", "amount", "changes")
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d")


@dataclass(frozen=True)
class Reject:
    line: int
    field: str
    rule: str
    value: str | None

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.rule} (value: {self.value})"


@dataclass
class DailyReport:
    staged: int = 0
    written: int = 0
    rejected: list[Reject] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.staged} row(s) read, {self.written} written, {len(self.rejected)} rejected"


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp949")  # KRX downloads are often EUC-KR/CP949


def _header_map(header: list[str]) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    found: dict[str, int] = {}
    for column, aliases in ALIASES.items():
        for i, name in enumerate(names):
            if name in aliases:
                found[column] = i
                break
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise ValidationError(
            "header", f"must name the columns {', '.join(missing)}", ",".join(header)
        )
    return found


def _number(text: str) -> str:
    return text.strip().replace(",", "")


def _date(text: str) -> str:
    text = text.strip()
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return text  # left for PostgreSQL to refuse with the line number


def read_daily_rows(path: Path, ticker: str | None = None) -> list[tuple[Any, ...]]:
    """The file's rows as (line, ticker, trade_date, open, high, low, close, volume,
    amount, changes) text tuples; `ticker` fills files without a ticker column."""
    reader = csv.reader(io.StringIO(_read_text(path)))
    try:
        header = next(reader)
    except StopIteration:
        raise ValidationError("file", "must have a header row", str(path)) from None
    cols = _header_map(header)
    if "ticker" not in cols and not ticker:
        raise ValidationError("ticker", "is required: the file has no ticker column", None)
    rows: list[tuple[Any, ...]] = []
    for line, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue

        def cell(name: str, record: list[str] = record) -> str | None:
            i = cols.get(name)
            return record[i] if i is not None and i < len(record) else None

        values: dict[str, str | None] = {}
        for name in COLUMNS:
            raw = cell(name)
            if name == "ticker":
                values[name] = (raw or ticker or "").strip()
            elif name == "trade_date":
                values[name] = _date(raw or "")
            else:
                values[name] = None if raw is None else re.sub(r"%$", "", _number(raw))
        rows.append((line, *(values[c] for c in COLUMNS)))
    return rows


def ingest_daily_prices(
    conn: psycopg.Connection[Any], path: Path, ticker: str | None = None
) -> DailyReport:
    """Stage the file and merge it in one transaction; returns counts and the rejects."""
    rows = read_daily_rows(path, ticker)
    report = DailyReport()
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE daily_stage OF market.daily_price_stage ON COMMIT DROP")
        with conn.cursor().copy(
            "COPY pg_temp.daily_stage (line, ticker, trade_date, open, high, low, close, volume,"
            " amount, changes) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        counts = conn.execute(
            "SELECT staged, written, rejected FROM market.merge_daily_prices('pg_temp.daily_stage')"
        ).fetchone()
        assert counts is not None  # a set-returning function of one row
        staged, written, _ = counts
        report.staged, report.written = int(staged), int(written)
        report.rejected = [
            Reject(*r)
            for r in conn.execute(
                "SELECT line, field, rule, value FROM pg_temp.ingest_rejects ORDER BY line"
            ).fetchall()
        ]
    return report
