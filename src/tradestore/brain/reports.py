"""`brain report daily`: one ai_reports row per instrument of a market, written by a traced
LLM call from stored daily prices, the latest daily indicators and retrieved documents.

Retrieved documents come from a retriever: a function
`(conn, query: str, symbols: Sequence[str]) -> list[str]` returning text chunks.
`default_retriever()` is the RAG store's hybrid search (brain/search.py `retrieve`,
docs/rag.md) over the chunks tagged with the instrument's symbol.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.brain.llm import LLMClient, PromptTemplate, Snapshot
from tradestore.db.errors import ValidationError

__all__ = [
    "DAILY_PROMPT",
    "MARKETS",
    "Retriever",
    "daily_report",
    "default_retriever",
    "market_filter",
]

Retriever = Callable[[psycopg.Connection[Any], str, Sequence[str]], list[str]]

MARKETS = ("KRX", "US", "CRYPTO")

DAILY_PROMPT = PromptTemplate(
    name="report.daily",
    version=1,
    system=(
        "You are an equity and crypto analyst. Answer with one JSON object only, with keys: "
        "sentiment_score (-10..10), confidence_score (0..1), target_price, stop_price, "
        "risk_level (LOW|MEDIUM|HIGH), action (BUY|SELL|HOLD), score (0..10), summary, rationale."
    ),
    template=(
        "Instrument {symbol} ({name}), market {market}, date {day}.\n"
        "Daily prices (date, open, high, low, close, volume), oldest first:\n{prices}\n"
        "Latest daily indicators: {indicators}\n"
        "Related documents:\n{documents}\n"
    ),
)


def market_filter(market: str) -> str:
    """SQL condition on market.instruments `i` selecting a market's instruments."""
    market = market.upper()
    if market == "KRX":
        return "i.market_type IN ('KOSPI', 'KOSDAQ')"
    if market == "US":
        return "i.market_type IN ('NYSE', 'NASDAQ')"
    if market == "CRYPTO":
        return "i.asset_class = 'CRYPTO'"
    raise ValidationError("market", "must be one of KRX, US, CRYPTO", market)


def default_retriever(until: datetime | None = None) -> Retriever:
    """The RAG store's hybrid search: the best chunks about the instrument, each as
    "(source, publication date) text". `until` leaves out documents published after it, so
    a report written for a past day sees only what was known that day. Reports are shared
    research, so only shared documents are used: never a user's private notes."""
    from tradestore.brain.search import retrieve

    def retrieve_texts(
        conn: psycopg.Connection[Any], query: str, symbols: Sequence[str]
    ) -> list[str]:
        return [
            f"({c.source}, {c.published_at:%Y-%m-%d}) {c.content}"
            for c in retrieve(conn, query, symbols, until=until, owner="shared")
        ]

    return retrieve_texts


def daily_report(
    conn: psycopg.Connection[Any],
    client: LLMClient,
    market: str,
    day: date,
    *,
    user_id: int | None = None,
    lookback: int = 20,
    retriever: Retriever | None = None,
    symbols: Sequence[str] | None = None,
) -> list[int]:
    """Write (or replace) the day's report of each instrument of the market that has
    prices up to the day; returns the report ids. A failed call leaves its trace and no
    report for that instrument, and the others go on; a refused (over budget) call stops
    the run."""
    where = market_filter(market)
    instruments = conn.execute(
        f"""SELECT i.id, i.symbol, i.name FROM market.instruments i
             WHERE {where} AND i.is_active
               AND (%(symbols)s::text[] IS NULL OR i.symbol = ANY(%(symbols)s))
               AND EXISTS (SELECT 1 FROM market.daily_prices d WHERE d.stock_id = i.id AND d.trade_date <= %(day)s)
             ORDER BY i.symbol""",
        {"day": day, "symbols": list(symbols) if symbols else None},
    ).fetchall()
    from tradestore.brain.llm import LLMCallFailed

    report_ids = []
    for stock_id, symbol, name in instruments:
        rows = conn.execute(
            """SELECT trade_date, open_price, high_price, low_price, close_price, volume FROM (
                   SELECT * FROM market.daily_prices WHERE stock_id = %s AND trade_date <= %s
                    ORDER BY trade_date DESC LIMIT %s) d ORDER BY trade_date""",
            (stock_id, day, lookback),
        ).fetchall()
        indicators = _indicators(conn, stock_id, day)
        documents = (retriever or (lambda *_: []))(conn, f"{symbol} {name} outlook", [symbol])
        snapshot = Snapshot.of_rows(
            [symbol],
            datetime.combine(rows[0][0], time(), UTC),
            datetime.combine(rows[-1][0], time(), UTC),
            [*rows, ("indicators", json.dumps(indicators, sort_keys=True, default=str))],
        )
        values = {
            "symbol": symbol,
            "name": name,
            "market": market.upper(),
            "day": day.isoformat(),
            "prices": "\n".join(", ".join(str(v) for v in r) for r in rows),
            "indicators": json.dumps(indicators, sort_keys=True, default=str)
            if indicators
            else "none",
            "documents": "\n---\n".join(documents) if documents else "none",
        }
        try:
            result = client.chat(DAILY_PROMPT, values, user_id=user_id, snapshot=snapshot)
        except LLMCallFailed:
            continue
        answer = parse_answer(result.text)
        report_ids.append(
            _store(conn, stock_id, day, client.model, answer, result.text, result.call_id)
        )
    return report_ids


def parse_answer(text: str) -> dict[str, Any]:
    """The first JSON object in the model's answer ({} if there is none)."""
    match = re.search(r"\{.*\}", text, re.S)
    if not match:
        return {}
    try:
        value = json.loads(match.group(0), parse_float=Decimal)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _bounded(value: Any, lo: Decimal, hi: Decimal) -> Decimal | None:
    try:
        d = Decimal(str(value))
    except (ArithmeticError, ValueError):
        return None
    return d.quantize(Decimal("0.01")) if d.is_finite() and lo <= d <= hi else None


def _store(
    conn: psycopg.Connection[Any],
    stock_id: int,
    day: date,
    model: str,
    answer: dict[str, Any],
    text: str,
    call_id: int,
) -> int:
    risk = str(answer.get("risk_level", "")).upper()
    target = _bounded(answer.get("target_price"), Decimal("0.00000001"), Decimal("1e15"))
    row = conn.execute(
        """INSERT INTO brain.ai_reports (stock_id, analysis_date, model_version, sentiment_score,
               confidence_score, target_price, risk_level, summary, raw_data, llm_call_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (stock_id, analysis_date, model_version) DO UPDATE SET
               sentiment_score = EXCLUDED.sentiment_score, confidence_score = EXCLUDED.confidence_score,
               target_price = EXCLUDED.target_price, risk_level = EXCLUDED.risk_level,
               summary = EXCLUDED.summary, raw_data = EXCLUDED.raw_data, llm_call_id = EXCLUDED.llm_call_id
           RETURNING report_id""",
        (
            stock_id,
            day,
            model[:100],
            _bounded(answer.get("sentiment_score"), Decimal(-10), Decimal(10)),
            _bounded(answer.get("confidence_score"), Decimal(0), Decimal(1)),
            target,
            risk if risk in ("LOW", "MEDIUM", "HIGH") else None,
            str(answer.get("summary") or text)[:10000],
            json.dumps({"answer": answer, "text": text}, default=str),
            call_id,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _indicators(conn: psycopg.Connection[Any], stock_id: int, day: date) -> dict[str, Any]:
    row = conn.execute(
        """SELECT t.rsi_14, t.macd_line, t.macd_signal, t.ma_20, t.ma_50, t.atr_14,
                  t.bollinger_upper, t.bollinger_lower
             FROM market.technical_indicators t
             JOIN market.exchange_instruments ei ON ei.id = t.exchange_instrument_id
            WHERE ei.instrument_id = %s AND t.timeframe = '1d'
              AND t."time" < (%s::date + 1)::timestamp AT TIME ZONE 'UTC'
            ORDER BY t."time" DESC LIMIT 1""",
        (stock_id, day),
    )
    found = row.fetchone()
    if not found:
        return {}
    names = [d.name for d in row.description or []]
    return {k: v for k, v in zip(names, found, strict=True) if v is not None}
