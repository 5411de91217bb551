"""`tradestore brain ...`: the LLM half (report, picks, traces, costs; docs/brain.md) and the
RAG half (add, search, ask, reembed; docs/rag.md), which cli/brain_rag.py registers on the same
`brain_app` at the end of this module."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import typer
from rich.table import Table

from tradestore.cli import brain_rag
from tradestore.cli.common import console, database, handles_errors, parse_decimal, settings
from tradestore.db.connect import connect
from tradestore.db.errors import NotFound

brain_app = typer.Typer(
    help="AI research: reports, daily picks, LLM traces and costs, documents, search, questions.",
    no_args_is_help=True,
)

# ============================================================ LLM: reports, picks, traces, costs
report_app = typer.Typer(
    help="AI reports (ai_reports), written by traced LLM calls.", no_args_is_help=True
)
picks_app = typer.Typer(
    help="Daily picks: generate, list, approve, execute, outcomes.", no_args_is_help=True
)
traces_app = typer.Typer(help="LLM call traces and their OTLP export.", no_args_is_help=True)
costs_app = typer.Typer(help="LLM price table, budgets and spending.", no_args_is_help=True)
brain_app.add_typer(report_app, name="report")
brain_app.add_typer(picks_app, name="picks")
brain_app.add_typer(traces_app, name="traces")
brain_app.add_typer(costs_app, name="costs")


@contextmanager
def _conn() -> Iterator[psycopg.Connection[Any]]:
    with database() as conninfo, connect(conninfo, settings(), autocommit=True) as conn:
        yield conn


def _user_id(conn: psycopg.Connection[Any], username: str | None) -> int | None:
    if username is None:
        return None
    row = conn.execute("SELECT id FROM account.users WHERE username = %s", (username,)).fetchone()
    if row is None:
        raise NotFound("user", username)
    return int(row[0])


def _day(text: str | None) -> date:
    return date.fromisoformat(text) if text else datetime.now(UTC).date()


def _table(rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(*columns)
    for r in rows:
        table.add_row(*("-" if r.get(c) is None else str(r.get(c)) for c in columns))
    return table


@report_app.command("daily")
@handles_errors
def report_daily(
    market: str = typer.Option(..., "--market", help="KRX, US or CRYPTO"),
    day: str = typer.Option(None, "--date", help="YYYY-MM-DD (default: today, UTC)"),
    user: str = typer.Option(None, "--user", help="charge the calls to this user's budget"),
    symbol: list[str] = typer.Option(None, "--symbol", help="only these instruments"),
    with_picks: bool = typer.Option(True, "--picks/--no-picks", help="store the answers' picks"),
) -> None:
    """Write the day's report of every instrument of a market (one traced call each)."""
    from tradestore.brain import picks, reports
    from tradestore.brain.llm import LLMClient

    report_day = _day(day)
    # Documents published up to the end of the report's day (UTC), none from after it.
    day_end = datetime.combine(report_day + timedelta(days=1), datetime.min.time(), UTC)
    with _conn() as conn:
        client = LLMClient(conn)
        ids = reports.daily_report(
            conn,
            client,
            market,
            report_day,
            user_id=_user_id(conn, user),
            retriever=reports.default_retriever(until=day_end),
            symbols=symbol or None,
        )
        made = picks.picks_from_reports(conn, report_day, market) if with_picks else []
    console.print(f"{len(ids)} report(s) written, {len(made)} pick(s)")


@picks_app.command("screen")
@handles_errors
def picks_screen(
    screen: str = typer.Argument(..., help="module:function or file.py:function"),
    market: str = typer.Option(..., "--market", help="KRX, US or CRYPTO"),
    day: str = typer.Option(None, "--date", help="YYYY-MM-DD (default: today, UTC)"),
    name: str = typer.Option(None, "--name", help="the screen's name (default: the function's)"),
) -> None:
    """Run a rule-based screen written in Python and store its picks."""
    from tradestore.brain import picks

    fn = picks.load_screen(screen)
    with _conn() as conn:
        ids = picks.run_screen(conn, fn, _day(day), market, name or screen.rpartition(":")[2])
    console.print(f"{len(ids)} pick(s) stored")


@picks_app.command("list")
@handles_errors
def picks_list(
    day: str = typer.Option(None, "--date"), limit: int = typer.Option(100, "--limit")
) -> None:
    """List picks (of a day)."""
    from tradestore.brain import picks

    with _conn() as conn:
        rows = picks.list_picks(conn, date.fromisoformat(day) if day else None, limit)
    console.print(
        _table(
            rows,
            [
                "pick_id",
                "pick_date",
                "symbol",
                "action",
                "score",
                "target_price",
                "stop_price",
                "source",
                "model_name",
                "prompt_version",
                "is_executed",
            ],
        )
    )


@picks_app.command("request")
@handles_errors
def picks_request(
    pick_id: int,
    account_id: int = typer.Option(..., "--account"),
    quantity: str = typer.Option(None, "--quantity"),
) -> None:
    """Propose a pick to an account (approved at once if the account auto-approves)."""
    from tradestore.brain import picks

    with _conn() as conn:
        row = picks.request(conn, pick_id, account_id, parse_decimal("quantity", quantity))
    console.print(f"pick {pick_id} for account {account_id}: {row['status']}")


@picks_app.command("approve")
@handles_errors
def picks_approve(
    pick_id: int,
    account_id: int = typer.Option(..., "--account"),
    reject: bool = typer.Option(False, "--reject"),
) -> None:
    """Approve (or --reject) a pending pick for an account."""
    from tradestore.brain import picks

    with _conn() as conn:
        row = picks.decide(conn, pick_id, account_id, approve=not reject)
    console.print(f"pick {pick_id} for account {account_id}: {row['status']}")


@picks_app.command("execute")
@handles_errors
def picks_execute(
    pick_id: int,
    account_id: int = typer.Option(..., "--account"),
    quantity: str = typer.Option(None, "--quantity"),
    price: str = typer.Option(None, "--price", help="LIMIT price (default: MARKET)"),
) -> None:
    """Place the approved pick's order (idempotent)."""
    from tradestore.brain import picks

    with _conn() as conn:
        order_id = picks.execute(
            conn,
            pick_id,
            account_id,
            parse_decimal("quantity", quantity),
            parse_decimal("price", price),
        )
    console.print(f"order {order_id}")


@picks_app.command("auto-approve")
@handles_errors
def picks_auto(account_id: int, on: bool = typer.Option(..., "--on/--off")) -> None:
    """Turn automatic approval of an account's pick orders on or off."""
    from tradestore.brain import picks

    with _conn() as conn:
        picks.set_auto_approve(conn, account_id, on)
    console.print(f"account {account_id}: auto-approve {'on' if on else 'off'}")


@picks_app.command("outcomes")
@handles_errors
def picks_outcomes() -> None:
    """Compute outcomes (1, 5, 20 trading days) and show them by model and prompt."""
    from tradestore.brain import outcomes

    with _conn() as conn:
        n = outcomes.compute_outcomes(conn)
        rows = outcomes.performance(conn)
    console.print(f"{n} outcome(s) computed")
    console.print(
        _table(
            rows,
            [
                "model_name",
                "source",
                "prompt_name",
                "prompt_version",
                "horizon_days",
                "picks",
                "hit_rate",
                "stop_rate",
                "avg_return_pct",
            ],
        )
    )


@traces_app.command("list")
@handles_errors
def traces_list(
    limit: int = typer.Option(20, "--limit"),
    status: str = typer.Option(None, "--status"),
    user: str = typer.Option(None, "--user"),
) -> None:
    """The latest LLM call traces."""
    from tradestore.brain import traces

    with _conn() as conn:
        rows = traces.list_traces(conn, limit=limit, status=status, user_id=_user_id(conn, user))
    console.print(
        _table(
            rows,
            [
                "id",
                "started_at",
                "user_id",
                "gen_ai_request_model",
                "prompt_name",
                "prompt_version",
                "status",
                "gen_ai_usage_input_tokens",
                "gen_ai_usage_output_tokens",
                "cost",
                "latency_ms",
                "time_to_first_token_ms",
            ],
        )
    )


@traces_app.command("export")
@handles_errors
def traces_export(
    endpoint: str = typer.Option(
        None, "--endpoint", help="OTLP/HTTP traces URL (default: LLM_OTLP_ENDPOINT)"
    ),
) -> None:
    """Send new traces as OpenTelemetry spans (OTLP/HTTP JSON)."""
    from tradestore.brain import traces
    from tradestore.brain.config import load_llm_settings

    cfg = load_llm_settings()
    url = endpoint or cfg.LLM_OTLP_ENDPOINT
    if not url:
        raise typer.BadParameter("give --endpoint or set LLM_OTLP_ENDPOINT")
    headers = traces.parse_headers(
        cfg.LLM_OTLP_HEADERS.get_secret_value() if cfg.LLM_OTLP_HEADERS else None
    )
    with _conn() as conn:
        n = traces.export_otlp(conn, url, headers=headers)
    console.print(f"{n} span(s) exported")


@costs_app.command("set")
@handles_errors
def costs_set(
    provider: str,
    model: str,
    input_price: str = typer.Option(..., "--input", help="per 1M input tokens"),
    output_price: str = typer.Option(..., "--output", help="per 1M output tokens"),
    effective_from: str = typer.Option(None, "--from", help="ISO time (default: now)"),
) -> None:
    """Add a price row (model '*' prices every model of the provider)."""
    from tradestore.brain import costs

    inp, out = parse_decimal("input", input_price), parse_decimal("output", output_price)
    assert inp is not None and out is not None
    with _conn() as conn:
        costs.set_price(
            conn,
            provider,
            model,
            inp,
            out,
            datetime.fromisoformat(effective_from) if effective_from else None,
        )
    console.print(f"price of {provider}/{model} set")


@costs_app.command("budget")
@handles_errors
def costs_budget(
    user: str,
    daily_limit: str = typer.Option(None, "--daily", help="limit per UTC day; omit to remove"),
) -> None:
    """Set (or remove) a user's daily LLM budget."""
    from tradestore.brain import costs

    with _conn() as conn:
        uid = _user_id(conn, user)
        assert uid is not None
        costs.set_budget(conn, uid, parse_decimal("daily", daily_limit))
    console.print(f"budget of {user}: {daily_limit or 'none'}")


@costs_app.command("show")
@handles_errors
def costs_show(day: str = typer.Option(None, "--date")) -> None:
    """Prices, and the day's spending per user and model."""
    from tradestore.brain import costs

    with _conn() as conn:
        prices = costs.list_prices(conn)
        spent = costs.spending(conn, datetime.combine(_day(day), datetime.min.time(), UTC))
    console.print(
        _table(
            prices,
            ["provider", "model", "input_per_million", "output_per_million", "effective_from"],
        )
    )
    console.print(
        _table(
            spent,
            [
                "user_id",
                "provider",
                "model",
                "calls",
                "refused",
                "input_tokens",
                "output_tokens",
                "cost",
                "daily_limit",
            ],
        )
    )


# ============================================================ RAG: add, search, ask, reembed
brain_rag.register(brain_app)
