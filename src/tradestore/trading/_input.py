"""What the trading API modules share: exact-decimal and timezone-aware input coercion.
Running SQL is tradestore.db.query's."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from tradestore.db.errors import ValidationError

Number = Decimal | int | str


def to_decimal(field: str, value: Number | None) -> Decimal | None:
    """An exact Decimal from a Decimal, int or decimal string. Floats are refused: a binary
    float cannot hold most decimal prices (0.1 is 0.1000000000000000055...)."""
    if value is None:
        return None
    if isinstance(value, bool | float):
        raise ValidationError(field, "must be a Decimal, int or decimal string, not a float", value)
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise ValidationError(field, "must be a decimal number", value) from None
    raise ValidationError(field, "must be a Decimal, int or decimal string", value)


def utc(value: dt.datetime | None, field: str = "time") -> dt.datetime | None:
    """A timezone-aware datetime (naive ones are refused: their zone is a guess)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValidationError(field, "must be timezone-aware", value.isoformat())
    return value
