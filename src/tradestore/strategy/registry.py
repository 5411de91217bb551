"""The strategies registry (seed 003 `strategies`): which implementation a named strategy
runs, its parameters, its risk settings and its running stats."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tradestore.db.errors import NotFound, ValidationError, translate
from tradestore.strategy.jsonout import dumps
from tradestore.strategy.strategies import Strategy, coerce_params, get_implementation

__all__ = [
    "STRATEGY_TYPES",
    "StrategyRecord",
    "create_strategy",
    "find_user",
    "get_strategy",
    "list_strategies",
    "record_backtest_stats",
    "risk_text",
]

STRATEGY_TYPES = ("scalping", "day_trading", "swing_trading", "long_term")

_COLUMNS = """id, user_id, name, strategy_type, implementation, description, parameters,
    risk_per_trade, max_positions, stop_loss_pct, take_profit_pct, is_active, is_backtesting,
    total_trades, winning_trades, losing_trades, total_pnl, win_rate, max_drawdown,
    sharpe_ratio, created_at, updated_at, last_executed"""


@dataclass(frozen=True)
class StrategyRecord:
    id: int
    user_id: int
    name: str
    strategy_type: str
    implementation: str | None
    description: str | None
    parameters: dict[str, Any]
    risk_per_trade: Decimal | None
    max_positions: int | None
    stop_loss_pct: Decimal | None
    take_profit_pct: Decimal | None
    is_active: bool
    is_backtesting: bool
    total_trades: int
    winning_trades: int
    losing_trades: int
    total_pnl: Decimal
    win_rate: Decimal
    max_drawdown: Decimal
    sharpe_ratio: Decimal
    created_at: Any
    updated_at: Any
    last_executed: Any

    def risk_text(self) -> str:
        """The risk settings in words; unset ones say so (a backtest then uses none)."""
        return risk_text(self.risk_per_trade, self.max_positions, self.stop_loss_pct,
                         self.take_profit_pct)  # fmt: skip

    def implementation_class(self) -> type[Strategy]:
        if not self.implementation:
            raise ValidationError(
                "implementation", "the strategy names no Python implementation", self.name
            )
        return get_implementation(self.implementation)


def risk_text(
    risk: Decimal | None, max_positions: int | None, stop: Decimal | None, target: Decimal | None
) -> str:
    def pct(value: Decimal | None) -> str:
        return "none" if value is None else f"{value.normalize():f}%"

    return (
        f"stop-loss {pct(stop)}, take-profit {pct(target)}, risk per trade {pct(risk)}, "
        f"max positions {'no limit' if max_positions is None else max_positions}"
    )


def find_user(conn: psycopg.Connection[Any], user: str | int | None) -> int:
    """A user id from an id or username; without one, the only user there is."""
    if user is None:
        rows = conn.execute("SELECT id FROM account.users ORDER BY id LIMIT 2").fetchall()
        if len(rows) != 1:
            raise ValidationError(
                "user", "name the user (there is not exactly one)", f"{len(rows)} users"
            )
        return int(rows[0][0])
    text = str(user)
    row = conn.execute(
        "SELECT id FROM account.users WHERE username = %s OR id = %s ORDER BY username = %s DESC",
        (text, int(text) if text.isdigit() else None, text),
    ).fetchone()
    if row is None:
        raise ValidationError("user", "must name an existing user (username or id)", text)
    return int(row[0])


def create_strategy(
    conn: psycopg.Connection[Any],
    *,
    user_id: int,
    name: str,
    implementation: str,
    parameters: Mapping[str, Any] | None = None,
    strategy_type: str | None = None,
    description: str | None = None,
    risk_per_trade: Decimal | None = None,
    max_positions: int | None = None,
    stop_loss_pct: Decimal | None = None,
    take_profit_pct: Decimal | None = None,
    is_active: bool = False,
) -> StrategyRecord:
    """Register a strategy. Its parameters are checked against the implementation."""
    impl = get_implementation(implementation)
    params = {**impl.defaults, **coerce_params(impl, parameters or {})}
    impl(**params)  # validates values
    stype = strategy_type or impl.strategy_type
    if stype not in STRATEGY_TYPES:
        raise ValidationError("strategy_type", f"must be one of {', '.join(STRATEGY_TYPES)}", stype)
    if not name or not name.strip() or len(name) > 100:
        raise ValidationError("name", "must be 1 to 100 characters, not blank", name)
    values: dict[str, Any] = {
        "user_id": user_id, "name": name.strip(), "strategy_type": stype,
        "implementation": implementation, "description": description,
        "parameters": Jsonb(params, dumps=dumps), "is_active": is_active,
    }  # fmt: skip
    for key, value in (
        ("risk_per_trade", risk_per_trade),
        ("max_positions", max_positions),
        ("stop_loss_pct", stop_loss_pct),
        ("take_profit_pct", take_profit_pct),
    ):
        if value is not None:
            values[key] = value
    cols = ", ".join(values)
    marks = ", ".join(f"%({k})s" for k in values)
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"INSERT INTO analytics.strategies ({cols}) VALUES ({marks}) RETURNING {_COLUMNS}",
                values,
            ).fetchone()
    except psycopg.Error as exc:
        raise translate(exc) from exc
    return StrategyRecord(**row)  # type: ignore[arg-type]


def get_strategy(
    conn: psycopg.Connection[Any], name_or_id: str | int, *, user_id: int | None = None
) -> StrategyRecord:
    key = str(name_or_id)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT {_COLUMNS} FROM analytics.strategies
                 WHERE (name = %(key)s OR (%(key)s ~ '^[0-9]+$' AND id::text = %(key)s))
                   AND (%(user)s::bigint IS NULL OR user_id = %(user)s)
                 ORDER BY id""",
            {"key": key, "user": user_id},
        ).fetchall()
    if not rows:
        raise NotFound("strategy", key)
    if len(rows) > 1:
        raise ValidationError(
            "strategy", "several users have a strategy of this name; name the user", key
        )
    return StrategyRecord(**rows[0])


def list_strategies(
    conn: psycopg.Connection[Any], *, user_id: int | None = None
) -> list[StrategyRecord]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT {_COLUMNS} FROM analytics.strategies
                 WHERE %(user)s::bigint IS NULL OR user_id = %(user)s ORDER BY user_id, name""",
            {"user": user_id},
        ).fetchall()
    return [StrategyRecord(**r) for r in rows]


def record_backtest_stats(
    conn: psycopg.Connection[Any], strategy_id: int, stats: Mapping[str, Any]
) -> None:
    """Set the strategy's running stats (003) from a completed backtest of its own
    parameters: trades, wins, losses, total PnL, win rate, max drawdown (fractions) and
    Sharpe ratio."""
    conn.execute(
        """UPDATE analytics.strategies
              SET total_trades = %(total_trades)s, winning_trades = %(winning_trades)s,
                  losing_trades = %(losing_trades)s, total_pnl = %(total_pnl)s,
                  win_rate = coalesce(%(win_rate)s, 0), max_drawdown = %(max_drawdown)s,
                  sharpe_ratio = coalesce(%(sharpe_ratio)s, 0)
            WHERE id = %(id)s""",
        {**stats, "id": strategy_id},
    )
