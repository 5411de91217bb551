"""The LLM price table and the users' daily budgets (the rule itself is the trigger on
brain.llm_calls, brain/sql/schema.sql)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.db.errors import ValidationError

__all__ = ["list_prices", "set_budget", "set_price", "spending"]


def set_price(
    conn: psycopg.Connection[Any],
    provider: str,
    model: str,
    input_per_million: Decimal,
    output_per_million: Decimal,
    effective_from: datetime | None = None,
) -> int:
    """Add a price from a moment on (now by default); earlier calls keep their price."""
    for name, value in (
        ("input_per_million", input_per_million),
        ("output_per_million", output_per_million),
    ):
        if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
            raise ValidationError(name, "must be a finite decimal >= 0", value)
    row = conn.execute(
        """INSERT INTO brain.llm_prices (provider, model, input_per_million, output_per_million,
                                         effective_from)
           VALUES (%s, %s, %s, %s, coalesce(%s, now())) RETURNING id""",
        (provider, model, input_per_million, output_per_million, effective_from),
    ).fetchone()
    assert row is not None
    return int(row[0])


def list_prices(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    cur = conn.execute(
        """SELECT provider, model, input_per_million, output_per_million, effective_from
             FROM brain.llm_prices ORDER BY provider, model, effective_from"""
    )
    cols = [d.name for d in cur.description or []]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def set_budget(conn: psycopg.Connection[Any], user_id: int, daily_limit: Decimal | None) -> None:
    """Set a user's daily limit; None removes it (no limit)."""
    if daily_limit is None:
        conn.execute("DELETE FROM brain.llm_budgets WHERE user_id = %s", (user_id,))
        return
    conn.execute(
        """INSERT INTO brain.llm_budgets (user_id, daily_limit) VALUES (%s, %s)
           ON CONFLICT (user_id) DO UPDATE SET daily_limit = EXCLUDED.daily_limit""",
        (user_id, daily_limit),
    )


def spending(conn: psycopg.Connection[Any], day: datetime | None = None) -> list[dict[str, Any]]:
    """Per user, provider and model for the UTC day of `day` (today): calls, refused
    calls, tokens and cost, with each user's limit and what is left of it."""
    cur = conn.execute(
        """WITH d AS (SELECT date_trunc('day', coalesce(%s, now()) AT TIME ZONE 'UTC') AS day)
           SELECT c.user_id, c.gen_ai_provider_name AS provider, c.gen_ai_request_model AS model,
                  count(*) AS calls,
                  count(*) FILTER (WHERE c.status = 'refused_budget') AS refused,
                  coalesce(sum(c.gen_ai_usage_input_tokens), 0) AS input_tokens,
                  coalesce(sum(c.gen_ai_usage_output_tokens), 0) AS output_tokens,
                  coalesce(sum(c.cost), 0) AS cost,
                  b.daily_limit
             FROM brain.llm_calls c CROSS JOIN d
             LEFT JOIN brain.llm_budgets b ON b.user_id = c.user_id
            WHERE c.started_at >= d.day AT TIME ZONE 'UTC'
              AND c.started_at < (d.day + interval '1 day') AT TIME ZONE 'UTC'
            GROUP BY c.user_id, c.gen_ai_provider_name, c.gen_ai_request_model, b.daily_limit
            ORDER BY c.user_id NULLS FIRST, provider, model""",
        (day,),
    )
    cols = [d.name for d in cur.description or []]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
