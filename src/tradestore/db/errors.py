"""Errors raised by tradestore, and the translation of database errors into them.

The database names the field, the rule and the value of a refused write (see
system.raise_invalid: COLUMN, CONSTRAINT and DETAIL of the error); Python surfaces them
as a ValidationError with the same three parts, for the CLI and the API to show.
"""

from __future__ import annotations

import re

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
        return Conflict(duplicate_message(diag.table_name, diag.message_detail))
    if isinstance(exc, pg_errors.NumericValueOutOfRange | pg_errors.InvalidTextRepresentation):
        return ValidationError(
            diag.column_name or "value", "must be a valid number", None, diag.message_primary
        )
    return exc


_KEY = re.compile(r"Key \((?P<cols>.+?)\)=\((?P<vals>.*)\) already exists")


def _singular(table: str | None) -> str:
    name = (table or "row").replace("_", " ")
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith(("ses", "xes")):
        return name[:-2]
    return name[:-1] if name.endswith("s") else name


def duplicate_message(table: str | None, detail: str | None) -> str:
    """A unique violation in words: "a strategy named 'golden' already exists" from
    table strategies and detail "Key (user_id, name)=(1, golden) already exists." The
    owner columns (*_id) that scope a name are left out; an unparsable detail is kept."""
    thing = _singular(table)
    match = _KEY.search(detail or "")
    if match is None:
        return f"this {thing} already exists ({detail or 'unique key'})"
    cols = [c.strip() for c in match["cols"].split(",")]
    vals = [v.strip() for v in match["vals"].split(", ")]
    if len(vals) != len(cols):
        vals = [match["vals"]] if len(cols) == 1 else vals
    pairs = list(zip(cols, vals, strict=False))
    named = [(c, v) for c, v in pairs if not c.endswith("_id")] or pairs
    article = "an" if thing[:1] in "aeiou" else "a"
    if len(named) == 1 and named[0][0] in ("name", "code", "username"):
        col, val = named[0]
        how = "named" if col == "name" else f"with {col}"
        return f"{article} {thing} {how} {val!r} already exists"
    described = ", ".join(f"{c}={v!r}" for c, v in named)
    return f"{article} {thing} with {described} already exists"
