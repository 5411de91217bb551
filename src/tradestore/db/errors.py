"""Errors raised by tradestore, and the translation of database errors into them.

The database names the field, the rule and the value of a refused write (see
system.raise_invalid: COLUMN, CONSTRAINT and DETAIL of the error); Python surfaces them
as a ValidationError with the same three parts, for the CLI and the API to show.
"""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors


class TradestoreError(Exception):
    """Base class of tradestore's own errors."""


class ValidationError(TradestoreError, ValueError):
    """Bad input: names the field, the rule it broke and the value given."""

    def __init__(self, field: str, rule: str, value: object, message: str | None = None) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(message or f"{field}: {rule} (value: {value!r})")

    def as_dict(self) -> dict[str, object]:
        return {
            "field": self.field,
            "rule": self.rule,
            "value": _jsonable(self.value),
            "message": str(self),
        }


class NotFound(TradestoreError, LookupError):
    """A referenced object does not exist (or is not visible to the caller)."""

    def __init__(self, what: str, key: object) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key!r} not found")


class Conflict(TradestoreError):
    """The write conflicts with existing state (a duplicate, a forbidden transition)."""


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def translate(exc: psycopg.Error) -> Exception:
    """Map a database error to a tradestore error where we know its meaning; otherwise
    return it unchanged."""
    diag = exc.diag
    if isinstance(exc, pg_errors.CheckViolation) and diag.column_name:
        return ValidationError(
            diag.column_name,
            diag.constraint_name or "check",
            diag.message_detail,
            diag.message_primary,
        )
    if isinstance(exc, pg_errors.CheckViolation | pg_errors.NotNullViolation):
        field = diag.column_name or diag.constraint_name or "value"
        return ValidationError(
            field, diag.constraint_name or "not null", None, diag.message_primary
        )
    if isinstance(exc, pg_errors.ForeignKeyViolation):
        return ValidationError(
            diag.constraint_name or "reference",
            "must reference an existing row",
            diag.message_detail,
            diag.message_primary,
        )
    if isinstance(exc, pg_errors.UniqueViolation):
        return Conflict(f"{diag.message_primary}: {diag.message_detail}")
    if isinstance(exc, pg_errors.NumericValueOutOfRange | pg_errors.InvalidTextRepresentation):
        return ValidationError(
            diag.column_name or "value", "must be a valid number", None, diag.message_primary
        )
    return exc
