"""`tradestore events add|list|apply`: corporate actions and symbol events (Plus module
symbol_events)."""

from __future__ import annotations

import json

import typer

from tradestore.cli.common import console, database, handles_errors
from tradestore.db.connect import connect
from tradestore.db.errors import ValidationError
from tradestore.market import events
from tradestore.market.listings import find_listing_id
from tradestore.timeparse import parse_time

app = typer.Typer(
    help="Corporate actions and symbol events: record, list, apply (once, audited).",
    no_args_is_help=True,
)


def _listing(conn: object, exchange: str, symbol: str) -> int:
    found = find_listing_id(conn, exchange, symbol)  # type: ignore[arg-type]
    if found is None:
        raise ValidationError("symbol", f"is not listed on {exchange}", symbol)
    return found


@app.command("add")
@handles_errors
def add(
    event_type: str = typer.Argument(
        ..., help=", ".join(events.CORPORATE_ACTIONS + events.LISTING_EVENTS)
    ),
    exchange: str = typer.Option(..., "--exchange", "-x"),
    symbol: str = typer.Option(..., "--symbol", "-s"),
    at: str = typer.Option(
        ..., "--at", help="event time (ISO-8601; the record date of a dividend)"
    ),
    details: str = typer.Option("{}", "--details", "-d", help="JSON, e.g. '{\"ratio\": 2}'"),
    apply: bool = typer.Option(False, "--apply", help="apply it right away"),
) -> None:
    """Record an event (and optionally apply it)."""
    try:
        parsed = json.loads(details, parse_float=str)
    except json.JSONDecodeError:
        raise ValidationError("details", "must be a JSON object", details) from None
    if not isinstance(parsed, dict):
        raise ValidationError("details", "must be a JSON object", details)
    with database() as conninfo, connect(conninfo) as conn:
        kind, event_id = events.add_event(
            conn, _listing(conn, exchange, symbol), event_type, parse_time(at, "at"), parsed
        )
        line = f"{kind} {event_id} recorded"
        if apply:
            line += f"; applied ({events.apply_event(conn, kind, event_id)})"
        conn.commit()
    console.print(line)


@app.command("apply")
@handles_errors
def apply_cmd(
    kind: str = typer.Argument(..., help="CORPORATE_ACTION or SYMBOL_EVENT"),
    event_id: int = typer.Argument(...),
) -> None:
    """Apply a recorded event. Applying it again changes nothing."""
    with database() as conninfo, connect(conninfo) as conn:
        app_id = events.apply_event(conn, kind, event_id)
        conn.commit()
    console.print(f"{kind.upper()} {event_id}: application {app_id}")


@app.command("list")
@handles_errors
def list_cmd(
    exchange: str | None = typer.Option(None, "--exchange", "-x"),
    symbol: str | None = typer.Option(None, "--symbol", "-s"),
) -> None:
    """Events, oldest first, with when and by whom each was applied."""
    with database() as conninfo, connect(conninfo) as conn:
        listing = _listing(conn, exchange or "", symbol) if symbol else None
        for e in events.list_events(conn, listing):
            applied = (
                f"applied {e['applied_at']:%Y-%m-%d %H:%M} by {e['applied_by']}"
                if e["application_id"]
                else "not applied"
            )
            console.print(
                f"{e['kind']} {e['id']} {e['event_type']} {e['event_time']:%Y-%m-%d %H:%M:%S%z} "
                f"{json.dumps(e['details'])} ({applied})"
            )
