"""Daily picks: stored the same way whether the LLM or a user's Python screen made them,
and turned into orders only through approval and brain.execute_pick (decisions.sql)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from tradestore.db.errors import ValidationError

__all__ = [
    "PickIdea",
    "ScreenContext",
    "decide",
    "execute",
    "list_picks",
    "load_screen",
    "picks_from_reports",
    "request",
    "run_screen",
    "set_auto_approve",
    "store_pick",
]


@dataclass(frozen=True)
class PickIdea:
    """What a screen proposes: a symbol of market.instruments and what to do with it."""

    symbol: str
    action: str  # BUY, SELL or HOLD
    score: Decimal | None = None
    rationale: str | None = None
    target_price: Decimal | None = None
    stop_price: Decimal | None = None
    expected_return: Decimal | None = None  # percent, seed 004 (5.23 = +5.23%)
    holding_period: int | None = None  # days


@dataclass(frozen=True)
class ScreenContext:
    """What a rule-based screen is given: a connection to read prices and indicators,
    the pick date and the market (KRX, US or CRYPTO)."""

    conn: psycopg.Connection[Any]
    day: date
    market: str


Screen = Callable[[ScreenContext], Iterable[PickIdea]]


def store_pick(
    conn: psycopg.Connection[Any],
    report_id: int,
    pick_date: date,
    idea: PickIdea,
    *,
    source: str,
    model_name: str | None,
    prompt_name: str | None = None,
    prompt_version: int | None = None,
    llm_call_id: int | None = None,
) -> int:
    """Insert a pick (or return the existing one for the report, day and action)."""
    row = conn.execute(
        """INSERT INTO brain.daily_picks (report_id, pick_date, action, priority_score, expected_return,
               holding_period, source, rationale, target_price, stop_price, model_name, prompt_name,
               prompt_version, llm_call_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (report_id, pick_date, action) DO UPDATE SET action = EXCLUDED.action
           RETURNING pick_id""",
        (
            report_id,
            pick_date,
            idea.action.upper(),
            idea.score,
            idea.expected_return,
            idea.holding_period,
            source,
            idea.rationale,
            idea.target_price,
            idea.stop_price,
            model_name,
            prompt_name,
            prompt_version,
            llm_call_id,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def picks_from_reports(conn: psycopg.Connection[Any], day: date, market: str) -> list[int]:
    """Picks from the day's LLM reports: each report's answer carries an action, a score,
    target and stop; HOLD answers make no pick."""
    from tradestore.brain.reports import market_filter

    rows = conn.execute(
        f"""SELECT r.report_id, r.raw_data, r.model_version, c.prompt_name, c.prompt_version, c.id
              FROM brain.ai_reports r JOIN market.instruments i ON i.id = r.stock_id
              JOIN brain.llm_calls c ON c.id = r.llm_call_id
             WHERE r.analysis_date = %s AND {market_filter(market)}""",
        (day,),
    ).fetchall()
    out = []
    for report_id, raw, model, prompt_name, prompt_version, call_id in rows:
        answer = (raw or {}).get("answer") or {}
        action = str(answer.get("action", "HOLD")).upper()
        if action not in ("BUY", "SELL"):
            continue
        idea = PickIdea(
            symbol="",
            action=action,
            score=_dec(answer.get("score")),
            rationale=answer.get("rationale") or answer.get("summary"),
            target_price=_dec(answer.get("target_price")),
            stop_price=_dec(answer.get("stop_price")),
        )
        out.append(
            store_pick(
                conn,
                report_id,
                day,
                idea,
                source="LLM",
                model_name=model,
                prompt_name=prompt_name,
                prompt_version=prompt_version,
                llm_call_id=call_id,
            )
        )
    return out


def load_screen(spec: str) -> Screen:
    """`package.module:function` or `path/to/file.py:function`."""
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise ValidationError("screen", "must be module:function or file.py:function", spec)
    if target.endswith(".py"):
        path = Path(target)
        module_spec = importlib.util.spec_from_file_location(f"tradestore_screen_{path.stem}", path)
        if module_spec is None or module_spec.loader is None:
            raise ValidationError("screen", "must name a readable Python file", target)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValidationError("screen", "must name a function of the module", spec)
    return fn  # type: ignore[no-any-return]


def run_screen(
    conn: psycopg.Connection[Any], screen: Screen, day: date, market: str, name: str
) -> list[int]:
    """Run a rule-based screen and store its picks like the LLM's: each on a report
    (model_version `rule:<name>`) of its instrument and day."""
    out = []
    for idea in screen(ScreenContext(conn, day, market)):
        found = conn.execute(
            "SELECT id FROM market.instruments WHERE symbol = %s", (idea.symbol,)
        ).fetchone()
        if found is None:
            raise ValidationError("symbol", "must name an instrument", idea.symbol)
        version = f"rule:{name}"[:100]
        report = conn.execute(
            """INSERT INTO brain.ai_reports (stock_id, analysis_date, model_version, target_price, summary)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (stock_id, analysis_date, model_version) DO UPDATE SET summary = EXCLUDED.summary
               RETURNING report_id""",
            (found[0], day, version, idea.target_price, idea.rationale),
        ).fetchone()
        assert report is not None
        out.append(
            store_pick(
                conn, int(report[0]), day, idea, source="RULE", model_name=version, prompt_name=name
            )
        )
    return out


def list_picks(
    conn: psycopg.Connection[Any], day: date | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    cur = conn.execute(
        """SELECT dp.pick_id, dp.pick_date, i.symbol, dp.action, dp.priority_score AS score,
                  dp.rationale, dp.target_price, dp.stop_price, dp.source, dp.model_name,
                  dp.prompt_name, dp.prompt_version, dp.is_executed, dp.llm_call_id
             FROM brain.daily_picks dp
             JOIN brain.ai_reports r ON r.report_id = dp.report_id
             JOIN market.instruments i ON i.id = r.stock_id
            WHERE %(day)s::date IS NULL OR dp.pick_date = %(day)s
            ORDER BY dp.pick_date DESC, dp.priority_score DESC NULLS LAST, dp.pick_id
            LIMIT %(limit)s""",
        {"day": day, "limit": limit},
    )
    cols = [d.name for d in cur.description or []]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def set_auto_approve(conn: psycopg.Connection[Any], account_id: int, on: bool) -> None:
    conn.execute(
        """INSERT INTO brain.account_pick_settings (account_id, auto_approve) VALUES (%s, %s)
           ON CONFLICT (account_id) DO UPDATE SET auto_approve = EXCLUDED.auto_approve""",
        (account_id, on),
    )


def request(
    conn: psycopg.Connection[Any], pick_id: int, account_id: int, quantity: Decimal | None = None
) -> dict[str, Any]:
    """Propose a pick to an account (approved at once if the account auto-approves)."""
    return _row(
        conn, "SELECT * FROM brain.request_pick_order(%s, %s, %s)", (pick_id, account_id, quantity)
    )


def decide(
    conn: psycopg.Connection[Any], pick_id: int, account_id: int, approve: bool
) -> dict[str, Any]:
    return _row(
        conn, "SELECT * FROM brain.decide_pick_order(%s, %s, %s)", (pick_id, account_id, approve)
    )


def execute(
    conn: psycopg.Connection[Any],
    pick_id: int,
    account_id: int,
    quantity: Decimal | None = None,
    price: Decimal | None = None,
) -> int:
    """Place the approved pick's order (idempotent: the same order every time)."""
    row = conn.execute(
        "SELECT brain.execute_pick(%s, %s, %s, %s)", (pick_id, account_id, quantity, price)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _row(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> dict[str, Any]:
    cur = conn.execute(query, params)
    cols = [d.name for d in cur.description or []]
    row = cur.fetchone()
    assert row is not None
    return dict(zip(cols, row, strict=True))


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        d = Decimal(str(value))
    except ArithmeticError:
        return None
    return d if d.is_finite() else None
