"""Trading rules in Python: an exact mirror of normalize_price, normalize_size and
meets_min_notional (trading/sql/rules.sql) for the backtest engine, which cannot make a
database round trip per simulated order. tests/strategy/test_rules_mirror.py proves the
mirror returns what the SQL functions return on thousands of inputs.

Rules are a trading_rules jsonb object (tick_size, step_size, min_qty, max_qty,
min_notional, max_notional, contract_size, price_bands); values are Decimals here (load
them with `parse_rules`, which never passes a number through float).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Any

__all__ = [
    "EXACT",
    "SIZE_DECIMALS",
    "RuleArrays",
    "entry_size",
    "meets_min_notional",
    "normalize_price",
    "normalize_size",
    "notional",
    "parse_rules",
    "rule",
    "tick_size_at",
    "trim_scale",
]

# The one arithmetic context of the backtest's Decimal code (the event engine runs inside
# it; accounting and these rules use it too). NUMERIC is exact up to 1000 digits; 100
# digits hold any product of a price, a size, a contract size and a fee rate exactly.
# Sign changes use copy_abs / copy_negate, which never round in any context.
_PREC = 100
EXACT = Context(
    prec=_PREC, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
# An entry on a listing without step_size is truncated to this many decimals (the finest
# unit any venue trades, e.g. 1e-18 of an ERC-20 token), so every size is a short exact
# decimal that a close can repeat to the last digit.
SIZE_DECIMALS = 18
_SIZE_UNIT = Decimal(1).scaleb(-SIZE_DECIMALS)


def parse_rules(rules: str | bytes | Mapping[str, Any] | None) -> dict[str, Any]:
    """Rules from jsonb text (exact) or an already-parsed mapping (numbers made Decimal
    through their text)."""
    if rules is None:
        return {}
    if isinstance(rules, str | bytes):
        return dict(json.loads(rules, parse_float=Decimal, parse_int=Decimal))
    return {k: _decimalize(v) for k, v in rules.items()}


def _decimalize(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, list):
        return [_decimalize(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _decimalize(v) for k, v in value.items()}
    return value


def rule(rules: Mapping[str, Any], key: str) -> Decimal | None:
    """`(rules ->> key)::numeric`: None when absent or JSON null."""
    value = rules.get(key)
    if value is None:
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def trim_scale(value: Decimal) -> Decimal:
    """PostgreSQL trim_scale: drop trailing fractional zeros, never use an exponent."""
    if not value.is_finite():
        return value
    normalized = value.normalize()
    return normalized.quantize(Decimal(1)) if normalized.as_tuple().exponent > 0 else normalized


def tick_size_at(rules: Mapping[str, Any], price: Decimal) -> Decimal | None:
    """market.tick_size_at: the band with the largest min_price <= price, else tick_size."""
    bands = rules.get("price_bands")
    best: tuple[Decimal, Decimal] | None = None
    if isinstance(bands, list):
        for band in bands:
            floor = Decimal(str(band["min_price"]))
            if floor <= price and (best is None or floor > best[0]):
                best = (floor, Decimal(str(band["tick_size"])))
    return best[1] if best is not None else rule(rules, "tick_size")


def normalize_price(
    rules: Mapping[str, Any], price: Decimal | None, side: str | None = None
) -> Decimal | None:
    """Round to the tick grid: nearest (halves away from zero) without a side, BUY down,
    SELL up (a normalized limit price is never worse for the trader)."""
    if price is None:
        return None
    tick = tick_size_at(rules, price)
    if tick is None or tick <= 0 or not price.is_finite():
        return price
    mode = {"BUY": ROUND_FLOOR, "SELL": ROUND_CEILING}.get((side or "").upper(), ROUND_HALF_UP)
    with localcontext(prec=_PREC):
        steps = (price / tick).to_integral_value(rounding=mode)
        return trim_scale(steps * tick)


def normalize_size(rules: Mapping[str, Any], quantity: Decimal | None) -> Decimal | None:
    """Truncate down to the step (never round up: that would trade more than asked)."""
    step = rule(rules, "step_size")
    if quantity is None or step is None or step <= 0 or not quantity.is_finite():
        return quantity
    with localcontext(prec=_PREC):
        return trim_scale((quantity / step).to_integral_value(rounding=ROUND_DOWN) * step)


def entry_size(rules: Mapping[str, Any], quantity: Decimal) -> Decimal:
    """The size the backtest orders: normalize_size (truncated to the step), or, when the
    listing has no step, truncated to SIZE_DECIMALS decimals. Never rounds up."""
    step = rule(rules, "step_size")
    if (step is not None and step > 0) or not quantity.is_finite():
        return normalize_size(rules, quantity) or Decimal(0)
    with localcontext(EXACT):
        return trim_scale(quantity.quantize(_SIZE_UNIT, rounding=ROUND_DOWN))


def notional(rules: Mapping[str, Any], price: Decimal, quantity: Decimal) -> Decimal:
    """quantity x price x contract_size (1 when the rules give none)."""
    with localcontext(prec=_PREC):
        return price * quantity * (rule(rules, "contract_size") or Decimal(1))


def meets_min_notional(
    rules: Mapping[str, Any], price: Decimal | None, quantity: Decimal | None
) -> bool:
    minimum = rule(rules, "min_notional")
    if minimum is None:
        return True
    if price is None or quantity is None:
        return False
    return notional(rules, price, quantity) >= minimum


@dataclass(frozen=True)
class RuleArrays:
    """One listing's rules as float64 numbers for the numba fast path (NaN = no rule).
    Price bands become two arrays sorted by min_price."""

    tick: float
    step: float
    min_qty: float
    max_qty: float
    min_notional: float
    max_notional: float
    contract_size: float
    band_floors: tuple[float, ...]
    band_ticks: tuple[float, ...]

    @classmethod
    def from_rules(cls, rules: Mapping[str, Any]) -> RuleArrays:
        def f(key: str) -> float:
            value = rule(rules, key)
            return float(value) if value is not None else float("nan")

        bands = sorted(
            (Decimal(str(b["min_price"])), Decimal(str(b["tick_size"])))
            for b in rules.get("price_bands") or []
        )
        contract = rule(rules, "contract_size")
        return cls(
            tick=f("tick_size"),
            step=f("step_size"),
            min_qty=f("min_qty"),
            max_qty=f("max_qty"),
            min_notional=f("min_notional"),
            max_notional=f("max_notional"),
            contract_size=float(contract) if contract is not None else 1.0,
            band_floors=tuple(float(b[0]) for b in bands),
            band_ticks=tuple(float(b[1]) for b in bands),
        )
