"""Corporate actions and symbol events (Plus module `symbol_events`, seed 001 §5.3).

Recording an event writes a row; applying it changes the books, once: the SQL functions
market.apply_corporate_action and market.apply_symbol_event (market/sql/
module_symbol_events.sql) lock the event, do nothing when it was applied already, and
audit each application in market.symbol_event_applications.

Instrument-level (corporate_actions): SPLIT, REVERSE_SPLIT ({"ratio": n}), DIVIDEND
({"amount_per_share": x, "currency": c}), SYMBOL_CHANGE ({"new_symbol": s}), DELIST; MERGER
and LIST are recorded only. Listing-level (symbol_events): SYMBOL_LISTED, SYMBOL_DELISTED,
SYMBOL_RENAMED ({"exchange_symbol": s}), LOT_SIZE_CHANGE / TRADING_RULES_CHANGE
({"trading_rules": {...}}).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import psycopg

from tradestore.db.errors import ValidationError
from tradestore.db.query import dicts, scalar, translated

__all__ = [
    "CORPORATE_ACTIONS",
    "LISTING_EVENTS",
    "add_event",
    "apply_event",
    "list_events",
]

CORPORATE_ACTIONS = (
    "SPLIT",
    "REVERSE_SPLIT",
    "DIVIDEND",
    "SYMBOL_CHANGE",
    "DELIST",
    "MERGER",
    "LIST",
)
LISTING_EVENTS = (
    "SYMBOL_LISTED",
    "SYMBOL_DELISTED",
    "SYMBOL_RENAMED",
    "LOT_SIZE_CHANGE",
    "TRADING_RULES_CHANGE",
)


def _kind(event_type: str) -> str:
    upper = event_type.strip().upper()
    if upper in CORPORATE_ACTIONS:
        return "CORPORATE_ACTION"
    if upper in LISTING_EVENTS:
        return "SYMBOL_EVENT"
    raise ValidationError(
        "event_type", f"must be one of {', '.join(CORPORATE_ACTIONS + LISTING_EVENTS)}", event_type
    )


def add_event(
    conn: psycopg.Connection[Any],
    listing_id: int,
    event_type: str,
    event_time: dt.datetime,
    details: dict[str, Any],
) -> tuple[str, int]:
    """Record an event of the listing's instrument (corporate action) or of the listing
    itself (symbol event). Returns (kind, id). Nothing is applied yet."""
    kind = _kind(event_type)
    if event_time.tzinfo is None:
        raise ValidationError("event_time", "must be timezone-aware", event_time.isoformat())
    payload = json.dumps(details, default=str)
    with translated():
        if kind == "CORPORATE_ACTION":
            new_id = scalar(
                conn,
                "INSERT INTO market.corporate_actions (instrument_id, event_time, action_type, details) "
                "SELECT ei.instrument_id, %s, %s, %s::jsonb FROM market.exchange_instruments ei "
                "WHERE ei.id = %s RETURNING id",
                (event_time, event_type.strip().upper(), payload, listing_id),
            )
        else:
            new_id = scalar(
                conn,
                "INSERT INTO market.symbol_events (exchange_id, instrument_id, event_time, event_type, details) "
                "SELECT ei.exchange_id, ei.instrument_id, %s, %s, %s::jsonb FROM market.exchange_instruments ei "
                "WHERE ei.id = %s RETURNING id",
                (event_time, event_type.strip().upper(), payload, listing_id),
            )
    if new_id is None:
        raise ValidationError("listing", "must name an existing listing", str(listing_id))
    return kind, int(new_id)


def apply_event(conn: psycopg.Connection[Any], kind: str, event_id: int) -> int:
    """Apply a recorded event (idempotent). Returns the application's id."""
    fn = {
        "CORPORATE_ACTION": "market.apply_corporate_action",
        "SYMBOL_EVENT": "market.apply_symbol_event",
    }.get(kind.upper())
    if fn is None:
        raise ValidationError("kind", "must be CORPORATE_ACTION or SYMBOL_EVENT", kind)
    with translated():
        return int(scalar(conn, f"SELECT {fn}(%s)", (event_id,)))


def list_events(
    conn: psycopg.Connection[Any], listing_id: int | None = None
) -> list[dict[str, Any]]:
    """Every event (of one listing and its instrument, when given), oldest first, with
    its application when applied."""
    return dicts(
        conn,
        """SELECT e.kind, e.id, e.event_type, e.event_time, e.details, e.instrument_id,
                  e.exchange_id, ap.id AS application_id, ap.applied_at, ap.applied_by, ap.result
             FROM (SELECT 'CORPORATE_ACTION' AS kind, ca.id, ca.action_type AS event_type, ca.event_time,
                          ca.details, ca.instrument_id, NULL::bigint AS exchange_id
                     FROM market.corporate_actions ca
                   UNION ALL
                   SELECT 'SYMBOL_EVENT', se.id, se.event_type, se.event_time, se.details,
                          se.instrument_id, se.exchange_id
                     FROM market.symbol_events se) e
             LEFT JOIN market.symbol_event_applications ap ON ap.event_kind = e.kind AND ap.event_id = e.id
            WHERE %(listing)s::bigint IS NULL
               OR EXISTS (SELECT 1 FROM market.exchange_instruments ei
                           WHERE ei.id = %(listing)s AND ei.instrument_id = e.instrument_id
                             AND (e.exchange_id IS NULL OR e.exchange_id = ei.exchange_id))
            ORDER BY e.event_time, e.kind, e.id""",
        {"listing": listing_id},
    )


def split_factor(conn: psycopg.Connection[Any], instrument_id: int, at: dt.datetime) -> Decimal:
    """Quantity multiplier of the applied splits after `at` (market.split_factor)."""
    return Decimal(scalar(conn, "SELECT market.split_factor(%s, %s)", (instrument_id, at)))
