"""The runners table (analytics.strategy_runners) and the halt switch: add, list, remove,
lease, state, halt and resume."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tradestore.db.errors import NotFound, ValidationError
from tradestore.db.query import scalar, translated
from tradestore.strategy.data import resolve_instruments

__all__ = [
    "LEASE_SECONDS",
    "MODES",
    "RunnerRow",
    "acquire_lease",
    "add_runner",
    "get_runner",
    "halt",
    "holder_name",
    "list_runners",
    "release_lease",
    "remove_runner",
    "resume",
]

MODES = ("paper", "live", "simulated")
LEASE_SECONDS = 30


@dataclass(frozen=True)
class RunnerRow:
    id: int
    strategy_id: int
    strategy: str
    account_id: int
    listing_ids: list[int]
    symbols: list[str]
    timeframe: str
    mode: str
    enabled: bool
    max_position_notional: Decimal | None
    max_order_notional: Decimal | None
    max_open_orders: int | None
    daily_loss_limit: Decimal | None
    position_size_pct: Decimal | None
    fee_rate: Decimal | None
    slippage: Decimal
    state: str
    halted_by: str | None
    last_message: str | None
    last_bar_at: dt.datetime | None
    last_lag_ms: Decimal | None
    lease_holder: str | None
    lease_expires_at: dt.datetime | None

    @property
    def service_name(self) -> str:
        return f"runner:{self.id}"


_SELECT = """
SELECT r.id, r.strategy_id, s.name AS strategy, r.account_id, r.listing_ids,
       ARRAY(SELECT ei.exchange_symbol::text FROM unnest(r.listing_ids) WITH ORDINALITY u(id, n)
               JOIN market.exchange_instruments ei ON ei.id = u.id ORDER BY u.n) AS symbols,
       r.timeframe, r.mode, r.enabled, r.max_position_notional, r.max_order_notional,
       r.max_open_orders, r.daily_loss_limit, r.position_size_pct, r.fee_rate, r.slippage,
       r.state, r.halted_by, r.last_message, r.last_bar_at, r.last_lag_ms, r.lease_holder,
       r.lease_expires_at
  FROM analytics.strategy_runners r JOIN analytics.strategies s ON s.id = r.strategy_id
"""


def holder_name() -> str:
    """Who holds a lease: host and process, so an operator can find it."""
    return f"{socket.gethostname()}:{os.getpid()}"


@translated()
def add_runner(
    conn: psycopg.Connection[Any],
    strategy: str | int,
    account_id: int,
    symbols: Sequence[str],
    *,
    timeframe: str = "1m",
    mode: str = "paper",
    exchange: str | None = None,
    limits: dict[str, Any] | None = None,
    position_size_pct: Decimal | None = None,
    fee_rate: Decimal | None = None,
    slippage: Decimal = Decimal(0),
    enabled: bool = True,
) -> int:
    """Configure a runner (one per strategy and account); returns its id."""
    if mode not in MODES:
        raise ValidationError("mode", f"must be one of {', '.join(MODES)}", mode)
    conn.execute("SELECT market.timeframe_interval(%s)", (timeframe,))
    where = "id = %s" if isinstance(strategy, int) else "name = %s"
    row = conn.execute(
        f"SELECT id, implementation FROM analytics.strategies WHERE {where}", (strategy,)
    ).fetchall()
    if len(row) != 1:
        raise ValidationError("strategy", "must name exactly one registered strategy", strategy)
    if not row[0][1]:
        raise ValidationError("strategy", "names no Python implementation", strategy)
    if exchange is None:
        exchange = scalar(
            conn,
            "SELECT x.code FROM account.accounts a JOIN market.exchanges x ON x.id = a.exchange_id "
            "WHERE a.id = %s",
            (account_id,),
        )
    listings = [i.listing_id for i in resolve_instruments(conn, symbols, exchange=exchange)]
    lim = limits or {}
    return int(
        scalar(
            conn,
            """INSERT INTO analytics.strategy_runners
                   (strategy_id, account_id, listing_ids, timeframe, mode, enabled,
                    max_position_notional, max_order_notional, max_open_orders, daily_loss_limit,
                    position_size_pct, fee_rate, slippage)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (row[0][0], account_id, listings, timeframe, mode, enabled,
             lim.get("max_position_notional"), lim.get("max_order_notional"),
             lim.get("max_open_orders"), lim.get("daily_loss_limit"), position_size_pct,
             fee_rate, slippage),
        )
    )  # fmt: skip


def list_runners(conn: psycopg.Connection[Any], *, enabled_only: bool = False) -> list[RunnerRow]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            _SELECT + (" WHERE r.enabled" if enabled_only else "") + " ORDER BY r.id"
        ).fetchall()
    return [RunnerRow(**r) for r in rows]


def get_runner(conn: psycopg.Connection[Any], runner_id: int) -> RunnerRow:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_SELECT + " WHERE r.id = %s", (runner_id,)).fetchone()
    if row is None:
        raise NotFound("runner", runner_id)
    return RunnerRow(**row)


@translated()
def remove_runner(conn: psycopg.Connection[Any], runner_id: int) -> None:
    """Delete a runner that is not running (its orders and executions stay)."""
    row = get_runner(conn, runner_id)
    if (
        row.state == "RUNNING"
        and row.lease_expires_at
        and row.lease_expires_at > dt.datetime.now(dt.UTC)
    ):
        raise ValidationError("runner", "is running; stop it first", runner_id)
    conn.execute("DELETE FROM analytics.strategy_runners WHERE id = %s", (runner_id,))


def acquire_lease(
    conn: psycopg.Connection[Any], runner_id: int, holder: str, seconds: int = LEASE_SECONDS
) -> bool:
    """Take or renew the runner's lease: free, expired, or already ours. One process runs
    a runner at a time, on any machine sharing the database."""
    row = conn.execute(
        """UPDATE analytics.strategy_runners
              SET lease_holder = %(h)s, lease_expires_at = now() + make_interval(secs => %(s)s)
            WHERE id = %(id)s
              AND (lease_holder IS NULL OR lease_holder = %(h)s OR lease_expires_at < now())
           RETURNING id""",
        {"id": runner_id, "h": holder, "s": seconds},
    ).fetchone()
    return row is not None


def release_lease(conn: psycopg.Connection[Any], runner_id: int, holder: str) -> None:
    conn.execute(
        """UPDATE analytics.strategy_runners
              SET lease_holder = NULL, lease_expires_at = NULL,
                  state = CASE WHEN state = 'RUNNING' THEN 'STOPPED' ELSE state END
            WHERE id = %s AND lease_holder = %s""",
        (runner_id, holder),
    )


@translated()
def halt(conn: psycopg.Connection[Any], reason: str | None = None) -> int:
    """Stop every runner and cancel every open order; returns the orders canceled."""
    return int(scalar(conn, "SELECT trade.halt_trading(%s)", (reason,)))


@translated()
def resume(conn: psycopg.Connection[Any], runner_id: int | None = None) -> int:
    """Undo the halt (or resume one halted runner); returns the runners resumed."""
    return int(scalar(conn, "SELECT trade.resume_trading(%s)", (runner_id,)))
