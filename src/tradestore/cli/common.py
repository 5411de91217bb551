"""What every CLI command shares: the console, settings, a database connection and the
translation of errors into one clear line (field, rule, value) and a non-zero exit."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, ParamSpec, TypeVar

import psycopg
import typer
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from tradestore.cache import invalidation
from tradestore.cache.client import existing_cache
from tradestore.config import Settings, get_settings
from tradestore.db.connect import resolve_conninfo
from tradestore.db.errors import TradestoreError, ValidationError, translate

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def handles_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into one red line and exit code 1 (no traceback): every
    error tradestore raises on purpose derives from TradestoreError."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TradestoreError as exc:
            raise fail(str(exc)) from None
        except psycopg.Error as exc:
            translated = translate(exc)
            raise fail(str(translated).strip()) from None

    return wrapper


# Plain decimal notation only: an optional sign, ASCII digits, at most one point. Python's
# Decimal() would also read "1_000", full-width digits, "1e3", "NaN" and "Infinity"; a
# typo in a price or a size should stop the command rather than mean something else.
# Exponents are refused too: "2e-3" is never how a price or a fee is written by hand.
_PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
DECIMAL_RULE = (
    "must be a plain decimal number: optional sign, ASCII digits 0-9, at most one '.' "
    "(no exponent, underscore, NaN or Infinity)"
)


def parse_decimal(field: str, text: str | None) -> Decimal | None:
    """The exact Decimal of a command-line option written in plain decimal notation
    (None stays None). ValidationError names the option, the rule and the value."""
    if text is None:
        return None
    stripped = text.strip()
    if not _PLAIN_DECIMAL.fullmatch(stripped):
        raise ValidationError(field, DECIMAL_RULE, text)
    return Decimal(stripped)


def settings() -> Settings:
    return get_settings()


@contextmanager
def database() -> Iterator[str]:
    """The conninfo of the configured database, starting the embedded server if needed
    (and stopping it afterwards if this command started it). A server some other process
    started, or whose owner died (a crashed `up`), is only attached to and left running:
    a one-shot command never stops a server other sessions may be using."""
    conninfo, server = resolve_conninfo(settings(), adopt_orphans=False)
    # Connections this command opens drop the Redis keys their commits make stale, when
    # there is a Redis to keep current (none is started for it): cache.invalidation.
    cache = existing_cache(settings())
    if cache is not None:
        invalidation.install(cache)
    try:
        yield conninfo
    finally:
        if cache is not None:
            invalidation.uninstall()
            cache.close()
        if server is not None:
            server.stop()


# ------------------------------------------------------------------------------ output
@dataclass
class OutputOptions:
    """How tables print, set by `tradestore --exact / --wide` (cli.main)."""

    exact: bool = False  # decimals at full stored precision
    wide: bool = False  # every column, no wrapping, whatever the terminal width


OUTPUT = OutputOptions()

# Shown decimals keep 7 significant digits and at least 2 decimal places (34998.29,
# 1.083452, 0.00001234567), trailing zeros dropped, never an exponent; --exact prints the
# stored value in full.
_SIGNIFICANT = 7


def fmt_decimal(value: Decimal | float | int, exact: bool | None = None) -> str:
    """A number as a table shows it: normalized (see _SIGNIFICANT) or, with --exact, in
    full; plain notation either way."""
    if isinstance(value, Decimal):
        d = value
    else:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not d.is_finite():
        return str(d)
    if d == 0:
        return "0"
    if not (OUTPUT.exact if exact is None else exact):
        places = max(2, _SIGNIFICANT - d.adjusted() - 1)
        if d.as_tuple().exponent < -places:  # type: ignore[operator]
            d = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = format(d.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def fmt_cell(value: object) -> str:
    """Any value as a table cell: None as '-', numbers through fmt_decimal, times in UTC."""
    if value is None:
        return "-"
    if isinstance(value, Decimal | float):
        return fmt_decimal(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


@dataclass(frozen=True)
class Column:
    """A table column. `essential` columns are always shown; the others only with --wide
    (so a table fits an 80-column terminal)."""

    name: str
    essential: bool = True
    justify: str = "left"
    no_wrap: bool = False


def make_table(columns: Sequence[Column | str], *, title: str | None = None, **kw: Any) -> Table:
    """A rich Table of the columns this terminal shows (all with --wide). Add rows with
    add_row(table, columns, values): values of dropped columns are left out."""
    table = Table(title=title, **kw)
    for col in _shown(columns):
        table.add_column(
            col.name,
            justify=col.justify,  # type: ignore[arg-type]
            no_wrap=col.no_wrap or OUTPUT.wide,
            overflow="fold",
        )
    return table


def _shown(columns: Sequence[Column | str]) -> list[Column]:
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    return [c for c in cols if c.essential or OUTPUT.wide]


def add_row(table: Table, columns: Sequence[Column | str], values: Sequence[object]) -> None:
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    table.add_row(
        *(
            v if isinstance(v, str) else fmt_cell(v)
            for c, v in zip(cols, values, strict=True)
            if c.essential or OUTPUT.wide
        )
    )


def print_table(table: Table) -> None:
    """Print a table: at the terminal's width (80 columns when it is not a terminal), or
    unwrapped at its natural width with --wide."""
    if OUTPUT.wide:
        natural = Measurement.get(console, console.options.update(width=10_000), table).maximum
        # A console as wide as the table (Console.print never exceeds the console's width).
        Console(width=max(console.width, natural)).print(table)
    else:
        console.print(table)


# ------------------------------------------------------------------------------ CHECKs
_CHECK_COLUMN = re.compile(r"CHECK \(+\(?(\w+)\)?(?:::[\w ]+)?\s*(?:=\s*ANY|IN)\b")
_LITERAL = re.compile(r"'([^']*)'")


def _check_violation(exc: BaseException | None) -> pg_errors.CheckViolation | None:
    while exc is not None:
        if isinstance(exc, pg_errors.CheckViolation):
            return exc
        exc = exc.__cause__
    return None


def vocabulary_error(conn: psycopg.Connection[Any], exc: BaseException) -> ValidationError | None:
    """A refused CHECK on a vocabulary (`kind IN ('CRYPTO', ...)`) as field, rule and
    value: the allowed values are read from the constraint's definition in the catalog,
    so the message never drifts from the rule. None when exc is not such a refusal."""
    check = _check_violation(exc)
    if check is None or conn.closed:
        return None
    if conn.info.transaction_status != TransactionStatus.IDLE:
        return None
    diag = check.diag
    row = conn.execute(
        """SELECT pg_get_constraintdef(c.oid),
                  array(SELECT attname::text FROM pg_attribute
                         WHERE attrelid = t.oid AND attnum > 0 AND NOT attisdropped
                         ORDER BY attnum)
             FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE c.conname = %s AND t.relname = %s AND n.nspname = %s""",
        (diag.constraint_name, diag.table_name, diag.schema_name),
    ).fetchone()
    if row is None:
        return None
    definition, columns = row
    match = _CHECK_COLUMN.search(definition)
    if match is None:
        return None
    literals = _LITERAL.findall(definition)
    values = [v for lit in literals for v in lit.strip("{}").split(",")] if literals else []
    if not values:
        return None
    column = match.group(1)
    value: object = None
    failing = (diag.message_detail or "").removeprefix("Failing row contains (").removesuffix(").")
    cells = failing.split(", ")
    if column in columns and len(cells) == len(columns):
        value = cells[columns.index(column)]
    return ValidationError(column, f"must be one of {', '.join(values)}", value)


@contextmanager
def explained(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Re-raise a refused vocabulary CHECK as a ValidationError listing the valid values
    (the raw constraint name never reaches the user)."""
    try:
        yield
    except (psycopg.Error, TradestoreError) as exc:
        better = vocabulary_error(conn, exc)
        if better is None:
            raise
        raise better from exc
