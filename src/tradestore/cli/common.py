"""What every CLI command shares: the console, settings, a database connection and the
translation of errors into one clear line (field, rule, value) and a non-zero exit."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import ParamSpec, TypeVar

import psycopg
import typer
from rich.console import Console

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
