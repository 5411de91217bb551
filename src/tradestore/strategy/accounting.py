"""Netting position accounting, the same as live trading: a Python mirror of
trade.net_fill and the position / ledger effects of public.apply_fill
(trading/sql/api.sql), in exact Decimal arithmetic.

- Adding to a position (or opening one): the average entry is the size-weighted mean,
  rounded to 20 decimals, halves away from zero (system.div_round).
- Reducing: realized PnL += closed x (price - entry) x sign x contract size; the entry is
  unchanged. Crossing zero closes the old side and opens the rest at the fill price.
- Fees are kept apart from realized PnL (positions.total_fees), as live.
- Cash, as the ledger moves it: spot pays the principal (-fill x price x contract size)
  and the fee; a derivative settles only its realized PnL and the fee.

tests/strategy/test_accounting_vs_sql.py runs the same fills through the SQL apply_fill
and checks that quantity, average entry, realized PnL and fees agree after every fill.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from tradestore.strategy.rules import EXACT, trim_scale

__all__ = ["Book", "FillEffect", "Position", "div_round", "net_fill"]

ZERO = Decimal(0)


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


def div_round(num: Decimal, den: Decimal, scale: int) -> Decimal:
    """system.div_round: num / den rounded to `scale` decimals, halves away from zero,
    computed exactly (integer quotient and remainder, no intermediate rounding)."""
    with localcontext(EXACT):
        n = num.scaleb(scale)
        q = n // den  # Decimal // truncates toward zero, like PostgreSQL's div()
        r = n - q * den
        if 2 * r.copy_abs() >= den.copy_abs():
            q += _sign(n) * _sign(den)
        return trim_scale(q.scaleb(-scale))


def net_fill(
    quantity: Decimal,
    avg_entry: Decimal,
    realized: Decimal,
    fill: Decimal,
    price: Decimal,
    multiplier: Decimal = Decimal(1),
) -> tuple[Decimal, Decimal, Decimal]:
    """trade.net_fill: one signed fill (BUY > 0) applied to a netting position.
    Returns (quantity, avg_entry_price, realized_pnl)."""
    with localcontext(EXACT):
        new_qty = trim_scale(quantity + fill)
        if quantity == 0 or _sign(quantity) == _sign(fill):
            avg = div_round(
                quantity.copy_abs() * avg_entry + fill.copy_abs() * price, new_qty.copy_abs(), 20
            )
            return new_qty, avg, realized
        closed = min(quantity.copy_abs(), fill.copy_abs())
        new_realized = trim_scale(
            realized + closed * (price - avg_entry) * _sign(quantity) * multiplier
        )
        if new_qty == 0:
            avg = ZERO
        elif _sign(new_qty) == _sign(quantity):
            avg = avg_entry
        else:
            avg = price
        return new_qty, avg, new_realized


@dataclass
class Position:
    """One listing's netting position, as trade.positions keeps it."""

    quantity: Decimal = ZERO
    avg_entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    total_fees: Decimal = ZERO
    opened_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None


@dataclass(frozen=True)
class FillEffect:
    """What one fill did: the realized PnL it booked and the cash it moved."""

    realized_pnl: Decimal
    cash_delta: Decimal
    opened: bool
    closed: bool


@dataclass
class Book:
    """Cash and netting positions of one simulated account (one quote currency)."""

    cash: Decimal
    positions: dict[int, Position] = field(default_factory=dict)

    def position(self, key: int) -> Position:
        return self.positions.setdefault(key, Position())

    def apply_fill(
        self,
        key: int,
        side: str,
        quantity: Decimal,
        price: Decimal,
        fee: Decimal = ZERO,
        at: dt.datetime | None = None,
        *,
        multiplier: Decimal = Decimal(1),
        derivative: bool = False,
    ) -> FillEffect:
        """Apply a fill like public.apply_fill: position, fees and the ledger's cash."""
        pos = self.position(key)
        # copy_negate is exact; unary minus would round to the ambient context's precision.
        fill = quantity if side == "BUY" else quantity.copy_negate()
        before = pos.quantity
        qty, avg, realized = net_fill(
            pos.quantity, pos.avg_entry_price, pos.realized_pnl, fill, price, multiplier
        )
        with localcontext(EXACT):
            booked = realized - pos.realized_pnl
            principal = booked if derivative else fill.copy_negate() * price * multiplier
            cash_delta = trim_scale(principal - fee)
            self.cash += cash_delta
            pos.total_fees += fee
        opened = qty != 0 and (before == 0 or _sign(before) != _sign(qty))
        if opened:
            pos.opened_at, pos.closed_at = at, None
        elif qty == 0:
            pos.closed_at = at
        pos.quantity, pos.avg_entry_price, pos.realized_pnl = qty, avg, realized
        return FillEffect(booked, cash_delta, opened, qty == 0 and before != 0)

    def equity(
        self, marks: dict[int, Decimal], multipliers: dict[int, Decimal], derivatives: set[int]
    ) -> Decimal:
        """Cash plus the positions at `marks`: spot at market value, derivatives at their
        unrealized PnL (their principal never left the cash)."""
        total = self.cash
        with localcontext(EXACT):
            for key, pos in self.positions.items():
                if pos.quantity == 0:
                    continue
                mult = multipliers.get(key, Decimal(1))
                if key in derivatives:
                    total += pos.quantity * (marks[key] - pos.avg_entry_price) * mult
                else:
                    total += pos.quantity * marks[key] * mult
        return total
