"""The collectors `up` runs (market.collector_feeds): add, list, remove, and the feed
specifications of one row. CCXT is imported only when the specs are built."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg

from tradestore.db.errors import NotFound, ValidationError
from tradestore.db.query import dicts, rows, scalar, translated

if TYPE_CHECKING:
    from tradestore.market.collect.feed import FeedSpec

__all__ = ["KINDS", "CollectorRow", "add_collector", "list_collectors", "remove_collector"]

KINDS = ("candles", "trades", "orderbook", "ticker")
TRANSPORTS = ("auto", "rest")


@dataclass(frozen=True)
class CollectorRow:
    id: int
    exchange: str
    symbols: list[str]
    kinds: list[str]
    timeframe: str | None
    depth: int | None
    interval_s: Decimal
    enabled: bool
    transport: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def service_name(self) -> str:
        return f"collector:{self.id}"

    def specs(self) -> list[FeedSpec]:
        from tradestore.market.collect.feed import FeedSpec

        out = []
        for symbol in self.symbols:
            for kind in self.kinds:
                out.append(
                    FeedSpec(
                        self.exchange,
                        symbol,
                        kind,
                        timeframe=self.timeframe if kind == "candles" else None,
                        depth=self.depth if kind == "orderbook" else None,
                    )
                )
        return out


_SELECT = (
    "SELECT id, exchange, symbols, kinds, timeframe, depth, interval_s, enabled, transport, "
    "created_at, updated_at FROM market.collector_feeds"
)


@translated()
def add_collector(
    conn: psycopg.Connection[Any],
    exchange: str,
    symbols: Sequence[str],
    kinds: Sequence[str],
    *,
    timeframe: str | None = None,
    depth: int | None = None,
    interval_s: Decimal = Decimal(1),
    enabled: bool = True,
    transport: str = "auto",
) -> int:
    """Store a collector (its kinds of data for each symbol); returns its id. `transport`
    'rest' polls even what the exchange could stream."""
    if transport not in TRANSPORTS:
        raise ValidationError("transport", f"must be one of {', '.join(TRANSPORTS)}", transport)
    for kind in kinds:
        if kind not in KINDS:
            raise ValidationError("kinds", f"must be among {', '.join(KINDS)}", kind)
    if "candles" in kinds and not timeframe:
        raise ValidationError("timeframe", "is needed to collect candles", timeframe)
    if "orderbook" in kinds and depth is None:
        raise ValidationError("depth", "is needed to collect the order book", depth)
    return int(
        scalar(
            conn,
            """INSERT INTO market.collector_feeds
                   (exchange, symbols, kinds, timeframe, depth, interval_s, enabled, transport)
               VALUES (lower(%s), %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (exchange, list(symbols), list(dict.fromkeys(kinds)),
             timeframe if "candles" in kinds else None,
             depth if "orderbook" in kinds else None, interval_s, enabled, transport),
        )
    )  # fmt: skip


def list_collectors(
    conn: psycopg.Connection[Any], *, enabled_only: bool = False
) -> list[CollectorRow]:
    return rows(
        conn, CollectorRow, _SELECT + (" WHERE enabled" if enabled_only else "") + " ORDER BY id"
    )


def get_collector(conn: psycopg.Connection[Any], collector_id: int) -> CollectorRow:
    found = rows(conn, CollectorRow, _SELECT + " WHERE id = %s", (collector_id,))
    if not found:
        raise NotFound("collector", collector_id)
    return found[0]


@translated()
def remove_collector(conn: psycopg.Connection[Any], collector_id: int) -> None:
    if not dicts(conn, "DELETE FROM market.collector_feeds WHERE id = %s RETURNING id",
                 (collector_id,)):  # fmt: skip
        raise NotFound("collector", collector_id)
